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
        case running
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

        LibfuseLog.install()
        var arguments = ["imgfs", "-o", optionString]
        if options.debug { arguments.append("-d") }
        var operations = FuseOperations.table()
        let userdata = Unmanaged.passUnretained(state).toOpaque()
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
        logger.info("mounted", metadata: ["mountpoint": "\(mountpoint)", "files": "\(state.entries.count)", "options": "\(optionString)"])
    }

    deinit {
        let neverRan = phase.withLock { phase in phase != .finished }
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
            if phase == .mounted { phase = .running }
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
        fuse_loop_cfg_set_idle_threads(config, UInt32(max(1, state.options.maxThreads / 2)))
        fuse_loop_cfg_set_clone_fd(config, state.options.cloneFD ? 1 : 0)

        state.logger.debug("serving", metadata: ["mountpoint": "\(mountpoint)", "maxThreads": "\(state.options.maxThreads)"])
        let result = fuse_session_loop_mt(session, config)
        fuse_session_unmount(session)
        phase.withLock { $0 = .finished }
        state.logger.info("unmounted", metadata: ["mountpoint": "\(mountpoint)", "result": "\(result)"])
        // A positive result is the signal that ended the loop; -EINTR/-ENODEV are normal ends.
        if result < 0 && result != -EINTR && result != -ENODEV {
            throw FuseError(mountpoint: mountpoint, reason: .loopFailed(errno: -result))
        }
    }

    /// Ends ``run()``: marks the session exited and lazily unmounts, so the workers blocked
    /// on `/dev/fuse` wake up. Safe from any thread, any number of times.
    public func stop() {
        let current = phase.withLock { phase -> Phase in
            let before = phase
            if phase == .mounted { phase = .stopRequested }
            return before
        }
        guard current == .running else { return }
        fuse_session_exit(session)
        do {
            try Daemon.unmount(mountpoint, lazy: true)
        } catch {
            // Already gone (someone unmounted it first) is fine: the loop ends by itself.
            if error.reason != .notMounted {
                state.logger.warning("stop: lazy unmount failed", metadata: ["error": "\(error)"])
            }
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
