#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import Synchronization

/// How the holder starts a serving process. The process must connect to the holder's
/// socket, send `ATTACH`, serve the descriptor it gets back (``FuseMount/init(adopting:handover:mountpoint:backend:options:logger:)``)
/// and then say READY on descriptor ``Daemon/childReadyFD``, as a daemon does for its parent.
public struct ServerCommand: Sendable {
    /// A real path, not `/proc/self/exe`: an upgrade starts whatever binary is there now.
    public var executable: String
    public var arguments: [String]
    public var logFile: String?

    public init(executable: String, arguments: [String], logFile: String?) {
        self.executable = executable
        self.arguments = arguments
        self.logFile = logFile
    }
}

/// The small, long-lived process that keeps a mount's `/dev/fuse` descriptor while the
/// processes that serve it come and go.
///
/// It mounts (``FuseConnection``), starts a server and hands it the descriptor over a Unix
/// socket; when that server exits while the mount is still there (a crash, `kill -9`, an OOM
/// kill), it asks the kernel to resend what the dead server had read but not answered and
/// starts another. `UPGRADE` on the socket replaces the server with the binary now on disk.
/// It does no I/O for the file system itself and keeps no state a server needs beyond the
/// descriptor, the saved INIT request and the mount time, so it has little reason to fail.
///
/// Runs on one thread; everything is driven by `poll` on the listening socket, the current
/// server's connection (which reaches end of file when the server dies) and a signal pipe.
public final class DescriptorHolder {
    let connection: FuseConnection
    let socketPath: String
    let server: ServerCommand
    /// Stop the old server before starting the new one on upgrade: two servers of a
    /// writable disk would each keep their own map of written blocks.
    let exclusive: Bool
    let logger: Logger
    let listenFD: Int32
    private var current: (pid: pid_t, socket: Int32)?
    private var restarts: UInt32 = 0
    private var upgrades: UInt32 = 0
    /// Until a server has answered the kernel's INIT, each new server must answer it for real.
    private var initAnswered = false
    private var resendSupported = false
    private let resendAvailable: Bool

    /// `resendAvailable: false` makes the holder behave as on a kernel without
    /// FUSE_NOTIFY_RESEND (for tests of that path on newer kernels).
    public init(connection: FuseConnection, socketPath: String, server: ServerCommand, exclusive: Bool,
                resendAvailable: Bool = true, logger: Logger) throws(FuseError) {
        self.resendAvailable = resendAvailable
        self.connection = connection
        self.socketPath = socketPath
        self.server = server
        self.exclusive = exclusive
        self.logger = logger
        listenFD = try HandoverSocket.listen(path: socketPath)
    }

    /// Starts the first server and returns once it serves.
    public func start() throws(DaemonError) {
        current = try startServer()
        probeResend()
    }

    /// Supervises until the mount is gone; then removes the socket. SIGTERM, SIGINT and SIGHUP
    /// detach the mount (the server exits when the kernel lets go).
    public func run() {
        // -1 if the pipe cannot be made: poll ignores it, and signals keep their default action.
        let signals = SignalPipe.install() ?? -1
        defer {
            close(listenFD)
            unlink(socketPath)
        }
        while true {
            var pollers = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            if let current { pollers.append(pollfd(fd: current.socket, events: Int16(POLLIN), revents: 0)) }
            if retryingEINTR({ poll(&pollers, nfds_t(pollers.count), -1) }) < 0 {
                logger.critical("holder: poll failed", metadata: ["error": "\(describeErrno(errno))"])
                return
            }
            if pollers[1].revents != 0 {
                let signal = SignalPipe.next(signals)
                logger.notice("holder: signal received, detaching the mount", metadata: ["signal": "\(signal ?? 0)"])
                try? connection.detach()
                if current == nil { return }
            }
            if pollers.count > 2, pollers[2].revents != 0, let current {
                // A server never writes after READY: readable means end of file, it is gone.
                let detectedAt = monotonicNow()
                close(current.socket)
                let status = Daemon.reap(current.pid, within: .seconds(5))
                self.current = nil
                guard connection.isConnected else {
                    logger.info("holder: the mount is gone; exiting", metadata: ["server": "\(current.pid)"])
                    return
                }
                logger.warning("holder: the serving process exited; starting another",
                               metadata: ["pid": "\(current.pid)", "status": "\(status.map(describeWaitStatus) ?? "unknown")"])
                restarts += 1
                guard resend() else { return }
                guard restartWithRetries() else { return }
                logger.notice("holder: serving again", metadata: ["pid": "\(self.current?.pid ?? 0)", "restarts": "\(restarts)",
                                                                  "milliseconds": "\(milliseconds(since: detectedAt))"])
            }
            if pollers[0].revents != 0 {
                handleClient()
            }
        }
    }

