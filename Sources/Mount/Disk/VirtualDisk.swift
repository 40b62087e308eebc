import FuseFS
import Threading

/// The disk a mount shows as `disk.img`: anything that serves byte ranges and knows its holes.
/// `FrameDisk` (imgfs frames) is one; a copy-on-write overlay and whole-layer disks of other
/// formats are others. `ImageFileSystem` speaks only this protocol.
public protocol VirtualDisk: Sendable {
    /// Logical size in bytes.
    var size: UInt64 { get }
    /// Whether `write` and `flush` are supported (the mount then shows disk.img writable).
    var isWritable: Bool { get }
    /// Fills `buffer` from `offset`; short only at the end of the disk. Only verified bytes.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(MountError) -> Int
    /// The next data (or hole) offset at or after `offset`; nil when there is no more data.
    func seek(from offset: UInt64, whence: SeekWhence) -> UInt64?
    /// Where `[offset, offset + count)` lies verbatim in a local file, if all of it is verified
    /// and cached, so FuseFS can splice it; nil sends the read through `read`.
    func localExtent(at offset: UInt64, count: Int) -> LocalExtent?
    /// `[offset, offset + count)` as runs of local-file bytes and known zeros (holes), if all of
    /// its data is verified and cached, so FuseFS can splice it; nil sends the read through `read`.
    func localPieces(at offset: UInt64, count: Int) -> [LocalPiece]?
    /// The kernel readahead (bytes) a file opened now should get, or nil for the mount's.
    var kernelReadahead: Int? { get }
    func write(at offset: UInt64, data: UnsafeRawBufferPointer) throws(MountError) -> Int
    /// Makes written data durable (fsync of disk.img).
    func flush() throws(MountError)
}

extension VirtualDisk {
    public var isWritable: Bool { false }
    public var kernelReadahead: Int? { nil }
    public func localExtent(at offset: UInt64, count: Int) -> LocalExtent? { nil }
    public func localPieces(at offset: UInt64, count: Int) -> [LocalPiece]? {
        localExtent(at: offset, count: count).map { [.file($0, count: count)] }
    }
    public func write(at offset: UInt64, data: UnsafeRawBufferPointer) throws(MountError) -> Int { throw .readOnly }
    public func flush() throws(MountError) {}
}

extension FrameDisk: VirtualDisk {
    public var size: UInt64 { index.geometry.diskSize }

    /// The mount's kernel readahead (nil), except where its large windows would put frames
    /// nobody reads on the link ahead of frames a reader waits for; there, the kernel's own
    /// default (`kernelDefaultReadahead`), and this disk's readahead, which sizes itself to the link,
    /// fetches ahead of sequential readers. The windows the kernel grows over a hypervisor's
    /// reads added a quarter more bytes to a Debian boot, carried before the ones the guest
    /// waited for (BENCHMARKS.md, issue 20). So the default:
    /// - while the boot a profile describes is under way (the profile fetches what the boot reads
    ///   ahead of it);
    /// - while frames are missing and the link does not bring a window's frames within
    ///   `kernelWindowBudget` (`linkCarriesKernelWindow`).
    /// Files opened later (after the boot, once the link has proved fast) get the mount's.
    public var kernelReadahead: Int? {
        guard activity.hasReadProfile, linkCarriesKernelWindow else { return Self.kernelDefaultReadahead }
        return nil
    }

    /// The kernel's default readahead.
    static let kernelDefaultReadahead = 128 << 10
    /// The kernel readahead a mount asks for (`FuseMountOptions.maxReadahead`).
    static let mountReadahead = FuseMountOptions().maxReadahead
    /// Seconds of link one kernel readahead window may take: a reader's next miss waits that
    /// long behind frames it may never read. At 100 Mbit/s a 4 MiB window of a Debian disk's
    /// frames (~1.2 MB compressed) takes 0.1 s; at 25 Mbit/s, 0.4 s.
    static let kernelWindowBudget = 0.1

