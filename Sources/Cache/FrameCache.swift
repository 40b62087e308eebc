import Glibc
import SystemIO
import ImgfsFormat
import Logging
import Synchronization
import Verity

/// One open cache entry: the sparse data file and the bitmap of verified frames of one disk.
///
/// Safe to use from many threads at once. While open it holds a shared `flock` on the entry's
/// lock file, which is how eviction (which needs the lock exclusively) knows the disk is mounted.
///
/// **Lock order.** `commitLock` (held across a group commit's fsyncs), then `state` (a `Mutex`).
/// `state` is never held while calling out of this type, and nothing else is acquired under it.
/// `flock`s are process-level and taken only in `open` (before `state` exists), so they cannot
/// deadlock against it. Frame claims (`claims`, OFD byte-range locks shared with other processes)
/// are only ever tried, never waited for in the kernel, and never taken or released under
/// `state` or `commitLock`: a process polling for another's claim holds no lock of this type.
/// The only I/O under `state` is the `pwrite` of changed bitmap bytes (a
/// page-cache copy, see `commitBits`); every data-file read and write, and every fsync, runs
/// outside it.
///
/// **Two processes on one entry** (two mounts of the same image) are allowed: each writes whole
/// bitmap bytes from its own copy, so one can overwrite the other's newly set bit with a clear one.
/// That loses a cached frame (it is fetched again), never trusts an unwritten one, because bits are
/// cleared only under the exclusive lock, which no one gets while either process has the entry open.
/// Between them they fetch each frame once: a fetcher holds the frame's claim (`FrameClaims`) until
/// its verified bytes are in the data file, and the others wait for the claim and then check those
/// bytes against the frame's digest instead of fetching (`claim`).
///
/// `close()` must be called once no other thread is using the cache.
public final class FrameCache: Sendable {
    public let key: CacheKey
    public let geometry: DiskGeometry
    public let imageReference: String

    let layout: CacheLayout
    let data: FileDescriptor
    /// The data file again, for whole-frame writes that bypass the page cache; nil where the
    /// file system does not support `O_DIRECT`.
    let directData: DirectWriter?
    let bitmap: FileDescriptor
    let lockFile: FileDescriptor
    /// Who is fetching which frame, across processes (see `FrameClaims`).
    let claims: FrameClaims
    let header: BitmapFormat.Header
    let logger: Logger
    /// SHA-256 of every frame's uncompressed bytes, from the image's index: what a cached frame is
    /// checked against before this process serves it for the first time (see `verify`).
    let frameDigests: [Digest]
    let state: Mutex<State>
    /// Serialises `commitStaged`; taken before `state`, never under it.
    let commitLock = Mutex<Void>(())

    struct State: Sendable {
        /// Exactly the bitmap bytes after the header, as they should be on disk. A bit is set here
        /// only once the frame's bytes are durable (see `commitBits`).
        var bits: [UInt8]
        var durableCount: Int
        /// Frames whose verified bytes are in the data file, durable or not: what this process
        /// serves. A superset of `bits`; the difference is `staged`.
        var resident: [UInt8]
        var residentCount: Int
        /// Written with `stage` and not yet made durable by `commitStaged`.
        var staged: [Int] = []
        /// Resident frames whose bytes this process has checked against their digest (or wrote
        /// itself from a `VerifiedFrame`, or punched as a hole): the only ones it serves. A subset
        /// of `resident`. Never written to disk, dm-verity style: the bitmap file says which frames
        /// were stored, not that their bytes are still intact, so each process checks each frame
        /// once (bit rot, a copied cache directory or a stray write is caught before it is served).
        var verified: [UInt8]
        /// Whether the header on disk carries the all-present flag.
        var allPresentOnDisk: Bool
        var closed = false

        init(bits: [UInt8], durableCount: Int, allPresentOnDisk: Bool) {
            self.bits = bits
            self.durableCount = durableCount
            self.resident = bits
            self.residentCount = durableCount
            self.verified = [UInt8](repeating: 0, count: bits.count)
            self.allPresentOnDisk = allPresentOnDisk
        }

        /// Sets a resident bit for bytes this process has just written and verified (or punched);
        /// false if it was set already.
        mutating func markResident(_ frame: Int) -> Bool {
            _ = BitmapFormat.set(&verified, frame)
            guard BitmapFormat.set(&resident, frame) else { return false }
            residentCount += 1
            return true
        }

