import ImgfsFormat

extension FrameCache {
    /// Writes one verified frame and marks it present, durably.
    public func store(_ frame: VerifiedFrame) throws(CacheError) {
        try store(contentsOf: CollectionOfOne(frame))
    }

    /// Writes several verified frames and returns once they are durable: `stage` for each, then
    /// `commitStaged`, which group-commits them with whatever else is staged.
    public func store(contentsOf frames: some Collection<VerifiedFrame>) throws(CacheError) {
        for frame in frames { try stage(frame) }
        try commitStaged()
    }

    /// Writes a verified frame into the data file and makes it servable by this process at once;
    /// it becomes durable (its bit reaches the bitmap file) at the next `commitStaged`.
    ///
    /// This is what keeps `fdatasync` off the read path: the caller waits for the `pwrite` of the
    /// frame, not for the device (and a mount's readers do not wait for that either: its cache
    /// writer stages their frames). Until the commit, a crash loses the frame (it is fetched
    /// again) and never leaves a bit over bytes that did not reach the disk.
    public func stage(_ frame: VerifiedFrame) throws(CacheError) {
        try checkFrame(frame.index)
        let length = geometry.length(ofFrame: frame.index)
        guard frame.bytes.count == length else {
            throw .frameLengthMismatch(frame: frame.index, expected: length, actual: frame.bytes.count)
        }
        if try isPresent(frame.index) { return }
        let offset = geometry.offset(ofFrame: frame.index)
        if try directData?.write(frame.bytes, at: offset) != true {
            try data.write(frame.bytes, at: offset)
        }
        try state.withLock { (s) throws(CacheError) in
            guard !s.closed else { throw .closed(path: layout.directory) }
            if s.markResident(frame.index) { s.staged.append(frame.index) }
        }
    }

    /// Whether frames are staged and not yet durable.
    public var hasStaged: Bool { state.withLock { !$0.staged.isEmpty } }

    /// Makes every staged frame durable, in the order that makes `kill -9` and power loss safe:
    ///
    /// 1. (`stage`) `pwrite` the bytes into the data file;
    /// 2. `fdatasync(data)`: the bytes (and the block allocation) are on stable storage;
    /// 3. only now set the bits in the bitmap file, then `fdatasync(bitmap)`.
    ///
    /// A bit can reach the disk only after step 2 has returned for its frame, so whatever point a
    /// crash interrupts, a set bit on disk covers bytes that are already durable and were verified.
    /// A crash between 2 and 3 loses only the bit (the frame is fetched again; eviction reclaims
    /// the orphaned bytes). The reverse order would let a bit survive a crash over bytes that
    /// never did, and the next mount would serve zeros or stale data as verified.
    ///
    /// Commits run one at a time, so when this returns, every frame staged before the call is
    /// durable, whichever thread's commit took it. If the data file cannot be synced, the frames
    /// stop being resident (they are fetched again) and the error is thrown.
    public func commitStaged() throws(CacheError) {
        try commitLock.withLock { (_) throws(CacheError) in
            let frames = state.withLock { s in
                defer { s.staged = [] }
                return s.staged
            }
            guard !frames.isEmpty else { return }
            do throws(CacheError) {
                try data.dataSync()
            } catch {
                state.withLock { s in for frame in frames { s.clearResident(frame) } }
                throw error
            }
            try commitBits(frames)
        }
    }

    /// Marks frames that are all zeros in the image as present without storing anything: their
    /// range of the data file is punched (so `SEEK_HOLE` sees it and it takes no space) and made
    /// durable before the bits are set, the same order as `store`.
    ///
    /// Holes present already are punched again too: that is how this process checks them (a
    /// punched range reads as zeros whatever was written over it), for the price of one
    /// `fallocate` per run instead of reading them.
    public func markHoles(_ frames: some Sequence<Int>) throws(CacheError) {
        var holes: [Int] = []
        var present: [Int] = []
        for frame in frames {
            try checkFrame(frame)
            if try isPresent(frame) { present.append(frame) } else { holes.append(frame) }
        }
        if !present.isEmpty {
            try punchHoles(present)
            state.withLock { s in for frame in present { _ = BitmapFormat.set(&s.verified, frame) } }
        }
        guard !holes.isEmpty else { return }
        try punchHoles(holes)
        try data.dataSync()
        try commitBits(holes)
    }

    private func punchHoles(_ frames: [Int]) throws(CacheError) {
        for run in runs(frames.sorted()) {
            let start = geometry.offset(ofFrame: run.lowerBound)
            let end = geometry.offset(ofFrame: run.upperBound - 1) + UInt64(geometry.length(ofFrame: run.upperBound - 1))
            try data.punchHole(offset: start, length: end - start)
        }
    }

    /// Sets the bits of frames whose bytes are already durable, and makes the bits durable.
    func commitBits(_ frames: [Int]) throws(CacheError) {
        let becameAllPresent = try state.withLock { (s) throws(CacheError) -> Bool in
            guard !s.closed else { throw .closed(path: layout.directory) }
            var low = Int.max
            var high = -1
            for frame in frames {
                let byte = frame >> 3
                if BitmapFormat.set(&s.bits, frame) { s.durableCount += 1 }
                _ = s.markResident(frame)
                low = min(low, byte)
                high = max(high, byte)
            }
            // Written under the lock on purpose: pwrites of one bitmap byte then happen in the order
            // of the in-memory updates, so the last copy to reach the file holds every bit set so far.
            // Written outside, a slow thread could land an older copy of the byte last and clear a
            // bit another thread had already reported durable. It is a page-cache copy; the fsync
            // that waits for the device runs after the lock is released.
            try bitmap.write(s.bits[low...high], at: BitmapFormat.byteOffset(ofFrame: low * 8))
            if s.durableCount == geometry.frameCount && !s.allPresentOnDisk {
                s.allPresentOnDisk = true
                return true
            }
            return false
        }
        // Covers this thread's bytes and any later copy of them, which holds a superset of the bits.
        try bitmap.dataSync()
        if becameAllPresent {
            // After the bits are durable: the flag must never claim more than they do.
            try writeHeader(allPresent: true)
            logger.info("every frame of the disk is cached", metadata: ["entry": "\(layout.directory)"])
        }
    }

    /// Like `contains`, but throws once the cache is closed.
    func isPresent(_ frame: Int) throws(CacheError) -> Bool {
        try state.withLock { (s) throws(CacheError) -> Bool in
            guard !s.closed else { throw .closed(path: layout.directory) }
            return BitmapFormat.isSet(s.resident, frame)
        }
    }
}

/// Maximal runs of consecutive integers in a sorted array.
func runs(_ sorted: [Int]) -> [Range<Int>] {
    var result: [Range<Int>] = []
    var start = 0
    for i in sorted.indices where i + 1 == sorted.count || sorted[i + 1] != sorted[i] + 1 {
        result.append(sorted[start]..<(sorted[i] + 1))
        start = i + 1
    }
    return result
}
