import Glibc
import Logging
import SystemIO

/// What one eviction pass did.
public struct EvictionReport: Sendable, Codable, Equatable {
    public let limit: UInt64
    /// Allocated bytes (`st_blocks * 512`) of all entries before and after.
    public let bytesBefore: UInt64
    public let bytesAfter: UInt64
    /// Bits cleared and punched (holes among them free nothing).
    public let framesEvicted: Int
    /// Keys (hex) of the entries that lost frames or orphaned bytes.
    public let entriesEvicted: [String]
    /// Keys (hex) of entries skipped because they are open (mounted).
    public let entriesInUse: [String]
}

/// Keeps the cache under a size limit by evicting whole frames of unmounted disks.
public enum CacheEviction {
    /// Punches frames out of entries that no process has open, least recently used entry first,
    /// until the allocated size of all entries is at most `limit`. An entry that is open anywhere
    /// (its shared flock is held) is never touched.
    ///
    /// Per entry, bytes with no bit over them (a crash between writing a frame and setting its bit)
    /// go first, since they cost nothing to drop; then frames from the end of the disk backwards.
    /// For each batch the bits are cleared and the bitmap fsynced **before** the data is punched,
    /// so a crash never leaves a set bit over punched zeros.
    public static func evict(root: String, limit: UInt64, logger: Logger) throws(CacheError) -> EvictionReport {
        struct Candidate { let layout: CacheLayout; let name: String; let lastUsed: Double }
        var candidates: [Candidate] = []
        var total: UInt64 = 0
        for name in try systemIO({ () throws(IOError) in try FileIO.directoryEntries(CacheLayout.disksDirectory(root: root)) }) where CacheLayout.isEntryName(name) {
            let layout = CacheLayout(root: root, keyHex: name)
            total += try allocatedBytes(inDirectory: layout.directory)
            let lastUsed = CacheMeta.load(layout.metaPath)?.lastUsed ?? modificationTime(layout.bitmapPath)
            candidates.append(Candidate(layout: layout, name: name, lastUsed: lastUsed))
        }
        let before = total
        var evicted = 0
        var touched: [String] = []
        var inUse: [String] = []
        candidates.sort { ($0.lastUsed, $0.name) < ($1.lastUsed, $1.name) }
        for candidate in candidates where total > limit {
            let lock = try FileDescriptor.open(candidate.layout.lockPath, O_RDWR | O_CREAT)
            defer { lock.close() }
            guard try lock.tryLock(LOCK_EX) else {
                inUse.append(candidate.name)
                continue
            }
            let (freed, frames) = try evictEntry(candidate.layout, need: total - limit, logger: logger)
            total -= min(total, freed)
            evicted += frames
            if freed > 0 || frames > 0 { touched.append(candidate.name) }
        }
        if total > limit {
            logger.info("cache is above its size limit after eviction; the rest is in use", metadata: [
                "bytes": "\(total)", "limit": "\(limit)", "inUse": "\(inUse.count)"])
        }
        return EvictionReport(limit: limit, bytesBefore: before, bytesAfter: total, framesEvicted: evicted,
                              entriesEvicted: touched, entriesInUse: inUse)
    }

    /// Frees at least `need` bytes from one entry if it can. Caller holds the exclusive lock.
    /// Returns the bytes freed and the number of bits cleared.
    static func evictEntry(_ layout: CacheLayout, need: UInt64, logger: Logger) throws(CacheError) -> (UInt64, Int) {
        guard fileExists(layout.dataPath) else { return (0, 0) }
        let data = try FileDescriptor.open(layout.dataPath, O_RDWR)
        defer { data.close() }
        let start = allocated(try data.status())
        var current = start

        guard fileExists(layout.bitmapPath), let (header, readOnlyBitmap) = try SharedFrameLocator.readHeader(layout) else {
            // No valid bitmap: nothing in the data file is trusted, and the next open resets the
            // entry anyway. Drop all of it.
            try data.truncate(to: 0)
            logger.info("evicted an entry with no valid bitmap", metadata: ["entry": "\(layout.directory)"])
            return (start, 0)
        }
        readOnlyBitmap.close()
        let bitmap = try FileDescriptor.open(layout.bitmapPath, O_RDWR)
        defer { bitmap.close() }
        let frames = Int(header.frameCount)
        let frameSize = UInt64(header.frameSize)
        func range(_ run: Range<Int>) -> (UInt64, UInt64) {
            let low = UInt64(run.lowerBound) * frameSize
            let high = min(header.diskSize, UInt64(run.upperBound) * frameSize)
            return (low, high - low)
        }
        var bits = try bitmap.read(count: BitmapFormat.byteCount(frames: frames), at: UInt64(BitmapFormat.headerSize))
        BitmapFormat.maskTail(&bits, frames: frames)

        // 1. Orphans: allocated bytes under clear bits are never served; punching them is free.
        for run in runs((0..<frames).filter { !BitmapFormat.isSet(bits, $0) }) {
            let (offset, length) = range(run)
            try data.punchHole(offset: offset, length: length)
        }
        current = allocated(try data.status())

        // 2. Present frames, from the end of the disk backwards, in batches sized to the need.
        var present = (0..<frames).filter { BitmapFormat.isSet(bits, $0) }
        var cleared = 0
        var flagCleared = false
        func freed() -> UInt64 { start > current ? start - current : 0 }
        while freed() < need, !present.isEmpty {
            let remaining = need - freed()
            let batchCount = max(1, min(present.count, Int((remaining + frameSize - 1) / frameSize)))
            let batch = Array(present.suffix(batchCount)).sorted()
            present.removeLast(batchCount)

            // Durable bitmap first: the flag, then the bits, fsynced before a single byte is punched.
            if header.allPresent && !flagCleared {
                var h = header
                h.allPresent = false
                try bitmap.write(h.encoded(), at: 0)
                flagCleared = true
            }
            for frame in batch { BitmapFormat.clear(&bits, frame) }
            let low = batch[0] >> 3
            let high = batch[batch.count - 1] >> 3
            try bitmap.write(bits[low...high], at: UInt64(BitmapFormat.headerSize + low))
            try bitmap.dataSync()

            for run in runs(batch) {
                let (offset, length) = range(run)
                try data.punchHole(offset: offset, length: length)
            }
            cleared += batch.count
            current = allocated(try data.status())
        }
        try data.dataSync()
        logger.info("evicted frames from the cache", metadata: [
            "entry": "\(layout.directory)", "frames": "\(cleared)", "freedBytes": "\(freed())"])
        return (freed(), cleared)
    }

    static func allocated(_ st: stat) -> UInt64 { UInt64(st.st_blocks) * 512 }

    /// Allocated bytes of the regular files directly in `directory`.
    static func allocatedBytes(inDirectory directory: String) throws(CacheError) -> UInt64 {
        var total: UInt64 = 0
        for name in try systemIO({ () throws(IOError) in try FileIO.directoryEntries(directory) }) {
            var st = stat()
            if lstat(directory + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { total += allocated(st) }
        }
        return total
    }

    static func modificationTime(_ path: String) -> Double {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return Double(st.st_mtim.tv_sec)
    }
}