        mutating func clearResident(_ frame: Int) {
            guard BitmapFormat.isSet(resident, frame), !BitmapFormat.isSet(bits, frame) else { return }
            BitmapFormat.clear(&resident, frame)
            BitmapFormat.clear(&verified, frame)
            residentCount -= 1
        }
    }

    /// The sparse data file; frame i is at i * frameSize. For passthrough reads and `cp`.
    public var dataFilePath: String { layout.dataPath }

    /// Opens the entry for `key` under `root`, creating it if absent.
    ///
    /// An existing entry is used only if its bitmap header is intact (magic, version, checksum) and
    /// matches `geometry`, the frame count and `key`, and its data and digest files have the right
    /// size and content. Anything else is logged and the entry is reset to empty: a cache that
    /// might lie is worth less than none.
    ///
    /// - Parameter holes: frames that are all zeros in the image; see `markHoles`.
    public static func open(
        root: String, key: CacheKey, geometry: DiskGeometry, frameDigests: [Digest],
        imageReference: String, holes: [Int] = [], logger: Logger
    ) throws(CacheError) -> FrameCache {
        guard frameDigests.count == geometry.frameCount else {
            throw .digestCountMismatch(expected: geometry.frameCount, actual: frameDigests.count)
        }
        let layout = CacheLayout(root: root, key: key)
        try systemIO { () throws(IOError) in try FileIO.makeDirectories(layout.directory) }
        let expected = BitmapFormat.Header(
            flags: 0, frameSize: UInt64(geometry.frameSize), diskSize: geometry.diskSize,
            frameCount: UInt64(geometry.frameCount), key: key.digest.bytes)

        let lockFile = try FileDescriptor.open(layout.lockPath, O_RDWR | O_CREAT)
        let cache: FrameCache
        do throws(CacheError) {
            if try lockFile.tryLock(LOCK_EX) {
                // No one else has the entry open: it may be checked and, if need be, reset.
                if let problem = try inspect(layout, expected: expected, frameDigests: frameDigests) {
                    if fileExists(layout.bitmapPath) {
                        logger.warning("cache entry is invalid, resetting it", metadata: [
                            "entry": "\(layout.directory)", "reason": "\(problem)"])
                    }
                    try reset(layout, header: expected, frameDigests: frameDigests)
                }
                // Not atomic: eviction may slip in between. It can only clear bits, and the
                // bitmap is loaded below, after the shared lock is held.
                try lockFile.lock(LOCK_SH)
            } else {
                // Another process has it open (or is evicting; this waits for that to finish).
                try lockFile.lock(LOCK_SH)
                if let problem = try inspect(layout, expected: expected, frameDigests: frameDigests) {
                    throw CacheError.entryInUse(path: layout.directory, reason: problem)
                }
            }
            cache = try load(layout, lockFile: lockFile, expected: expected, geometry: geometry,
                             key: key, frameDigests: frameDigests, imageReference: imageReference, logger: logger)
        } catch {
            lockFile.close()
            throw error
        }
        if !holes.isEmpty {
            do { try cache.markHoles(holes) } catch {
                cache.close()
                throw error
            }
        }
        cache.touchMeta()
        return cache
    }

    private init(layout: CacheLayout, data: FileDescriptor, directData: DirectWriter?, bitmap: FileDescriptor, lockFile: FileDescriptor, claims: FrameClaims,
                 header: BitmapFormat.Header, state: State, geometry: DiskGeometry, key: CacheKey,
                 frameDigests: [Digest], imageReference: String, logger: Logger) {
        self.layout = layout
        self.data = data
        self.directData = directData
        self.bitmap = bitmap
        self.lockFile = lockFile
        self.claims = claims
        self.header = header
        self.state = Mutex(state)
        self.geometry = geometry
        self.key = key
        self.imageReference = imageReference
        self.frameDigests = frameDigests
        self.logger = logger
    }

    deinit {
        if !state.withLock({ $0.closed }) { closeFiles() }
    }

    /// Makes staged frames durable, then releases the files and the shared lock (the entry
    /// counts as unmounted from then on).
    public func close() {
        do { try commitStaged() } catch {
            logger.warning("could not make the last cached frames durable; they will be fetched again", metadata: [
                "entry": "\(layout.directory)", "error": "\(error)"])
        }
        let wasOpen = state.withLock { s in
            defer { s.closed = true }
            return !s.closed
        }
        guard wasOpen else { return }
        touchMeta()
        closeFiles()
    }

    private func closeFiles() {
        closeDataFiles()
        lockFile.close()  // releases the flock
    }