    // MARK: - Servers

    private func startServer() throws(DaemonError) -> (pid: pid_t, socket: Int32) {
        let child = try Daemon.spawn(executable: server.executable, arguments: server.arguments, logFile: server.logFile)
        var socket: Int32?
        var line: [UInt8] = []
        let deadline = monotonicNow() + .seconds(60)
        func fail(_ error: DaemonError) -> DaemonError {
            kill(child.pid, SIGKILL)
            Daemon.reap(child.pid, within: .seconds(2))
            close(child.readyFD)
            if let socket { close(socket) }
            return error
        }
        while true {
            if let newline = line.firstIndex(of: UInt8(ascii: "\n")) {
                let text = String(decoding: line[..<newline], as: UTF8.self)
                if text == "READY", let socket {
                    close(child.readyFD)
                    initAnswered = true
                    return (child.pid, socket)
                }
                if text.hasPrefix("ERROR") {
                    throw fail(.childFailed(String(text.dropFirst(5).drop(while: { $0 == " " }))))
                }
                throw fail(.protocolViolation(text))
            }
            let remaining = deadline - monotonicNow()
            guard remaining > .zero else { throw fail(.timedOut(seconds: 60)) }
            var pollers = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: child.readyFD, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&pollers, 2, Int32(clamping: remaining.components.seconds * 1000 + 1))
            if ready < 0 && errno != EINTR { throw fail(.spawnFailed("poll: \(describeErrno(errno))")) }
            guard ready > 0 else { continue }
            if pollers[0].revents != 0 {
                let accepted = HandoverSocket.accept(listenFD)
                if accepted >= 0 {
                    if HandoverSocket.peer(accepted)?.pid == child.pid, socket == nil {
                        guard handOver(to: accepted) else {
                            close(accepted)
                            throw fail(.spawnFailed("handing the descriptor to pid \(child.pid) failed"))
                        }
                        socket = accepted
                    } else {
                        // An upgrade asked while a server starts: the caller may ask again.
                        _ = HandoverSocket.send(accepted, Array("ERROR a serving process is starting; try again".utf8))
                        close(accepted)
                    }
                }
            }
            if pollers[1].revents != 0 {
                var chunk = [UInt8](repeating: 0, count: 512)
                let count = chunk.withUnsafeMutableBytes { read(child.readyFD, $0.baseAddress, $0.count) }
                if count == 0 {
                    let status = Daemon.reap(child.pid, within: .seconds(2))
                    close(child.readyFD)
                    if let socket { close(socket) }
                    throw .childExited(status.map(describeWaitStatus) ?? "it closed the ready pipe")
                }
                if count > 0 { line.append(contentsOf: chunk[..<count]) }
            }
        }
    }

    /// Answers a server's `ATTACH` with the descriptor and the handover packet.
    private func handOver(to socket: Int32) -> Bool {
        guard let request = HandoverSocket.receive(socket, timeoutMilliseconds: 10_000),
              request.bytes == Array("ATTACH".utf8) else { return false }
        let handover = FuseHandover(restarts: restarts, upgrades: upgrades, holderPID: getpid(), mountTime: connection.mountTime,
                                    initRequest: initAnswered ? connection.replayedInitRequest : connection.initRequest)
        return HandoverSocket.send(socket, handover.encoded(), passing: connection.descriptor)
    }

    /// Starts a server after the last one died, a few times with growing pauses. Gives up
    /// by closing the descriptor, which aborts the connection: requests then fail with
    /// ENOTCONN instead of waiting for a server that cannot start.
    private func restartWithRetries() -> Bool {
        var pause: Duration = .milliseconds(100)
        for attempt in 1...5 {
            do {
                current = try startServer()
                return true
            } catch {
                logger.error("holder: the serving process did not start", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                sleep(for: pause)
                pause *= 2
            }
        }
        logger.critical("holder: giving up; the mount is aborted", metadata: ["mountpoint": "\(connection.mountpoint)"])
        try? connection.detach()
        close(connection.descriptor)
        return false
    }

    /// After a server died: its unanswered requests go back to the kernel's queue. False when
    /// the kernel cannot resend (before Linux 6.9): nothing could ever answer them, so the
    /// connection is aborted (the holder's descriptor was the last one) and they fail with
    /// ECONNABORTED instead of hanging.
    private func resend() -> Bool {
        // Before a server answered INIT, the only request read is INIT itself, still waiting in
        // the kernel for the next server to answer it under its own id: it must not be resent.
        guard initAnswered else { return true }
        if resendSupported && connection.resendUnanswered() { return true }
        logger.critical("holder: the kernel cannot resend the requests the dead server had read (FUSE_NOTIFY_RESEND needs Linux 6.9); the mount is aborted so that they fail instead of hanging",
                        metadata: ["mountpoint": "\(connection.mountpoint)"])
        try? connection.detach()
        close(connection.descriptor)
        return false
    }

    /// Whether the kernel knows FUSE_NOTIFY_RESEND: asked once the first server answered INIT
    /// (a resend then only repeats requests that server is answering, which are idempotent
    /// here; before, it would resend INIT itself).
    private func probeResend() {
        resendSupported = resendAvailable && connection.resendUnanswered()
        if !resendSupported {
            logger.warning("holder: the kernel cannot resend unanswered requests (FUSE_NOTIFY_RESEND needs Linux 6.9): a crash of the serving process will abort the mount, and upgrades are refused")
        }
    }

    // MARK: - Clients

    private func handleClient() {
        let client = HandoverSocket.accept(listenFD)
        guard client >= 0 else { return }
        defer { close(client) }
        guard let peer = HandoverSocket.peer(client), peer.uid == geteuid() || peer.uid == 0 else {
            _ = HandoverSocket.send(client, Array("ERROR permission denied".utf8))
            return
        }
        guard let request = HandoverSocket.receive(client, timeoutMilliseconds: 5_000) else { return }
        switch String(decoding: request.bytes, as: UTF8.self) {
        case "UPGRADE":
            let answer: String
            do {
                try upgrade()
                answer = "OK \(current?.pid ?? 0)"
            } catch {
                answer = "ERROR \(error)"
            }
            _ = HandoverSocket.send(client, Array(answer.utf8))
        default:
            _ = HandoverSocket.send(client, Array("ERROR unknown request".utf8))
        }
    }

    /// Replaces the server with a process of the binary now on disk. The old one is killed
    /// only once the new one serves (or first, for exclusive mounts); what it had read and
    /// not answered is resent, so no request fails.
    private func upgrade() throws(DaemonError) {
        guard resendSupported else {
            throw .childFailed("an upgrade needs the kernel to resend the old server's unanswered requests (FUSE_NOTIFY_RESEND, Linux 6.9)")
        }
        let old = current
        if exclusive, let old {
            stop(old)
            current = nil
            _ = resend()
        }
        // Counted first, so the new server's status shows it.
        upgrades += 1
        do {
            current = try startServer()
        } catch {
            upgrades -= 1
            if exclusive || old == nil {
                // Nothing serves now: start whatever is on disk as after a crash.
                restarts += 1
                _ = restartWithRetries()
            }
            throw error
        }
        if !exclusive, let old {
            stop(old)
            _ = resend()
        }
        logger.notice("holder: upgraded the serving process", metadata: ["old": "\(old?.pid ?? 0)", "new": "\(current?.pid ?? 0)", "upgrades": "\(upgrades)"])
    }

    private func stop(_ server: (pid: pid_t, socket: Int32)) {
        kill(server.pid, SIGKILL)
        Daemon.reap(server.pid, within: .seconds(10))
        close(server.socket)
    }
}

