#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFuse3
import Logging
import Synchronization

/// One mounted FUSE session serving a ``FileSystemBackend`` as a flat directory.
///
/// `init` mounts; ``run()`` serves requests on libfuse's worker threads until the file
/// system is unmounted or ``stop()`` is called, then unmounts. Dropping a mount that never
/// ran unmounts it.
// @unchecked: `session` is an opaque libfuse pointer that is only destroyed in `deinit`;
// `stop()` touches it only through `fuse_session_exit`, which just sets a flag.
public final class FuseMount: @unchecked Sendable {
    public let mountpoint: String
    let state: FuseSessionState
    /// `struct fuse_session *`, owned; destroyed in `deinit`.
    private let session: OpaquePointer
    private let phase: Mutex<Phase>

    private enum Phase {
        case mounted
        /// Serving on this thread (the loop's main thread, parked in `sem_wait`).
        case running(pthread_t)
        /// `stop()` came first: `run()` returns at once.
        case stopRequested
        case finished
    }

    public init(mountpoint: String, backend: any FileSystemBackend, options: FuseMountOptions = FuseMountOptions(), logger: Logger) throws(FuseError) {
        self.mountpoint = mountpoint
        let optionString = try options.mountOptionString(mountpoint: mountpoint)
        try Self.checkMountpoint(mountpoint)
        do {
            state = try FuseSessionState(backend: backend, options: options, logger: logger)
        } catch {
            throw FuseError(mountpoint: mountpoint, reason: .invalidOptions("backend: \(error)"))
        }
        let session = try Self.makeSession(mountpoint: mountpoint, optionString: optionString, state: state, logger: logger)
        let mounted = LibfuseLog.capturing(logger) { fuse_session_mount(session, mountpoint) }
        guard mounted.value == 0 else {
            fuse_session_destroy(session)
            let message = mounted.lastError ?? "fuse_session_mount failed"
            let reason: FuseError.Reason = message.lowercased().contains("permission") || message.contains("EPERM")
                ? .permissionDenied(message) : .mountFailed(message)
            throw FuseError(mountpoint: mountpoint, reason: reason)
        }
        self.session = session
        phase = Mutex(.mounted)
        if options.maxReadahead > 128 << 10, let device = MountTable.fuseMount(at: mountpoint)?.device {
            state.readaheadSetting.withLock { $0.path = "/sys/class/bdi/\(device)/read_ahead_kb" }
        }
        logger.info("mounted", metadata: ["mountpoint": "\(mountpoint)", "files": "\(state.entries.count)", "options": "\(optionString)"])
    }

    /// Serves a connection another process mounted (the descriptor holder), on `descriptor`,
    /// which this mount owns from now on. `handover.initRequest` is fed to the new session as
    /// if the kernel had just sent it: libfuse then negotiates as it did for the first server
    /// (same request, same options) and takes the session as initialised. A replayed request
    /// carries a unique id the kernel does not know, so the kernel drops the reply with ENOENT,
    /// which libfuse treats as an interrupted request and does not report.
    ///
    /// The kernel keeps what it negotiated with the first server (max_write, max_pages, flags),
    /// so a server of another version must be built with the same `FuseMountOptions` and a
    /// libfuse that negotiates the same from the same request; imgfs's options are fixed in code.
    ///
    /// Worker threads share this one descriptor (no `clone_fd`): the kernel ends the requests
    /// in a cloned descriptor's queue with an error when it is closed, but requests read from
    /// the holder's descriptor stay queued when this process dies, for the holder to have
    /// them resent.
    public init(adopting descriptor: Int32, handover: FuseHandover, mountpoint: String, backend: any FileSystemBackend,
                options: FuseMountOptions = FuseMountOptions(), logger: Logger) throws(FuseError) {
        self.mountpoint = mountpoint
        var options = options
        options.cloneFD = false
        let optionString = try options.mountOptionString(mountpoint: mountpoint)
        do {
            state = try FuseSessionState(backend: backend, options: options, logger: logger, mountTime: handover.mountTime, adopted: true)
        } catch {
            throw FuseError(mountpoint: mountpoint, reason: .invalidOptions("backend: \(error)"))
        }
        let session = try Self.makeSession(mountpoint: mountpoint, optionString: optionString, state: state, logger: logger)
        // libfuse takes `/dev/fd/N` as an already mounted descriptor (and never unmounts it).
        let adopted = LibfuseLog.capturing(logger) { fuse_session_mount(session, "/dev/fd/\(descriptor)") }
        guard adopted.value == 0 else {
            fuse_session_destroy(session)
            throw FuseError(mountpoint: mountpoint, reason: .handoverFailed(adopted.lastError ?? "fuse_session_mount(/dev/fd/\(descriptor)) failed"))
        }
        var request = handover.initRequest
        let processed = LibfuseLog.capturing(logger) {
            request.withUnsafeMutableBytes { bytes in
                var buffer = fuse_buf()
                buffer.size = bytes.count
                buffer.mem = bytes.baseAddress
                buffer.fd = -1
                fuse_session_process_buf(session, &buffer)
            }
        }
        guard fuse_session_exited(session) == 0 else {
            fuse_session_destroy(session)
            throw FuseError(mountpoint: mountpoint, reason: .handoverFailed("libfuse refused the saved FUSE_INIT: \(processed.lastError ?? "session exited")"))
        }
        self.session = session
        phase = Mutex(.mounted)
        if options.maxReadahead > 128 << 10, let device = MountTable.fuseMount(exactly: mountpoint)?.device {
            state.readaheadSetting.withLock { $0.path = "/sys/class/bdi/\(device)/read_ahead_kb" }
        }
        logger.info("adopted the mount", metadata: ["mountpoint": "\(mountpoint)", "descriptor": "\(descriptor)",
                                                    "restarts": "\(handover.restarts)", "upgrades": "\(handover.upgrades)"])
    }

