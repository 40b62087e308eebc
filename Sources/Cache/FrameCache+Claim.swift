import Glibc
import ImgfsFormat

/// What `FrameCache.claim` found for one missing frame.
public enum FrameClaim: Sendable {
    /// This handle holds the frame's claim: fetch it, then `releaseClaim` once its verified bytes
    /// are in the data file (staged), or once the fetch has failed.
    case owned
    /// Another process on this host (another mount of the image) stored the frame: its bytes in
    /// the data file hash to the frame's digest. It is now resident and verified in this handle
    /// too, and staged, so this process's next commit makes it durable on its side as well.
    case storedByAnotherProcess(VerifiedFrame)
    /// Another process holds the claim (it is fetching the frame) and the deadline has passed, or
    /// the caller did not want to wait.
    case busy
}

extension FrameCache {
    /// Claims missing frame `frame` across every process that has this entry open (see
    /// `FrameClaims`), or finds that one of them has stored it meanwhile.
    ///
    /// With `deadline` (monotonic seconds) a claim held elsewhere is polled until it is released
    /// or the deadline passes; without, a held claim is `.busy` at once (background work, which
    /// would only duplicate the other process's fetch by waiting). `giveUp` ends the wait early
    /// (the mount is stopping).
    ///
    /// Once the claim is this handle's, the data file is checked for the frame before anyone
    /// fetches it: a frame another process stored after this one opened the entry is in neither
    /// this process's bitmap copy nor, for up to a group-commit interval, the bitmap file (bits
    /// follow the bytes' fsync), so the bytes themselves are what is checked. Those bytes are
    /// served only if they hash to the frame's digest; anything else (a process that died between
    /// its `pwrite` and the end of it, bytes a drop left behind) means "not stored", and the frame
    /// is `.owned` and fetched.
    public func claim(_ frame: Int, waitUntil deadline: Double?, giveUp: () -> Bool = { false }) throws(CacheError) -> FrameClaim {
        try checkFrame(frame)
        var pause = 0.001
        while true {
            if try claims.tryClaim(frame) { break }
            guard let deadline, !giveUp() else { return .busy }
            let now = monotonicSeconds()
            guard now < deadline else { return .busy }
            // From 1 ms up to 20 ms: a frame another mount is fetching arrives in milliseconds on
            // a fast link, and 20 ms of lateness is small next to a fetch on a slow one.
            sleepSeconds(min(pause, deadline - now))
            pause = min(pause * 2, 0.02)
        }
        let stored: VerifiedFrame?
        do { stored = try storedByAnotherProcess(frame) } catch {
            claims.release(frame)
            throw error
        }
        guard let stored else { return .owned }
        claims.release(frame)
        return .storedByAnotherProcess(stored)
    }

    /// Releases a claim `claim` returned as `.owned`.
    public func releaseClaim(_ frame: Int) {
        claims.release(frame)
    }

    /// Whether another process holds frame `frame`'s claim now; for tests and diagnostics.
    public func isClaimedByAnotherProcess(_ frame: Int) throws(CacheError) -> Bool {
        try checkFrame(frame)
        return try claims.isClaimedElsewhere(frame)
    }

    /// The frame's verified bytes if the data file holds them, adopted as resident, verified and
    /// staged in this handle; nil if it does not.
    func storedByAnotherProcess(_ frame: Int) throws(CacheError) -> VerifiedFrame? {
        let length = geometry.length(ofFrame: frame)
        let offset = geometry.offset(ofFrame: frame)
        // Cheap first: a range that is one hole was never written (a frame of the image that is
        // not a hole is never all zeros), so no read and no hash for a frame nobody has stored;
        // that is the common case of a cold mount. File systems without SEEK_DATA report data
        // everywhere, which costs a check, never a wrong answer.
        let firstData = lseek(data.rawValue, off_t(offset), 3)  // SEEK_DATA
        if firstData < 0 && errno == ENXIO { return nil }
        if firstData >= 0 && UInt64(firstData) >= offset + UInt64(length) { return nil }
        let bytes = try data.read(count: length, at: offset)
        guard let verified = try? VerifiedFrame.verify(frame: frame, bytes: bytes, expectedLength: length,
                                                      expectedDigest: frameDigests[frame]) else { return nil }
        try state.withLock { (s) throws(CacheError) in
            guard !s.closed else { throw .closed(path: layout.directory) }
            if s.markResident(frame) { s.staged.append(frame) }
        }
        return verified
    }
}

private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

private func sleepSeconds(_ seconds: Double) {
    guard seconds > 0 else { return }
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
