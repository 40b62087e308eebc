#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why the daemon child could not be started or did not come up.
public enum DaemonError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `pipe2`, `posix_spawn` or a file action failed.
    case spawnFailed(String)
    /// The child reported `ERROR <message>`.
    case childFailed(String)
    /// The child went away without saying READY; its wait status, described.
    case childExited(String)
    /// No answer within the timeout; the child was sent SIGTERM.
    case timedOut(seconds: Double)
    /// The child wrote something that is neither READY nor ERROR.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .spawnFailed(let detail): "could not start the daemon: \(detail)"
        case .childFailed(let message): message
        case .childExited(let status): "the daemon exited before it was ready (\(status))"
        case .timedOut(let seconds): "the daemon was not ready after \(seconds) s"
        case .protocolViolation(let line): "the daemon sent an unexpected line: \(line)"
        }
    }
}

/// Starting a background copy of this program, and the handshake that tells the parent
/// whether it mounted.
///
/// The parent calls ``spawnSelf(arguments:logFile:)`` with arguments that make the child
/// run in the foreground and include `--ready-fd \(Daemon.childReadyFD)` (the flag's
/// spelling is the caller's), then ``waitForReady(_:timeout:)``. The child mounts,
/// installs signal handlers, calls ``signalReady(fd:)`` (or ``signalFailure(fd:message:)``
/// and exits), then blocks in `FuseMount.run()`. The child runs in its own session with
/// stdin on /dev/null and stdout/stderr appended to the log file (or /dev/null).
/// Never `fork()`: the Swift runtime and libcurl threads do not survive it.
public enum Daemon {
    /// The descriptor on which the child finds the write end of the handshake pipe.
    public static let childReadyFD: Int32 = 3

    public struct Child: Sendable, Equatable {
        public let pid: pid_t
        /// The parent's read end of the handshake pipe (close-on-exec).
        public let readyFD: Int32
    }

    /// Re-executes `/proc/self/exe` with `arguments` (argv[1...]) as a detached child.
    public static func spawnSelf(arguments: [String], logFile: String?) throws(DaemonError) -> Child {
        try spawn(executable: "/proc/self/exe", arguments: arguments, logFile: logFile)
    }