    private static func makeSession(mountpoint: String, optionString: String, state: FuseSessionState, logger: Logger) throws(FuseError) -> OpaquePointer {
        LibfuseLog.install()
        var arguments = ["imgfs", "-o", optionString]
        if state.options.debug { arguments.append("-d") }
        return try newSession(mountpoint: mountpoint, arguments: arguments, operations: FuseOperations.table(),
                              userdata: Unmanaged.passUnretained(state).toOpaque(), logger: logger)
    }

    /// `fuse_session_new` with libfuse's messages captured into the error; shared with
    /// `FuseConnection`, whose session only mounts and reads INIT (no operations, no userdata).
    static func newSession(mountpoint: String, arguments: [String], operations: fuse_lowlevel_ops, userdata: UnsafeMutableRawPointer?,
                           logger: Logger) throws(FuseError) -> OpaquePointer {
        var operations = operations
        let created = LibfuseLog.capturing(logger) {
            withCStrings(arguments) { argv in
                var args = fuse_args(argc: Int32(arguments.count), argv: argv, allocated: 0)
                defer { fuse_opt_free_args(&args) }
                return fuse_session_new(&args, &operations, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
            }
        }
        guard let session = created.value else {
            throw FuseError(mountpoint: mountpoint, reason: .sessionCreationFailed(created.lastError ?? "fuse_session_new failed"))
        }
        return session
    }

    deinit {
        let neverRan = phase.withLock { phase -> Bool in
            if case .finished = phase { return false }
            return true
        }
        if neverRan {
            fuse_session_unmount(session)
        }
        fuse_session_destroy(session)
    }

    /// Serves requests until the file system is unmounted (by `fusermount3 -u`, `umount`,
    /// ``stop()`` or a signal after ``installSignalHandlers()``), then unmounts.
    /// Blocks the calling thread; call it once.
    public func run() throws(FuseError) {
        let start = phase.withLock { phase -> Phase in
            let before = phase
            if case .mounted = phase { phase = .running(pthread_self()) }
            return before
        }
        switch start {
        case .mounted: break
        case .stopRequested:
            fuse_session_unmount(session)
            phase.withLock { $0 = .finished }
            return
        case .running, .finished:
            throw FuseError(mountpoint: mountpoint, reason: .alreadyRunning)
        }

        guard let config = fuse_loop_cfg_create() else {
            throw FuseError(mountpoint: mountpoint, reason: .loopFailed(errno: ENOMEM))
        }
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_max_threads(config, UInt32(state.options.maxThreads))
        // Workers stay once started: one that exits takes its receive buffer and splice pipe
        // with it, and a busy read stream then starts a thread (and a pipe, and a buffer) every
        // few dozen requests.
        fuse_loop_cfg_set_idle_threads(config, UInt32(state.options.maxThreads))
        fuse_loop_cfg_set_clone_fd(config, state.options.cloneFD ? 1 : 0)

        // stop() wakes this thread with LoopWaker.signal; callers often run on threads
        // that block signals (libdispatch workers and threads they spawn), so unblock it
        // here for the loop. libfuse's workers block all signals themselves.
        LoopWaker.installHandler()
        var wake = sigset_t()
        sigemptyset(&wake)
        sigaddset(&wake, LoopWaker.signal)
        var previousMask = sigset_t()
        pthread_sigmask(SIG_UNBLOCK, &wake, &previousMask)
        defer { pthread_sigmask(SIG_SETMASK, &previousMask, nil) }

        state.logger.debug("serving", metadata: ["mountpoint": "\(mountpoint)", "maxThreads": "\(state.options.maxThreads)"])
        let result = fuse_session_loop_mt(session, config)
        // After stop() or an external umount there is nothing left to unmount, and
        // libfuse would complain on stderr; the descriptor is closed by fuse_session_destroy.
        if MountTable.isFuseMount(mountpoint) {
            fuse_session_unmount(session)
        }
        phase.withLock { $0 = .finished }
        state.logger.info("unmounted", metadata: ["mountpoint": "\(mountpoint)", "result": "\(result)"])
        // A positive result is the signal that ended the loop; -EINTR/-ENODEV are normal ends.
        if result < 0 && result != -EINTR && result != -ENODEV {
            throw FuseError(mountpoint: mountpoint, reason: .loopFailed(errno: -result))
        }
    }

    /// Ends ``run()``: marks the session exited and lazily unmounts, so the workers blocked
    /// on `/dev/fuse` wake up. Safe from any thread, any number of times.
    ///
    /// Files still open keep a lazily detached mount's connection alive, so the workers
    /// may never wake; the loop's main thread, parked in `sem_wait`, is woken with a
    /// signal instead (repeated briefly, in case it was sent just before the wait), and
    /// libfuse then cancels the workers. Open files then fail with ENOTCONN.
    public func stop() {
        let wasRunning = phase.withLock { phase -> Bool in
            switch phase {
            case .mounted:
                phase = .stopRequested
                return false
            case .running:
                return true
            case .stopRequested, .finished:
                return false
            }
        }
        guard wasRunning else { return }
        fuse_session_exit(session)
        do {
            try Daemon.unmount(mountpoint, lazy: true)
        } catch {
            // Already gone (someone unmounted it first) is fine: the loop ends by itself.
            if error.reason != .notMounted {
                state.logger.warning("stop: lazy unmount failed", metadata: ["error": "\(error)"])
            }
        }
        guard wakeLoop() else { return }
        _ = startThread { [self] in
            for _ in 0..<100 {
                usleep(50_000)
                guard wakeLoop() else { return }
            }
            state.logger.warning("stop: the session loop did not end after 5 s", metadata: ["mountpoint": "\(mountpoint)"])
        }
    }

    /// Signals the thread in `run()` if it is still there. The phase lock keeps the
    /// thread from leaving `run()` (and ending) while it is signalled.
    private func wakeLoop() -> Bool {
        phase.withLock { phase -> Bool in
            guard case .running(let thread) = phase else { return false }
            pthread_kill(thread, LoopWaker.signal)
            return true
        }
    }

    /// How many references the kernel holds to a file's inode (lookup minus forget).
    public func kernelReferences(file index: Int) -> UInt64 {
        state.lookupCount(FuseSessionState.firstFileInode + fuse_ino_t(index))
    }

    // MARK: - Mount point checks

    static func checkMountpoint(_ mountpoint: String) throws(FuseError) {
        var info = stat()
        if stat(mountpoint, &info) != 0 {
            let code = errno
            switch code {
            case ENOENT: throw FuseError(mountpoint: mountpoint, reason: .mountpointMissing)
            case ENOTDIR: throw FuseError(mountpoint: mountpoint, reason: .notADirectory)
            case EACCES, EPERM: throw FuseError(mountpoint: mountpoint, reason: .permissionDenied(describeErrno(code)))
            // A FUSE daemon that died without unmounting leaves this.
            case ENOTCONN: throw FuseError(mountpoint: mountpoint, reason: .alreadyMounted)
            default: throw FuseError(mountpoint: mountpoint, reason: .mountFailed(describeErrno(code)))
            }
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw FuseError(mountpoint: mountpoint, reason: .notADirectory)
        }
        if MountTable.isFuseMount(mountpoint) {
            throw FuseError(mountpoint: mountpoint, reason: .alreadyMounted)
        }
        if geteuid() != 0 && access(mountpoint, W_OK) != 0 {
            throw FuseError(mountpoint: mountpoint, reason: .permissionDenied("the mount point is not writable by this user"))
        }
    }
}

/// Runs `body` with a NULL-terminated `char *argv[]` copy of `strings`.
func withCStrings<R>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
    for (index, string) in strings.enumerated() { pointers[index] = strdup(string) }
    pointers[strings.count] = nil
    defer {
        for index in 0..<strings.count { free(pointers[index]) }
        pointers.deallocate()
    }
    return body(pointers)
}

/// The signal that interrupts the session loop's `sem_wait` (never restarted after a
/// handler, whatever SA_RESTART says). Its handler does nothing.
enum LoopWaker {
    static let signal = SIGUSR2
    private static let installed = Mutex(false)

    static func installHandler() {
        installed.withLock { installed in
            guard !installed else { return }
            installed = true
            var current = sigaction()
            sigaction(signal, nil, &current)
            // Keep an application's own handler: it interrupts sem_wait just as well.
            let handler = current.__sigaction_handler.sa_handler
            let isDefaultOrIgnored = handler == nil || unsafeBitCast(handler, to: Int.self) == 1
            guard isDefaultOrIgnored else { return }
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(signal, &action, nil)
        }
    }
}
