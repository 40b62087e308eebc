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
    /// The handler only writes to `SignalPipe`; a watcher thread does the unmount. Unlike libfuse's
    /// `fuse_set_signal_handlers`, this supports several sessions and does not rely on the
    /// signal interrupting one of libfuse's own threads.
    public func installSignalHandlers() throws(FuseError) {
        guard SignalWatcher.start(logger: state.logger) else {
            throw FuseError(mountpoint: mountpoint, reason: .unmountFailed("could not install signal handlers: \(describeErrno(errno))"))
        }
        SignalWatcher.register(self)
    }
}

/// The thread that stops every registered mount when a signal arrives.
enum SignalWatcher {
    private static let started = Mutex(false)
    private static let mounts = Mutex<[WeakMount]>([])

    private struct WeakMount {
        weak var mount: FuseMount?
    }

    static func register(_ mount: FuseMount) {
        mounts.withLock { mounts in
            mounts.removeAll { $0.mount == nil }
            mounts.append(WeakMount(mount: mount))
        }
    }

    /// Installs the handlers and the watcher thread once. Returns false on failure.
    static func start(logger: Logger) -> Bool {
        started.withLock { started -> Bool in
            if started { return true }
            guard let readFD = SignalPipe.install(), startThread({ watch(readFD, logger: logger) }) else { return false }
            started = true
            return true
        }
    }

    private static func watch(_ readFD: Int32, logger: Logger) {
        while let signal = SignalPipe.next(readFD) {
            let targets = mounts.withLock { mounts in mounts.compactMap(\.mount) }
            logger.notice("signal received: unmounting", metadata: ["signal": "\(signal)", "mounts": "\(targets.map(\.mountpoint))"])
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