/// What a serving process gets from the holder.
public struct AttachedDescriptor: Sendable {
    public var descriptor: Int32
    public var handover: FuseHandover
    /// Kept open while serving: the holder notices the server's exit by its end of file.
    public var socket: Int32
}

extension DescriptorHolder {
    /// Server side: asks the holder at `socketPath` for the mount's descriptor.
    public static func attach(socketPath: String, mountpoint: String) throws(FuseError) -> AttachedDescriptor {
        let socket = try HandoverSocket.connect(path: socketPath)
        guard HandoverSocket.send(socket, Array("ATTACH".utf8)),
              let answer = HandoverSocket.receive(socket, timeoutMilliseconds: 10_000) else {
            close(socket)
            throw FuseError(mountpoint: mountpoint, reason: .handoverFailed("no answer from the descriptor holder at \(socketPath)"))
        }
        guard let descriptor = answer.descriptor, let handover = FuseHandover(decoding: answer.bytes) else {
            if let descriptor = answer.descriptor { close(descriptor) }
            close(socket)
            throw FuseError(mountpoint: mountpoint, reason: .handoverFailed("the holder sent no descriptor: \(String(decoding: answer.bytes.prefix(200), as: UTF8.self))"))
        }
        return AttachedDescriptor(descriptor: descriptor, handover: handover, socket: socket)
    }

