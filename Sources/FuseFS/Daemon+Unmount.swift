#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Daemon {
    /// Unmounts a FUSE mount: `umount2` as root, `fusermount3 -u` otherwise. `lazy`
    /// detaches it even while files are open (`MNT_DETACH`, `fusermount3 -z`).
    public static func unmount(_ mountpoint: String, lazy: Bool = false) throws(FuseError) {
        if geteuid() == 0 {
            if umount2(mountpoint, lazy ? Int32(MNT_DETACH) : 0) == 0 { return }
            let code = errno
            let reason: FuseError.Reason = switch code {
            case EINVAL: .notMounted
            case EBUSY: .busy
            case ENOENT: .mountpointMissing
            case EPERM, EACCES: .permissionDenied(describeErrno(code))
            default: .unmountFailed("umount2: \(describeErrno(code))")
            }
            throw FuseError(mountpoint: mountpoint, reason: reason)
        }
        var arguments = ["-u", "-q"]
        if lazy { arguments.append("-z") }
        arguments += ["--", mountpoint]
        let outcome: (status: Int32, output: String)
        do {
            outcome = try runCollectingOutput("/usr/bin/fusermount3", arguments)
        } catch {
            throw FuseError(mountpoint: mountpoint, reason: .unmountFailed("fusermount3: \(error)"))
        }
        guard outcome.status != 0 else { return }
        let output = outcome.output.trimmingTrailingNewlines()
        let reason: FuseError.Reason =
            if output.contains("not found") || output.contains("not mounted") || output.contains("Invalid argument") { .notMounted }
            else if output.contains("busy") { .busy }
            else if output.contains("ermission") || output.contains("not permitted") { .permissionDenied(output) }
            else { .unmountFailed("fusermount3 \(describeWaitStatus(outcome.status)): \(output)") }
        throw FuseError(mountpoint: mountpoint, reason: reason)
    }

    /// Runs a program to completion with stdout and stderr collected (bounded to 64 KiB).
    static func runCollectingOutput(_ executable: String, _ arguments: [String]) throws(DaemonError) -> (status: Int32, output: String) {
        var fds: [Int32] = [-1, -1]
        guard makeCloseOnExecPipe(&fds) else { throw .spawnFailed("pipe: \(describeErrno(errno))") }
        let readEnd = fds[0]
        defer { close(readEnd) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        var pid: pid_t = 0
        let result = withCStrings([executable] + arguments) { argv in
            posix_spawn(&pid, executable, &actions, nil, argv, environ)
        }
        close(fds[1])
        guard result == 0 else { throw .spawnFailed("posix_spawn \(executable): \(describeErrno(result))") }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = retryingEINTR { chunk.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) } }
            if count <= 0 { break }
            if output.count < 65_536 { output.append(contentsOf: chunk[..<count]) }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw .spawnFailed("waitpid: \(describeErrno(errno))") }
        }
        return (status, String(decoding: output, as: UTF8.self))
    }
}