    private func closeDataFiles() {
        data.close()
        directData?.close()
        bitmap.close()
        claims.close()  // releases every claim this handle still holds
    }

    /// True if frame `frame`'s verified bytes (or, for a hole, its zeros) are in the cache, durable
    /// or staged.
    public func contains(_ frame: Int) -> Bool {
        guard frame >= 0, frame < geometry.frameCount else { return false }
        return state.withLock { BitmapFormat.isSet($0.resident, frame) }
    }

    /// Frames this process can serve from the cache (durable or staged).
    public var presentCount: Int { state.withLock { $0.residentCount } }

    /// Every frame is present: the whole disk can be served without the network.
    public var allPresent: Bool { state.withLock { $0.residentCount == geometry.frameCount } }

    public func stats() -> CacheStats {
        let (count, lastPresent) = state.withLock { s in
            (s.residentCount, geometry.frameCount > 0 && BitmapFormat.isSet(s.resident, geometry.frameCount - 1))
        }
        var bytes = UInt64(count) * UInt64(geometry.frameSize)
        if lastPresent {
            bytes -= UInt64(geometry.frameSize - geometry.length(ofFrame: geometry.frameCount - 1))
        }
        return CacheStats(presentFrames: count, totalFrames: geometry.frameCount, presentBytes: bytes,
                          diskSize: geometry.diskSize)
    }

    /// Records the last use in meta.json (advisory: eviction sorts by it).
    func touchMeta() {
        let meta = CacheMeta(key: key.digest.hex, diskSize: geometry.diskSize, frameSize: geometry.frameSize,
                             imageReference: imageReference, lastUsed: currentTime())
        do { try meta.save(layout.metaPath) } catch {
            logger.debug("could not update cache metadata", metadata: ["error": "\(error)"])
        }
    }

    func checkFrame(_ frame: Int) throws(CacheError) {
        guard frame >= 0, frame < geometry.frameCount else {
            throw .frameOutOfRange(frame: frame, frameCount: geometry.frameCount)
        }
    }
}

// MARK: - Opening, validating and resetting an entry

extension FrameCache {
    /// Why the entry on disk cannot be used as it is, or nil if it can.
    static func inspect(_ layout: CacheLayout, expected: BitmapFormat.Header, frameDigests: [Digest]) throws(CacheError) -> String? {
        guard fileExists(layout.bitmapPath) else { return "no bitmap" }
        let frames = Int(expected.frameCount)
        let bitmap = try FileDescriptor.open(layout.bitmapPath, O_RDONLY)
        defer { bitmap.close() }
        let size = UInt64(try bitmap.status().st_size)
        guard size == BitmapFormat.fileSize(frames: frames) else {
            return "bitmap is \(size) bytes, expected \(BitmapFormat.fileSize(frames: frames))"
        }
        switch BitmapFormat.Header.decode(try bitmap.read(count: BitmapFormat.headerSize, at: 0)) {
        case .failure(let problem):
            return problem.description
        case .success(var found):
            found.allPresent = false
            guard found == expected else {
                return "header (frame size \(found.frameSize), disk size \(found.diskSize), \(found.frameCount) frames) does not match the image (frame size \(expected.frameSize), disk size \(expected.diskSize), \(expected.frameCount) frames) or its key"
            }
        }
        guard fileExists(layout.dataPath) else { return "no data file" }
        let data = try FileDescriptor.open(layout.dataPath, O_RDONLY)
        let dataSize = UInt64(try data.status().st_size)
        data.close()
        guard dataSize == expected.diskSize else { return "data file is \(dataSize) bytes, expected \(expected.diskSize)" }

        guard fileExists(layout.digestsPath) else { return "no frame digest list" }
        let digests = try FileDescriptor.open(layout.digestsPath, O_RDONLY)
        defer { digests.close() }
        let digestsSize = Int(try digests.status().st_size)
        guard digestsSize == frames * 32 else { return "frame digest list is \(digestsSize) bytes, expected \(frames * 32)" }
        let stored = try digests.read(count: digestsSize, at: 0)
        guard stored == digestListBytes(frameDigests) else { return "frame digest list differs from the image's" }
        return nil
    }

    static func digestListBytes(_ digests: [Digest]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(digests.count * 32)
        for d in digests { out += d.bytes }
        return out
    }