    /// Starts `executable` (a real path, so `ps` shows its name) as a detached child, as
    /// ``spawnSelf(arguments:logFile:)`` does.
    public static func spawn(executable: String, arguments: [String], logFile: String?) throws(DaemonError) -> Child {
        var fds: [Int32] = [-1, -1]
        guard makeCloseOnExecPipe(&fds) else {
            throw .spawnFailed("pipe: \(describeErrno(errno))")
        }
        let readEnd = fds[0]
        var writeEnd = fds[1]
        // dup2(fd, 3) when fd is already 3 would keep close-on-exec set; move it out of the way.
        if writeEnd <= childReadyFD {
            let moved = fcntl(writeEnd, F_DUPFD_CLOEXEC, Int32(10))
            close(writeEnd)
            guard moved >= 0 else {
                close(readEnd)
                throw .spawnFailed("fcntl(F_DUPFD_CLOEXEC): \(describeErrno(errno))")
            }
            writeEnd = moved
        }
        defer { close(writeEnd) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        var result = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if result == 0 {
            result = posix_spawn_file_actions_addopen(&actions, 1, logFile ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        if result == 0 { result = posix_spawn_file_actions_adddup2(&actions, 1, 2) }
        if result == 0 { result = posix_spawn_file_actions_adddup2(&actions, writeEnd, childReadyFD) }
        // A fresh session (no controlling terminal, no terminal signals), default signal
        // dispositions and an empty mask whatever the parent had.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        var empty = sigset_t()
        sigemptyset(&empty)
        if result == 0 { result = posix_spawnattr_setsigdefault(&attributes, &defaults) }
        if result == 0 { result = posix_spawnattr_setsigmask(&attributes, &empty) }
        if result == 0 {
            result = posix_spawnattr_setflags(&attributes, Int16(posixSpawnSetSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        }
        guard result == 0 else {
            close(readEnd)
            throw .spawnFailed("posix_spawn setup: \(describeErrno(result))")
        }

        var pid: pid_t = 0
        let argv = [executable] + arguments
        result = withCStrings(argv) { argv in
            posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        }
        guard result == 0 else {
            close(readEnd)
            throw .spawnFailed("posix_spawn \(executable): \(describeErrno(result))")
        }
        return Child(pid: pid, readyFD: readEnd)
    }

    /// Blocks until the child says READY (returns) or ERROR (throws its message), exits,
    /// or `timeout` passes (the child is sent SIGTERM). Closes `child.readyFD`.
    public static func waitForReady(_ child: Child, timeout: Duration = .seconds(60)) throws(DaemonError) {
        defer { close(child.readyFD) }
        let deadline = monotonicNow() + timeout
        var line: [UInt8] = []
        while true {
            if let newline = line.firstIndex(of: UInt8(ascii: "\n")) {
                let text = String(decoding: line[..<newline], as: UTF8.self)
                if text == "READY" { return }
                if text.hasPrefix("ERROR") {
                    reap(child.pid, within: .seconds(2))
                    let message = text.dropFirst("ERROR".count).drop(while: { $0 == " " })
                    throw .childFailed(message.isEmpty ? "the daemon failed" : String(message))
                }
                throw .protocolViolation(text)
            }
            let remaining = deadline - monotonicNow()
            guard remaining > .zero else {
                kill(child.pid, SIGTERM)
                reap(child.pid, within: .seconds(2))
                let (seconds, attoseconds) = timeout.components
                throw .timedOut(seconds: Double(seconds) + Double(attoseconds) / 1e18)
            }
            var poller = pollfd(fd: child.readyFD, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = retryingEINTR { poll(&poller, 1, milliseconds) }
            if ready < 0 { throw .spawnFailed("poll: \(describeErrno(errno))") }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 512)
            let count = retryingEINTR { chunk.withUnsafeMutableBytes { read(child.readyFD, $0.baseAddress, $0.count) } }
            if count < 0 {
                if errno == EAGAIN { continue }
                throw .spawnFailed("read: \(describeErrno(errno))")
            }
            if count == 0 {
                // EOF: every copy of the write end is closed, so the child is gone (or
                // closed descriptor 3 without a word).
                let status = reap(child.pid, within: .seconds(2))
                throw .childExited(status.map(describeWaitStatus) ?? "it closed the ready pipe")
            }
            line.append(contentsOf: chunk[..<count])
        }
    }

    /// Child side: tells the parent the mount is up. Closes `fd`.
    public static func signalReady(fd: Int32) {
        send("READY\n", to: fd)
    }

    /// Child side: tells the parent why it could not mount. Closes `fd`.
    public static func signalFailure(fd: Int32, message: String) {
        let oneLine = message.replacing("\n", with: " ")
        send("ERROR \(oneLine)\n", to: fd)
    }

    private static func send(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = retryingEINTR { bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
            if written < 0 { break }
            bytes = bytes.dropFirst(written)
        }
        close(fd)
    }

    /// Waits (polling) up to `within` for `pid` to exit; returns its wait status if it did.
    @discardableResult
    static func reap(_ pid: pid_t, within limit: Duration) -> Int32? {
        let deadline = monotonicNow() + limit
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return status }
            if result < 0 && errno != EINTR { return nil }
            if monotonicNow() >= deadline { return nil }
            usleep(10_000)
        }
    }
}

/// glibc's POSIX_SPAWN_SETSID (a GNU extension the Swift Glibc module may not export).
private let posixSpawnSetSID: Int32 = 0x80

func describeWaitStatus(_ status: Int32) -> String {
    let signal = status & 0x7f
    if signal == 0 { return "exit status \((status >> 8) & 0xff)" }
    return "killed by signal \(signal)"
}

func monotonicNow() -> Duration {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
}

/// `pipe` with both ends close-on-exec. (`pipe2` is a GNU extension the Swift Glibc module
/// does not export; a spawn on another thread between the two calls could inherit the
/// ends, which at worst delays EOF on the handshake until the timeout.)
func makeCloseOnExecPipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return true
}
