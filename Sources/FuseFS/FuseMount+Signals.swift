#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import Synchronization

extension FuseMount {
    /// Makes SIGTERM, SIGINT and SIGHUP stop this mount (``stop()``: unmount, `run()`
    /// returns) and ignores SIGPIPE. Process-wide: every mount that called this is stopped.
    ///
    /// The handler only writes the signal number to a pipe, so it works whichever thread
    /// the kernel picks; a watcher thread does the unmount. Unlike libfuse's
    /// `fuse_set_signal_handlers`, this supports several sessions and does not rely on the
    /// signal interrupting one of libfuse's own threads.
    public func installSignalHandlers() throws(FuseError) {
        guard SignalWatcher.start(logger: state.logger) else {
            throw FuseError(mountpoint: mountpoint, reason: .unmountFailed("could not install signal handlers: \(describeErrno(errno))"))
        }
        SignalWatcher.register(self)
    }
}

/// The self-pipe between the async-signal-safe handler and the thread that unmounts.
enum SignalWatcher {
    /// Write end of the pipe, read by the handler (-1 until started).
    static let pipeWriteFD = Atomic<Int32>(-1)
    private static let started = Mutex(false)
    private static let mounts = Mutex<[WeakMount]>([])

    private final class WeakMount: @unchecked Sendable {
        // Only read and written under `mounts`' lock.
        weak var mount: FuseMount?
        init(_ mount: FuseMount) { self.mount = mount }
    }

    static func register(_ mount: FuseMount) {
        mounts.withLock { mounts in
            mounts.removeAll { $0.mount == nil }
            mounts.append(WeakMount(mount))
        }
    }

    /// Installs the handlers and the watcher thread once. Returns false on failure.
    static func start(logger: Logger) -> Bool {
        started.withLock { started -> Bool in
            if started { return true }
            var fds: [Int32] = [-1, -1]
            guard makeCloseOnExecPipe(&fds) else { return false }
            // A full pipe must not block the handler.
            _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
            pipeWriteFD.store(fds[1], ordering: .releasing)
            let readFD = fds[0]
            guard startThread({ watch(readFD, logger: logger) }) else {
                close(fds[0])
                close(fds[1])
                pipeWriteFD.store(-1, ordering: .releasing)
                return false
            }
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                let savedErrno = errno
                var byte = UInt8(truncatingIfNeeded: signal)
                let fd = SignalWatcher.pipeWriteFD.load(ordering: .acquiring)
                if fd >= 0 { _ = write(fd, &byte, 1) }
                errno = savedErrno
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            for signal in [SIGTERM, SIGINT, SIGHUP] {
                guard sigaction(signal, &action, nil) == 0 else { return false }
            }
            var ignore = sigaction()
            ignore.__sigaction_handler.sa_handler = SIG_IGN
            sigemptyset(&ignore.sa_mask)
            _ = sigaction(SIGPIPE, &ignore, nil)
            started = true
            return true
        }
    }

    private static func watch(_ readFD: Int32, logger: Logger) {
        while true {
            var byte: UInt8 = 0
            let count = read(readFD, &byte, 1)
            if count < 0 && errno == EINTR { continue }
            guard count == 1 else { return }
            let targets = mounts.withLock { mounts in mounts.compactMap(\.mount) }
            logger.notice("signal received: unmounting", metadata: ["signal": "\(byte)", "mounts": "\(targets.map(\.mountpoint))"])
            for mount in targets { mount.stop() }
        }
    }
}

/// Starts a detached POSIX thread (not a Swift concurrency task: it blocks).
func startThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { context in
        guard let context else { return nil }
        Unmanaged<Box>.fromOpaque(context).takeRetainedValue().body()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        return false
    }
    pthread_detach(thread)
    return true
}
