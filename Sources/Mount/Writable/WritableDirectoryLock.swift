import Glibc

/// The exclusive claim of one mount on a writable directory (`<dir>/lock`, `flock`).
///
/// Two mounts writing one `disk.data` and `blocks.bitmap` would each keep its own bitmap in
/// memory and overwrite the other's on flush: after a remount one mount's writes are gone. The
/// lock is held by the process that serves the disk, for as long as the disk is open, and the
/// kernel drops it when that process dies, so a crashed mount never leaves a stale claim. The
/// file holds the holder's pid, only to name it in the error of the one refused.
public final class WritableDirectoryLock: Sendable {
    private let fd: Int32
    public let directory: String

    public static func path(in directory: String) -> String { directory + "/lock" }

    /// Takes the lock or throws `.invalidArgument` naming the mount that has it.
    public init(directory: String) throws(MountError) {
        let path = Self.path(in: directory)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MountError.io(operation: "open", path: path, errno: errno) }
        var result: Int32
        repeat { result = flock(fd, LOCK_EX | LOCK_NB) } while result != 0 && errno == EINTR
        guard result == 0 else {
            let code = errno
            let holder = Self.recordedPid(fd)
            Glibc.close(fd)
            guard code == EWOULDBLOCK else { throw MountError.io(operation: "flock", path: path, errno: code) }
            throw MountError.invalidArgument(
                "\(directory) is in use by another writable mount\(holder.map { " (imgfs pid \($0))" } ?? ""); " +
                "unmount it first, or give this mount its own --writable-dir")
        }
        let text = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) == 0 { _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
        self.fd = fd
        self.directory = directory
    }

    /// Throws as `init` does when another mount holds the directory, without keeping the lock:
    /// for the command that checks before it starts the daemon that takes it.
    public static func checkAvailable(directory: String) throws(MountError) {
        guard access(directory, F_OK) == 0 else { return }
        _ = try WritableDirectoryLock(directory: directory)
    }

    deinit { Glibc.close(fd) }

    private static func recordedPid(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer.prefix(n), as: UTF8.self).trimmingCharacters(whereSpace: true))
    }
}

private extension String {
    func trimmingCharacters(whereSpace: Bool) -> String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
