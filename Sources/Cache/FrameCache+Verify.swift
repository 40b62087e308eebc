import Glibc
import Verity

/// What `FrameCache.verify` found.
public enum CachedFrameCheck: Sendable, Equatable {
    /// The frame is not in the cache (never was, or was dropped by another thread meanwhile).
    case absent
    /// Its bytes match its digest (now, or since this process checked or wrote them).
    case verified
    /// Its bytes did not match: it was dropped from the cache and must be fetched again.
    case dropped(actual: Digest)
}

extension FrameCache {
    /// Resident frames of `frames` that this process has not checked yet.
    public func unverified(in frames: Range<Int>) -> [Int] {
        guard frames.lowerBound >= 0, frames.upperBound <= geometry.frameCount else { return [] }
        return state.withLock { s in
            frames.filter { BitmapFormat.isSet(s.resident, $0) && !BitmapFormat.isSet(s.verified, $0) }
        }
    }

    /// Whether this process has checked (or written) frame `frame`'s cached bytes.
    public func isVerified(_ frame: Int) -> Bool {
        guard frame >= 0, frame < geometry.frameCount else { return false }
        return state.withLock { BitmapFormat.isSet($0.verified, frame) }
    }

    /// Checks a resident frame's bytes in the data file against its digest, once per process:
    /// a match sets its in-memory verified bit, a mismatch drops the frame from the cache (its
    /// bits are cleared durably), so that it is fetched again.
    ///
    /// Costs one read and one SHA-256 of the frame the first time; nothing after that.
    public func verify(_ frame: Int) throws(CacheError) -> CachedFrameCheck {
        try checkFrame(frame)
        let known = try state.withLock { (s) throws(CacheError) -> CachedFrameCheck? in
            guard !s.closed else { throw .closed(path: layout.directory) }
            if !BitmapFormat.isSet(s.resident, frame) { return .absent }
            return BitmapFormat.isSet(s.verified, frame) ? .verified : nil
        }
        if let known { return known }
        let actual = try digestOfStoredFrame(frame)
        if actual == frameDigests[frame] {
            state.withLock { s in
                // Dropped and not yet fetched again by another thread meanwhile: nothing to vouch for.
                if BitmapFormat.isSet(s.resident, frame) { _ = BitmapFormat.set(&s.verified, frame) }
            }
            return .verified
        }
        // Another thread may have checked the same bad bytes at the same time: one drops the frame
        // (and reports it), the other sees what became of it.
        guard try drop(frame) else {
            return state.withLock { BitmapFormat.isSet($0.verified, frame) } ? .verified : .absent
        }
        logger.info("cached frame does not match its digest; dropped it from the cache to fetch it again", metadata: [
            "entry": "\(layout.directory)", "frame": "\(frame)", "expected": "\(frameDigests[frame])", "actual": "\(actual)"])
        return .dropped(actual: actual)
    }

    /// SHA-256 of frame `frame`'s bytes in the data file, hashed straight from the page cache
    /// through a private read-only mapping (no copy into a buffer first); a plain read where the
    /// file cannot be mapped. The data file always has the disk's full size, so the mapping never
    /// reaches past its end.
    func digestOfStoredFrame(_ frame: Int) throws(CacheError) -> Digest {
        let length = geometry.length(ofFrame: frame)
        let offset = geometry.offset(ofFrame: frame)
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset - offset % page
        let lead = Int(offset - start)
        if let mapped = mmap(nil, lead + length, PROT_READ, MAP_PRIVATE, data.rawValue, off_t(start)), mapped != MAP_FAILED {
            defer { munmap(mapped, lead + length) }
            _ = madvise(mapped, lead + length, MADV_SEQUENTIAL)
            return SHA256Hasher.digest(UnsafeRawBufferPointer(start: mapped + lead, count: length))
        }
        return SHA256Hasher.digest(try data.read(count: length, at: offset))
    }

    /// Checks every resident frame (a scrub): returns the frames that were dropped. Frames checked
    /// already by this process are not read again.
    public func verifyAll(progress: (Int) -> Void = { _ in }) throws(CacheError) -> [Int] {
        var dropped: [Int] = []
        for frame in unverified(in: 0..<geometry.frameCount) {
            if case .dropped = try verify(frame) { dropped.append(frame) }
            progress(frame)
        }
        return dropped
    }

    /// Removes a resident, unverified frame from the cache; false if it was not (any more) resident
    /// and unverified, and so was left alone.
    ///
    /// Order: the all-present flag is cleared first (it must never claim more than the bits), then
    /// the frame's bits, in memory and durably in the bitmap file. The bad bytes stay in the data
    /// file until the refetched frame overwrites them: no bit vouches for them, and punching them
    /// out could race with another process (a second mount, or `imgfs verify` beside a mount) that
    /// is writing its own verified copy of the frame there. Clearing a bit under the shared lock is
    /// safe for the same reason: every process checks each frame before serving it, so a bit that
    /// another process writes back over this one costs a check, not a wrong byte.
    @discardableResult
    func drop(_ frame: Int) throws(CacheError) -> Bool {
        try commitLock.withLock { (_) throws(CacheError) -> Bool in
            let proceed = try state.withLock { (s) throws(CacheError) -> Bool in
                guard !s.closed else { throw .closed(path: layout.directory) }
                // Verified meanwhile: another thread dropped it and fetched the right bytes again.
                return BitmapFormat.isSet(s.resident, frame) && !BitmapFormat.isSet(s.verified, frame)
            }
            guard proceed else { return false }
            if state.withLock({ $0.allPresentOnDisk }) {
                try writeHeader(allPresent: false)
                state.withLock { $0.allPresentOnDisk = false }
            }
            try state.withLock { (s) throws(CacheError) in
                guard !s.closed else { throw .closed(path: layout.directory) }
                if BitmapFormat.isSet(s.bits, frame) {
                    BitmapFormat.clear(&s.bits, frame)
                    s.durableCount -= 1
                }
                if BitmapFormat.isSet(s.resident, frame) {
                    BitmapFormat.clear(&s.resident, frame)
                    s.residentCount -= 1
                }
                BitmapFormat.clear(&s.verified, frame)
                s.staged.removeAll { $0 == frame }
                // Under the lock for the same reason as in `commitBits`: byte copies reach the file
                // in the order of the in-memory updates.
                let byte = frame >> 3
                try bitmap.write(s.bits[byte...byte], at: BitmapFormat.byteOffset(ofFrame: frame))
            }
            try bitmap.dataSync()
            return true
        }
    }
}
