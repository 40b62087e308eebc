import FuseFS
import Glibc
import Logging
import Synchronization
import SystemIO

/// A writable disk over a read-only one (`imgfs mount --writable`): written 4 KiB blocks go to
/// a per-mount local layer, every other block is read from the base (the lazy image).
///
/// The layer is a directory: `disk.data`, a sparse file the size of the disk holding written
/// blocks at their own offsets, and `blocks.bitmap` (`WrittenBlockMap`). Nothing is ever written
/// to the base or to the shared frame cache, so other mounts of the same image keep seeing the
/// original bytes, and reopening the same directory continues the same written disk.
///
/// - A write that covers only part of an unwritten block first reads the whole block from the
///   base (read-modify-write), so the layer always holds whole blocks.
/// - `flush` (fsync) syncs `disk.data`, then writes and syncs the bitmap: on disk, a block's bit
///   is never set before its data is durable, so a crash can lose unsynced writes (as a disk
///   does) but never exposes a block of garbage.
///
/// Concurrency: many FUSE threads. Lock order, outermost first: `flushLock`, then block stripe
/// locks in ascending stripe number, then the bitmap's internal Mutex (held only for bit
/// operations, never across I/O). Reads take no stripe lock: a block's bit is set only after its
/// data is in `disk.data`, so a reader sees either the old (base) block or the new one whole.
public final class CopyOnWriteDisk: VirtualDisk, @unchecked Sendable {
    public static let blockSize = 4096
    static let stripeCount = 64

    public let base: any VirtualDisk
    public let directory: String
    public let size: UInt64
    public var isWritable: Bool { true }
    public var kernelReadahead: Int? { base.kernelReadahead }
    let blocks: WrittenBlockMap
    let dataPath: String
    private let dataFD: Int32
    /// Held while the disk is open: no second mount writes this directory meanwhile.
    private let lock: WritableDirectoryLock
    private let logger: Logger
    // Serialises read-modify-write of a block against other writes to it.
    // @unchecked Sendable: the mutexes are only touched through lock()/unlock().
    private let stripes: UnsafeMutablePointer<pthread_mutex_t>
    private let flushLock = Mutex<Void>(())