    /// Asks the holder at `socketPath` to replace its serving process with the binary now on
    /// disk; returns the new server's pid once it serves.
    public static func requestUpgrade(socketPath: String, mountpoint: String) throws(FuseError) -> Int32 {
        let socket = try HandoverSocket.connect(path: socketPath)
        defer { close(socket) }
        guard HandoverSocket.send(socket, Array("UPGRADE".utf8)),
              let answer = HandoverSocket.receive(socket, timeoutMilliseconds: 120_000) else {
            throw FuseError(mountpoint: mountpoint, reason: .handoverFailed("no answer from the descriptor holder at \(socketPath)"))
        }
        let text = String(decoding: answer.bytes, as: UTF8.self)
        guard text.hasPrefix("OK "), let pid = Int32(text.dropFirst(3)) else {
            throw FuseError(mountpoint: mountpoint, reason: .handoverFailed("upgrade refused: \(text.hasPrefix("ERROR ") ? String(text.dropFirst(6)) : text)"))
        }
        return pid
    }
}

extension AttachedDescriptor {
    /// Logs, once, when the holder goes away (its end of the socket closes): this process keeps
    /// serving, but nothing will replace it when it exits.
    public func watchHolder(mountpoint: String, logger: Logger) {
        let socket = self.socket
        let holder = handover.holderPID
        _ = startThread {
            var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            _ = retryingEINTR { poll(&poller, 1, -1) }
            logger.critical("\(FuseError(mountpoint: mountpoint, reason: .holderGone(pid: holder)))")
        }
    }
}

func milliseconds(since start: Duration) -> Int64 {
    let elapsed = monotonicNow() - start
    return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
}

func sleep(for duration: Duration) {
    var request = timespec(tv_sec: Int(duration.components.seconds), tv_nsec: Int(duration.components.attoseconds / 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