    /// Empties the entry and writes a fresh one. Caller holds the exclusive lock.
    ///
    /// The bitmap is invalidated durably first: from then on no bit vouches for any byte of the
    /// data file, so a crash at any later step leaves an entry the next open resets again. The
    /// header is written last; it is the commit point of the new entry.
    static func reset(_ layout: CacheLayout, header: BitmapFormat.Header, frameDigests: [Digest]) throws(CacheError) {
        let frames = Int(header.frameCount)
        let bitmap = try FileDescriptor.open(layout.bitmapPath, O_RDWR | O_CREAT)
        defer { bitmap.close() }
        try bitmap.truncate(to: 0)
        try bitmap.sync()

        let data = try FileDescriptor.open(layout.dataPath, O_RDWR | O_CREAT)
        defer { data.close() }
        try data.truncate(to: 0)
        do { try data.truncate(to: header.diskSize) } catch .system(_, _, EFBIG) {
            throw .fileTooLargeForFileSystem(path: layout.dataPath, size: header.diskSize)
        }
        try data.sync()

        try systemIO { () throws(IOError) in try FileIO.writeAtomically(digestListBytes(frameDigests), to: layout.digestsPath, durable: true) }

        try bitmap.truncate(to: BitmapFormat.fileSize(frames: frames))  // all bits clear
        try bitmap.write(header.encoded(), at: 0)
        try bitmap.sync()
        try systemIO { () throws(IOError) in try FileIO.syncDirectory(layout.directory) }
    }

    /// Opens the data and bitmap files and reads the bits. Caller holds the shared lock, and
    /// closes `lockFile` if this throws.
    static func load(_ layout: CacheLayout, lockFile: FileDescriptor, expected: BitmapFormat.Header,
                     geometry: DiskGeometry, key: CacheKey, frameDigests: [Digest], imageReference: String,
                     logger: Logger) throws(CacheError) -> FrameCache {
        let data = try FileDescriptor.open(layout.dataPath, O_RDWR)
        let bitmap: FileDescriptor
        do { bitmap = try FileDescriptor.open(layout.bitmapPath, O_RDWR) } catch {
            data.close()
            throw error
        }
        let claims: FrameClaims
        do { claims = try FrameClaims.open(layout.claimsPath) } catch {
            data.close()
            bitmap.close()
            throw error
        }
        let frames = geometry.frameCount
        let header: BitmapFormat.Header
        var bits: [UInt8]
        do throws(CacheError) {
            guard case .success(let decoded) = BitmapFormat.Header.decode(try bitmap.read(count: BitmapFormat.headerSize, at: 0)),
                  decoded.frameCount == expected.frameCount, decoded.key == expected.key,
                  decoded.frameSize == expected.frameSize, decoded.diskSize == expected.diskSize else {
                throw CacheError.entryInUse(path: layout.directory, reason: "bitmap header changed while opening")
            }
            header = decoded
            bits = try bitmap.read(count: BitmapFormat.byteCount(frames: frames), at: UInt64(BitmapFormat.headerSize))
        } catch {
            data.close()
            bitmap.close()
            claims.close()
            throw error
        }
        BitmapFormat.maskTail(&bits, frames: frames)
        let present = BitmapFormat.popcount(bits)
        // From here the cache owns the data and bitmap descriptors.
        let cache = FrameCache(
            layout: layout, data: data, directData: DirectWriter.open(layout.dataPath), bitmap: bitmap, lockFile: lockFile, claims: claims, header: expected,
            state: State(bits: bits, durableCount: present, allPresentOnDisk: header.allPresent),
            geometry: geometry, key: key, frameDigests: frameDigests, imageReference: imageReference, logger: logger)
        // The flag is derived from the bits; the bits win if the two disagree.
        if header.allPresent != (present == frames) {
            logger.info("bitmap all-present flag disagrees with its bits, rewriting it", metadata: [
                "entry": "\(layout.directory)", "present": "\(present)", "frames": "\(frames)"])
            do { try cache.writeHeader(allPresent: present == frames) } catch {
                cache.abandon()
                throw error
            }
            cache.state.withLock { $0.allPresentOnDisk = present == frames }
        }
        return cache
    }

    /// Closes the files of a cache that failed to open, except the lock file, which its opener
    /// closes; the deinit then closes nothing a second time.
    private func abandon() {
        state.withLock { $0.closed = true }
        closeDataFiles()
    }

    func writeHeader(allPresent: Bool) throws(CacheError) {
        var h = header
        h.allPresent = allPresent
        try bitmap.write(h.encoded(), at: 0)
        try bitmap.dataSync()
    }
}