    /// Opens (or creates) the layer in `directory` for `base`.
    public init(base: any VirtualDisk, directory: String, logger: Logger) throws(MountError) {
        do { try FileIO.makeDirectories(directory, mode: 0o700) } catch { throw MountError(error) }
        let lock = try WritableDirectoryLock(directory: directory)
        let dataPath = directory + "/disk.data"
        let fd = open(dataPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MountError.io(operation: "open", path: dataPath, errno: errno) }
        let map: WrittenBlockMap
        do {
            map = try WrittenBlockMap(path: directory + "/blocks.bitmap", diskSize: base.size, blockSize: Self.blockSize)
        } catch {
            Glibc.close(fd)
            throw error
        }
        // Sized like the disk (sparse), so preads of any written block are in range.
        guard ftruncate(fd, off_t(base.size)) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw MountError.io(operation: "ftruncate", path: dataPath, errno: code)
        }
        // The new files' directory entries must survive a crash too.
        try? FileIO.syncDirectory(directory)
        self.base = base
        self.directory = directory
        self.lock = lock
        self.size = base.size
        self.blocks = map
        self.dataPath = dataPath
        self.dataFD = fd
        self.logger = logger
        self.stripes = .allocate(capacity: Self.stripeCount)
        for i in 0..<Self.stripeCount { pthread_mutex_init(stripes + i, nil) }
        let written = map.count
        if written > 0 {
            logger.info("continuing a written disk", metadata: ["directory": "\(directory)", "blocks": "\(written)"])
        }
    }

    deinit {
        for i in 0..<Self.stripeCount { pthread_mutex_destroy(stripes + i) }
        stripes.deallocate()
        Glibc.close(dataFD)
    }

    /// Blocks written so far (in memory; persisted ones after a flush).
    public var writtenBlockCount: Int { blocks.count }

    /// The written blocks as disjoint byte ranges of the disk, in order.
    public func writtenRanges() -> [Range<UInt64>] {
        blocks.writtenRuns().map { run in
            UInt64(run.lowerBound) * UInt64(Self.blockSize)..<min(size, UInt64(run.upperBound) * UInt64(Self.blockSize))
        }
    }

    // MARK: - Reading

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(MountError) -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let length = Int(min(UInt64(buffer.count), size - offset))
        let bs = UInt64(Self.blockSize)
        let first = Int(offset / bs)
        let last = Int((offset + UInt64(length) - 1) / bs)
        let flags = blocks.flags(first..<last + 1)
        // Runs of blocks with the same state: one pread or one base read per run.
        var done = 0
        var i = 0
        while i < flags.count {
            var j = i + 1
            while j < flags.count && flags[j] == flags[i] { j += 1 }
            let runEnd = min(offset + UInt64(length), UInt64(first + j) * bs)
            let count = Int(runEnd - (offset + UInt64(done)))
            let destination = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count])
            if flags[i] {
                try readAll(dataFD, destination, at: offset + UInt64(done), path: dataPath)
            } else {
                try readBase(at: offset + UInt64(done), into: destination)
            }
            done += count
            i = j
        }
        return done
    }

    private func readBase(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(MountError) {
        var done = 0
        while done < buffer.count {
            let n = try base.read(at: offset + UInt64(done), into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            guard n > 0 else {
                throw MountError.io(operation: "read of the base image (short read)", path: directory, errno: EIO)
            }
            done += n
        }
    }

    /// Data where either the base or the layer has data; holes only where both have.
    public func seek(from offset: UInt64, whence: SeekWhence) -> UInt64? {
        guard offset < size else { return nil }
        let bs = UInt64(Self.blockSize)
        switch whence {
        case .data:
            let baseData = base.seek(from: offset, whence: .data)
            let written = blocks.firstSet(from: Int(offset / bs)).map { max(offset, UInt64($0) * bs) }
            switch (baseData, written) {
            case (nil, nil): return nil
            case (let a?, nil): return a
            case (nil, let b?): return b
            case (let a?, let b?): return min(a, b)
            }
        case .hole:
            var position = offset
            while position < size {
                let hole = base.seek(from: position, whence: .hole) ?? size
                guard hole < size else { return size }
                let block = Int(hole / bs)
                guard blocks.contains(block) else { return hole }
                // The base's hole starts in a written block: skip the written run, look again.
                position = UInt64(blocks.firstClear(from: block)) * bs
            }
            return size
        }
    }

    // MARK: - Writing

    public func write(at offset: UInt64, data: UnsafeRawBufferPointer) throws(MountError) -> Int {
        guard data.count > 0 else { return 0 }
        guard offset < size, UInt64(data.count) <= size - offset else {
            // A disk does not grow: writes past its end fail as they would on a block device.
            throw MountError.io(operation: "write past the end of the \(size)-byte disk at offset \(offset)", path: dataPath, errno: ENOSPC)
        }
        let bs = UInt64(Self.blockSize)
        let first = Int(offset / bs)
        let last = Int((offset + UInt64(data.count) - 1) / bs)
        let stripeNumbers = Set((first...last).lazy.map { $0 % Self.stripeCount }).sorted()
        for s in stripeNumbers { pthread_mutex_lock(stripes + s) }
        defer { for s in stripeNumbers.reversed() { pthread_mutex_unlock(stripes + s) } }

        // Partial first and last blocks that are not yet in the layer are filled from the base
        // first; whole blocks in between are simply overwritten.
        let end = offset + UInt64(data.count)
        func coveredWhole(_ b: Int) -> Bool {
            let blockStart = UInt64(b) * bs
            return offset <= blockStart && end >= min(blockStart + bs, size)
        }
        let edges = Set([first, last]).sorted().filter { !coveredWhole($0) }
        var block = [UInt8](repeating: 0, count: Self.blockSize)
        for b in edges where !blocks.contains(b) {
            let blockStart = UInt64(b) * bs
            let blockLength = Int(min(bs, size - blockStart))
            try block.withUnsafeMutableBytes { buffer in Result { () throws(MountError) in
                let target = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<blockLength])
                try readBase(at: blockStart, into: target)
                // Overlay the part of this write that falls in the block.
                let from = max(offset, blockStart)
                let to = min(end, blockStart + UInt64(blockLength))
                let source = UnsafeRawBufferPointer(rebasing: data[Int(from - offset)..<Int(to - offset)])
                UnsafeMutableRawBufferPointer(rebasing: target[Int(from - blockStart)..<Int(to - blockStart)]).copyMemory(from: source)
                try writeAll(dataFD, UnsafeRawBufferPointer(target), at: blockStart, path: dataPath)
            } }.get()
        }
        // Everything else of the write goes in as is (re-writing an edge block is harmless: the
        // same bytes land on the same offsets).
        try writeAll(dataFD, data, at: offset, path: dataPath)
        blocks.insert(first..<last + 1)
        return data.count
    }

    /// fsync: data first, then the bits that describe it.
    public func flush() throws(MountError) {
        try flushLock.withLock { _ throws(MountError) in
            let snapshot = blocks.snapshotForPersist()
            guard !snapshot.pages.isEmpty else { return }
            guard fdatasync(dataFD) == 0 else {
                let code = errno
                // Still dirty: a later fsync retries, and this one reports the failure.
                blocks.markDirty(snapshot.pages)
                throw MountError.io(operation: "fdatasync", path: dataPath, errno: code)
            }
            try blocks.persist(snapshot)
        }
    }

    /// Flushes at unmount; errors are logged, since there is no caller left to tell.
    public func close() {
        do { try flush() } catch {
            logger.error("could not flush the written disk at unmount", metadata: ["directory": "\(directory)", "error": "\(error)"])
        }
    }
}