    /// Whether the link (`LinkEstimate`, seeded by the frame index's transfer before the first
    /// range request) brings the compressed frames of one mount-sized kernel window within
    /// `kernelWindowBudget`. True when every frame is cached, and when the link is unmeasured
    /// (a remount that found the index in the store), as before any of this was measured.
    var linkCarriesKernelWindow: Bool {
        guard !cache.allPresent, let rate = statistics.link.bytesPerSecond, rate > 0 else { return true }
        let frames = Double(Self.mountReadahead) / Double(index.geometry.frameSize)
        return frames * meanFrameBytes / rate <= Self.kernelWindowBudget
    }

    /// The cache hit path: one bitmap check under one lock. The cache's data file holds frame i
    /// at the disk offset of frame i (holes punched), so a range whose frames all have their bit
    /// set is served from the same offset of that file; a bit is set only after verification.
    public func localExtent(at offset: UInt64, count: Int) -> LocalExtent? {
        guard count > 0, offset < size, UInt64(count) <= size - offset else { return nil }
        let frames = geometry.frames(covering: offset, length: count)
        var descriptor = cache.presentDataDescriptor(frames: frames)
        if descriptor == nil {
            // Cached frames this daemon has not served yet are checked here, so that their first
            // read is spliced too rather than copied through `read`; one that fails is dropped and
            // the read goes through `read`, which fetches it again.
            let unchecked = cache.unverified(in: frames).filter { !index.frames[$0].isHole }
            guard !unchecked.isEmpty else { return nil }
            for frame in unchecked { checkCached(frame) }
            descriptor = cache.presentDataDescriptor(frames: frames)
        }
        guard let descriptor else { return nil }
        activity.note(frames, now: monotonicNow())
        noteReadaheadHits(frames)
        scheduleReadahead(after: frames)
        statistics.cacheHits.add(Int64(frames.count), ordering: .relaxed)
        statistics.bytesServed.add(Int64(count), ordering: .relaxed)
        return LocalExtent(descriptor: descriptor, offset: offset)
    }

    /// The whole-disk read path (`dd`, `cat`, a backup): a range that is all hole is answered from
    /// the index alone, as zeros, without the cache's lock, bitmaps, readahead or flights; a range
    /// of cached, verified data with holes in it is the cache file's runs between runs of zeros, so
    /// that FuseFS splices the zero page for the holes instead of reading the cache file's punched
    /// holes into the page cache.
    public func localPieces(at offset: UInt64, count: Int) -> [LocalPiece]? {
        guard count > 0, offset < size, UInt64(count) <= size - offset else { return nil }
        let frames = geometry.frames(covering: offset, length: count)
        let entries = index.frames
        if !frames.contains(where: { !entries[$0].isHole }) {
            statistics.cacheHits.add(Int64(frames.count), ordering: .relaxed)
            statistics.bytesServed.add(Int64(count), ordering: .relaxed)
            return [.zeros(count: count)]
        }
        guard let extent = localExtent(at: offset, count: count) else { return nil }
        var pieces: [LocalPiece] = []
        var position = offset
        let end = offset + UInt64(count)
        for frame in frames {
            let runEnd = min(end, geometry.offset(ofFrame: frame) + UInt64(geometry.length(ofFrame: frame)))
            let length = Int(runEnd - position)
            switch (entries[frame].isHole, pieces.last) {
            case (true, .zeros(let previous)?):
                pieces[pieces.count - 1] = .zeros(count: previous + length)
            case (true, _):
                pieces.append(.zeros(count: length))
            case (false, .file(let run, let previous)?):
                pieces[pieces.count - 1] = .file(run, count: previous + length)
            case (false, _):
                pieces.append(.file(LocalExtent(descriptor: extent.descriptor, offset: position), count: length))
            }
            position = runEnd
        }
        return pieces
    }

    /// Holes at frame granularity, from the index's hole flags: what `cp --sparse=always` and
    /// `qemu-img map` use to skip zeros without reading them.
    public func seek(from offset: UInt64, whence: SeekWhence) -> UInt64? {
        guard offset < size else { return nil }
        let frames = index.frames
        var frame = geometry.frame(containing: offset)
        while frame < frames.count {
            let isHole = frames[frame].isHole
            if (whence == .data && !isHole) || (whence == .hole && isHole) {
                return max(offset, geometry.offset(ofFrame: frame))
            }
            frame += 1
        }
        // No more data: ENXIO. No more holes: the end of the file is one.
        return whence == .data ? nil : size
    }
}
