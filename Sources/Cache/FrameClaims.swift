import Glibc

/// Per-frame claims on one cache entry, shared by every process that has it open: byte `i` of
/// the entry's `claims` file is locked (open-file-description lock, `F_OFD_SETLK`, write lock)
/// by whoever is fetching frame `i` right now. With N mounts of one image on one host (N
/// daemons, one cache root) this is what makes each frame cross the network once between them.
///
/// Why OFD byte-range locks:
/// - the kernel drops them when the last descriptor of the open file description closes, which
///   includes the death of the process by any signal: a daemon killed mid-fetch leaves no stuck
///   claim, and no one has to guess whether a pid-stamped marker file is stale;
/// - they belong to the open file description, not the process (classic `F_SETLK` locks do, so
///   two handles in one process would never conflict and closing any descriptor of the file would
///   drop every lock): two `FrameCache`s on one entry in one process conflict exactly as two
///   daemons do, which is also how the tests emulate two processes;
/// - one byte per frame costs nothing on disk (the file stays empty: locks may lie past its end)
///   and one `fcntl` per claim.
///
/// Claims are only ever tried, never waited for in the kernel (`F_OFD_SETLKW` cannot be bounded
/// by a deadline): a caller that wants to wait polls `tryClaim`. Threads of one process share the
/// description, so a claim never conflicts within a process; the mount's single-flight table
/// already gives each frame one owner there.
///
/// A claim says "being fetched", never "stored": the frame's bytes in the data file are trusted
/// only after they hash to the frame's digest (`FrameCache.claim`).
struct FrameClaims: Sendable {
    let file: FileDescriptor

    static func open(_ path: String) throws(CacheError) -> FrameClaims {
        FrameClaims(file: try FileDescriptor.open(path, O_RDWR | O_CREAT))
    }

    /// Locks frame `frame`'s byte; false if another open file description holds it.
    func tryClaim(_ frame: Int) throws(CacheError) -> Bool {
        try set(frame, type: F_WRLCK)
    }

    /// Unlocks frame `frame`'s byte; releasing a byte this description does not hold is a no-op.
    func release(_ frame: Int) {
        _ = try? set(frame, type: F_UNLCK)
    }

    /// Whether another open file description holds frame `frame`'s claim right now.
    func isClaimedElsewhere(_ frame: Int) throws(CacheError) -> Bool {
        var lock = Self.lock(frame, type: F_WRLCK)
        _ = try retryingEINTR("fcntl(F_OFD_GETLK)", file.path) { fcntl(file.rawValue, Self.getLock, &lock) }
        return lock.l_type != Int16(F_UNLCK)
    }

    func close() { file.close() }

    private func set(_ frame: Int, type: Int32) throws(CacheError) -> Bool {
        var lock = Self.lock(frame, type: type)
        while true {
            if fcntl(file.rawValue, Self.setLock, &lock) == 0 { return true }
            let e = errno
            switch e {
            case EINTR: continue
            case EAGAIN, EACCES: return false
            default: throw .system(operation: "fcntl(F_OFD_SETLK)", path: file.path, errno: e)
            }
        }
    }

    private static func lock(_ frame: Int, type: Int32) -> flock {
        var lock = flock()
        lock.l_type = Int16(type)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = off_t(frame)
        lock.l_len = 1
        lock.l_pid = 0  // required by OFD locks
        return lock
    }

    // From <fcntl.h> (Linux 3.15+); Glibc exports them only under _GNU_SOURCE.
    static let getLock: Int32 = 36  // F_OFD_GETLK
    static let setLock: Int32 = 37  // F_OFD_SETLK
}
