import Glibc

public enum ProcessLiveness {
    /// True if a process with `pid` exists (EPERM means it exists but is not ours).
    /// A zombie (killed, not yet reaped by its parent) counts as gone.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        // /proc/PID/stat: "pid (comm) S ..."; the state follows the last ')'. A size-0 /proc
        // file, so read once into a fixed buffer rather than by its st_size.
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return true }
        defer { Glibc.close(fd) }
        var bytes = [UInt8](repeating: 0, count: 1024)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard count > 0, let close = bytes[..<count].lastIndex(of: UInt8(ascii: ")")), close + 2 < count else { return true }
        return bytes[close + 2] != UInt8(ascii: "Z")
    }
}
