import ArgumentParser
import Cache
import Fetch
import FuseFS
import Glibc
import Logging
import Mount
import OCI
import SystemIO
import Verity

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount an image from a registry as a directory (disk.img, nvram.bin, config.json).",
        discussion: """
        The image is resolved and its cache entry opened first, so a bad reference, an unreachable \
        registry with nothing cached, or a missing mount point is reported here. Then a daemon \
        serves MOUNTPOINT in the background: every frame read is fetched once, verified against \
        its SHA-256 and kept in the cache. An image pushed with a boot profile (`imgfs push \
        --profile`) has the frames its boot reads fetched first, several at once; the rest of the \
        image is prefetched at low priority once the boot has read them, pausing while the disk is \
        being read.

        An image mounted once can be mounted again with the registry unreachable. A KubeVirt \
        containerDisk whose disk is qcow2 shows it as disk.qcow2 (qemu -drive format=qcow2).

        \(PlatformOptionGroup.discussion)

        Examples:
          imgfs mount localhost:5000/vm/debian:12 /mnt/vm
          imgfs mount --no-prefetch --cache-size 20G ghcr.io/org/img@sha256:… /mnt/vm
          imgfs umount /mnt/vm
        """
    )

    @OptionGroup var image: ImageArgument
    var reference: String { image.reference }

    @Argument(help: "An existing empty directory.")
    var mountpoint: String

    @Option(help: ArgumentHelp("The cache directory (default: $IMGFS_CACHE_DIR, $XDG_CACHE_HOME/imgfs, ~/.cache/imgfs; /var/cache/imgfs for root).", valueName: "dir"))
    var cacheDir: String?

    @Flag(help: "Serve in this process until unmounted, logging to stderr (or --log-file).")
    var foreground = false

    @Option(help: ArgumentHelp("Evict frames of unmounted images until the cache is at most this size (suffixes K, M, G, T).", valueName: "size"))
    var cacheSize: String?

    @Flag(help: "Do not prefetch the whole image in the background (the image's boot profile, if it has one, is still fetched first).")
    var noPrefetch = false

    @Option(help: ArgumentHelp("Bound background prefetch to this many bytes per second (suffixes K, M, G).", valueName: "rate"))
    var prefetchRate: String?

    @Option(help: ArgumentHelp("How long a read of disk.img waits for the registry before it fails with EIO (default: 30; 120 for lume, tart and containerDisk images, whose layers are fetched whole). The fetch it waits on ends by then too, however slowly the registry sends.", valueName: "seconds"))
    var readTimeout: Double?

    @Option(help: ArgumentHelp("The daemon's log (default: <cache-dir>/logs/<mountpoint>.log).", valueName: "file"))
    var logFile: String?

    @Flag(help: "Let other users read the mount (needs user_allow_other in /etc/fuse.conf unless root).")
    var allowOther = false

    @Flag(help: "Give the VM a copy-on-write disk.img: written blocks stay in a local layer (--writable-dir), unwritten ones come from the image. `imgfs push MOUNTPOINT REF` uploads the written disk, re-using the image's unchanged chunk layers.")
    var writable = false

    @Option(help: ArgumentHelp("The written disk's directory (default: <cache-dir>/writable/<mountpoint>-<hash of its path>); mounting the same image with it again continues that disk. One mount at a time: a directory in use is refused.", valueName: "dir"))
    var writableDir: String?

    @Option(help: ArgumentHelp("Record the order in which frames are first read to FILE (a boot profile for `imgfs push --profile`); written every few seconds and at unmount.", valueName: "file"))
    var recordProfile: String?

    @Option(help: ArgumentHelp("For a lume or tart image: read it frame by frame through this span index artifact (the digest `imgfs index` prints), not the newest one the registry lists for the image.", valueName: "digest"))
    var index: String?

    @Flag(help: "For a lume or tart image: do not look for a span index; fetch whole layers.")
    var noSpanIndex = false

    @Option(help: .hidden)
    var readyFd: Int32?

    /// The manifest the parent resolved, so the daemon serves exactly that image without asking again.
    @Option(help: .hidden)
    var resolvedManifest: String?

    @Flag(help: .hidden)
    var resolvedOffline = false

    /// The parent's fetch of the frame index, `BYTES:SECONDS`: the daemon's first figure for the
    /// link, before its own range requests measure it (the daemon finds the index in the store).
    @Option(name: .customLong("link-sample"), help: .hidden)
    var linkSampleText: String?

    /// Run as the mount's descriptor holder (MountCommand+Holder.swift): what the background
    /// daemon is, and what a service manager runs in the foreground.
    @Flag(help: "With --foreground: stay in the foreground as the mount's descriptor holder (for service managers, see contrib/systemd): the serving process runs as a child, is started again whenever it dies and replaced by `imgfs upgrade`.")
    var holder = false

    /// Serve the mount whose descriptor the holder at this socket keeps.
    @Option(help: .hidden)
    var attach: String?

    @OptionGroup var platform: PlatformOptionGroup
    @OptionGroup var registry: RegistryOptionGroup

    func run() throws {
        let reference = try parseReference(reference)
        let rate = try prefetchRate.map { try Int64(clamping: parseSize($0, option: "--prefetch-rate")) }
        let limit = try cacheSize.map { try parseSize($0, option: "--cache-size") }
        let readyFd = readyFd
        if let readTimeout, !(readTimeout > 0 && readTimeout <= 24 * 3600) {
            throw ValidationError("--read-timeout: \(readTimeout) must be more than 0 and at most 86400 seconds")
        }
        _ = try spanIndexChoice()
        let linkSample = try linkSampleText.map { (text) throws -> TransferSample in
            guard let sample = TransferSample(argument: text) else { throw ValidationError("--link-sample: expected BYTES:SECONDS, got '\(text)'") }
            return sample
        }
        do {
            // A server taking over a mount must not look at the mount point: nobody answers
            // for it until this process does. The holder passes it already resolved.
            let mountpoint = attach != nil ? self.mountpoint : try Self.checkedMountpoint(self.mountpoint)
            let cacheRoot = try absolute(cacheDir ?? defaultCacheDirectory())
            let logFile = try logFile.map(absolute) ?? "\(cacheRoot)/logs/\(mountpointFileName(mountpoint)).log"
            if foreground && holder {
                try hold(mountpoint: mountpoint, logFile: logFile)
            } else if foreground {
                // A daemon's stderr is its log file (Daemon.spawnSelf); a foreground mount logs to stderr.
                try serve(reference: reference, mountpoint: mountpoint, cacheRoot: cacheRoot, rate: rate,
                          logFile: readyFd == nil ? nil : logFile, linkSample: linkSample)
            } else {
                try launch(reference: reference, mountpoint: mountpoint, cacheRoot: cacheRoot, rate: rate, limit: limit, logFile: logFile)
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            if let readyFd { Daemon.signalFailure(fd: readyFd, message: "\(error)") }
            throw fail(error)
        }
    }

    /// The parent: resolve and open everything that can fail, then start the daemon and wait for it.
    func launch(reference: Reference, mountpoint: String, cacheRoot: String, rate: Int64?, limit: UInt64?, logFile: String) throws {
        let logger = registry.makeLogger()
        let session = try openSession(reference, client: try makeClient(reference, logger: logger), cacheRoot: cacheRoot, rate: rate,
                                      pinned: nil, offline: false, logger: logger)
        if let limit {
            // While this image's entry is open (and so spared): only unmounted images lose frames.
            let report = try CacheEviction.evict(root: cacheRoot, limit: limit, logger: logger)
            if report.framesEvicted > 0 {
                logger.info("cache evicted", metadata: ["frames": "\(report.framesEvicted)", "bytesAfter": "\(report.bytesAfter)"])
            }
        }
        let resolved = (manifestDigest: session.manifestDigest, offline: session.isOffline)
        let linkSample = session.linkSample
        if writable {
            // Refuse a directory another mount writes, or a layer written over another image,
            // here, where the user sees the message (the daemon takes the lock for real).
            do {
                let directory = try writableDirectory(mountpoint: mountpoint, cacheRoot: cacheRoot)
                try WritableDirectoryLock.checkAvailable(directory: directory)
                try Self.describeOverlay(directory: directory, session: session, reference: reference, typed: self.reference)
            } catch {
                session.stop()
                throw error
            }
        }
        session.stop()
        try FileIO.makeDirectories(FileIO.parent(of: logFile))

        var arguments = ["mount", self.reference, mountpoint, "--foreground", "--ready-fd", String(Daemon.childReadyFD),
                         "--cache-dir", cacheRoot, "--log-file", logFile,
                         "--resolved-manifest", resolved.manifestDigest.description]
        if resolved.offline { arguments.append("--resolved-offline") }
        if let sample = linkSample { arguments += ["--link-sample", sample.argument] }
        if noPrefetch { arguments.append("--no-prefetch") }
        if let prefetchRate { arguments += ["--prefetch-rate", prefetchRate] }
        if let readTimeout { arguments += ["--read-timeout", String(readTimeout)] }
        if let index { arguments += ["--index", index] }
        if noSpanIndex { arguments.append("--no-span-index") }
        if allowOther { arguments.append("--allow-other") }
        if writable { arguments += ["--writable", "--writable-dir", try writableDirectory(mountpoint: mountpoint, cacheRoot: cacheRoot)] }
        if let recordProfile { arguments += ["--record-profile", try absolute(recordProfile)] }
        arguments += registry.passThroughArguments()
        // The daemon is the descriptor holder, which starts the serving process with these
        // same arguments (less this flag).
        arguments.append("--holder")
        closeInheritedDescriptorsOnExec()
        // By its real path, so that `ps` shows `imgfs`, and an upgrade finds the binary on disk.
        let child = try Daemon.spawn(executable: try currentExecutable(), arguments: arguments, logFile: logFile)
        try Daemon.waitForReady(child, timeout: .seconds(60))
        if resolved.offline {
            writeStandardError("imgfs: warning: the registry is unreachable; serving \(self.reference) from the cache (\(resolved.manifestDigest))\n")
        }
    }

    /// The daemon (or a foreground mount): mount, report ready, serve until unmounted.
    func serve(reference: Reference, mountpoint: String, cacheRoot: String, rate: Int64?, logFile: String?, linkSample: TransferSample?) throws {
        let logger = registry.makeDaemonLogger(isDaemon: readyFd != nil)
        let pinned = try resolvedManifest.map { (text) throws -> Digest in
            do { return try Digest(parsing: text) } catch { throw ValidationError("--resolved-manifest: \(error)") }
        }
        let client = try makeClient(reference, logger: logger)
        let session = try openSession(reference, client: client, cacheRoot: cacheRoot, rate: rate, pinned: pinned,
                                      offline: resolvedOffline, logger: logger)
        let stacked: StackedDisk
        do { stacked = try stackedDisk(session: session, reference: reference, mountpoint: mountpoint, cacheRoot: cacheRoot, logger: logger) } catch {
            session.stop()
            throw error
        }
        let attached: AttachedDescriptor?
        do { attached = try attach.map { socket throws(FuseError) in try DescriptorHolder.attach(socketPath: socket, mountpoint: mountpoint) } } catch {
            stacked.stop()
            session.stop()
            throw error
        }
        // The parent's sample tells of the link when the mount was made; a serving process the
        // holder starts again (after a crash, an upgrade) measures the link of its own time.
        if let linkSample, attached.map({ $0.handover.restarts == 0 && $0.handover.upgrades == 0 }) ?? true {
            session.seedLink(linkSample)
        }
        let fileSystem = ImageFileSystem(disk: stacked.disk, nvram: session.nvramBytes, vmConfig: session.vmConfigBytes, diskName: session.diskFileName,
                                         modificationTime: attached?.handover.mountTime, logger: logger)
        let options = fuseOptions()
        let fuse: FuseMount
        do {
            if let attached {
                fuse = try FuseMount(adopting: attached.descriptor, handover: attached.handover, mountpoint: mountpoint,
                                     backend: fileSystem, options: options, logger: logger)
            } else {
                fuse = try FuseMount(mountpoint: mountpoint, backend: fileSystem, options: options, logger: logger)
            }
        } catch {
            stacked.stop()
            session.stop()
            throw error
        }
        try fuse.installSignalHandlers()
        attached?.watchHolder(mountpoint: mountpoint, logger: logger)
        session.start()
        stacked.start()
        let reporter = StatusReporter(session: session, mountpoint: mountpoint, reference: self.reference, logFile: logFile,
                                      writableDirectory: stacked.writableDirectory,
                                      process: servingProcess(attached?.handover),
                                      version: BuildInfo.version, commit: BuildInfo.commit,
                                      retries: { Int64(client.statistics.retries) }, logger: logger)
        reporter.start()
        logger.info("serving", metadata: ["reference": "\(self.reference)", "manifest": "\(session.manifestDigest)",
                                          "mountpoint": "\(mountpoint)", "pid": "\(getpid())"])
        if let readyFd { Daemon.signalReady(fd: readyFd) }
        defer {
            reporter.stop()
            stacked.stop()
            session.stop()
            logger.info("stopped", metadata: ["mountpoint": "\(mountpoint)"])
        }
        try fuse.run()
    }

    /// The registry client of a mount; the daemon's status reports its retries.
    func makeClient(_ reference: Reference, logger: Logger) throws -> RegistryClient {
        var options = RegistryOptions()
        if registry.plainHTTP { options.plainHTTP = true }
        try registry.applyMirrors(to: &options, registry: reference.registry)
        // A FUSE read waits on these requests: fail within tens of seconds, never hang.
        options.connectTimeout = .seconds(5)
        options.lowSpeedTimeout = .seconds(10)
        options.maxAttempts = 2
        // A read waiting for a whole-blob mirror to fill must still have time to go upstream
        // within the 30 s read timeout (the read's deadline bounds the wait in any case).
        options.wholeBlobWait = .seconds(15)
        return RegistryClient(registry: reference.registry, options: options, logger: logger)
    }

    func openSession(_ reference: Reference, client: RegistryClient, cacheRoot: String, rate: Int64?, pinned: Digest?, offline: Bool,
                     logger: Logger) throws -> any MountSession {
        let source = RegistryBlobSource(client: client, repository: reference.repository)
        let store = MetadataStore(root: cacheRoot, logger: logger)
        // A daemon is given the image manifest its parent chose (--resolved-manifest), never an
        // index, so --platform need not be passed on.
        let resolver = ImageResolver(source: source, store: store, platform: platform.wanted, spanIndex: try spanIndexChoice(), logger: logger)
        let image = try resolver.resolveAnyFormat(Reference(registry: reference.registry, repository: reference.repository,
                                                               tag: reference.tag, digest: pinned ?? reference.digest))
        var configuration = MountConfiguration(cacheRoot: cacheRoot)
        configuration.prefetch = !noPrefetch
        configuration.prefetchRate = rate
        if let readTimeout { configuration.disk.setReadTimeout(readTimeout) }
        switch image {
        case .imgfs(var resolved):
            resolved.offline = resolved.offline || offline
            return try FrameSession(resolved: resolved, source: source, configuration: configuration, logger: logger)
        case .segments(var resolved):
            // lume and tart images have no frame index: served whole layer by whole layer.
            resolved.offline = resolved.offline || offline
            return try LayerSession(resolved: resolved, source: source, configuration: configuration, logger: logger)
        }
    }

    /// The mount point as an absolute path, checked to be an existing directory.
    /// The mount point as an absolute path, checked to be an existing empty directory.
    static func checkedMountpoint(_ path: String) throws -> String {
        // What a mount whose daemon died answers to every call on it.
        let deadMount = MountError.invalidArgument(
            "\(path): a dead mount is still attached here (its daemon has exited; the kernel answers " +
            "\"Transport endpoint is not connected\"); run `imgfs umount \(path)` and mount again")
        guard let resolved = realpath(path, nil) else {
            switch errno {
            case ENOTCONN: throw deadMount
            case ENOENT: throw MountError.invalidArgument("\(path): mount point does not exist")
            default: throw MountError.io(operation: "realpath", path: path, errno: errno)
            }
        }
        defer { free(resolved) }
        let absolute = String(cString: resolved)
        var st = stat()
        guard stat(absolute, &st) == 0 else {
            if errno == ENOTCONN { throw deadMount }
            throw MountError.io(operation: "stat", path: path, errno: errno)
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw MountError.invalidArgument("\(path): mount point is not a directory")
        }
        if let entry = try firstEntry(of: absolute) {
            throw MountError.invalidArgument(
                "\(path): mount point is not empty (it holds '\(entry)'); the mount would hide its files, so imgfs mounts only on an empty directory")
        }
        return absolute
    }

    /// A name in `directory` other than `.` and `..`, or nil when it is empty.
    static func firstEntry(of directory: String) throws -> String? {
        guard let stream = opendir(directory) else { throw MountError.io(operation: "opendir", path: directory, errno: errno) }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { return name }
        }
        return nil
    }
}

/// Marks every descriptor above stderr close-on-exec, so that the daemon, which outlives this
/// command, does not hold what the caller passed down: a harness's pipe or socket kept open by
/// the daemon makes `$(imgfs mount …)` or a test runner wait until the daemon exits.
func closeInheritedDescriptorsOnExec() {
    guard let directory = opendir("/proc/self/fd") else { return }
    var descriptors: [Int32] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let fd = Int32(name), fd > 2, fd != dirfd(directory) { descriptors.append(fd) }
    }
    closedir(directory)
    for fd in descriptors {
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }
}

/// `$IMGFS_CACHE_DIR`, else `$XDG_CACHE_HOME/imgfs`, else `~/.cache/imgfs`; `/var/cache/imgfs` for root.
func defaultCacheDirectory() -> String {
    if let dir = environmentValue("IMGFS_CACHE_DIR") { return dir }
    if geteuid() == 0 { return "/var/cache/imgfs" }
    if let xdg = environmentValue("XDG_CACHE_HOME") { return xdg + "/imgfs" }
    if let home = environmentValue("HOME") { return home + "/.cache/imgfs" }
    return "/tmp/imgfs-cache-\(geteuid())"
}

func environmentValue(_ name: String) -> String? {
    guard let value = getenv(name), value.pointee != 0 else { return nil }
    return String(cString: value)
}

func absolute(_ path: String) throws -> String {
    if path.hasPrefix("/") { return path }
    guard let cwd = getcwd(nil, 0) else { throw MountError.io(operation: "getcwd", path: path, errno: errno) }
    defer { free(cwd) }
    return String(cString: cwd) + "/" + path
}

/// A mount point as one file name that no other mount point shares: a readable part for the
/// operator (`/mnt/vm` → `mnt-vm`) and the first 16 hex digits of the SHA-256 of the absolute
/// path. Escaping alone cannot be both readable and collision-free (`/a/-b` and `/a-/b` once both
/// became `a---b`, and two mounts shared one written disk).
func mountpointFileName(_ mountpoint: String) -> String {
    let readable = String(mountpoint.drop { $0 == "/" }.map { $0 == "/" ? "-" : $0 }.prefix(80))
    let hash = SHA256Hasher.digest(Array(mountpoint.utf8)).hex.prefix(16)
    return (readable.isEmpty ? "root" : readable) + "-" + hash
}

/// The name imgfs 0.1 gave a mount point's files (ambiguous, see `mountpointFileName`); only
/// looked up to carry an existing written disk over to its new name.
func legacyMountpointFileName(_ mountpoint: String) -> String {
    let trimmed = mountpoint.drop { $0 == "/" }
    let name = String(trimmed).replacing("-", with: "--").replacing("/", with: "-")
    return name.isEmpty ? "root" : name
}

extension MountCommand {
    /// `--index` / `--no-span-index` as the resolver takes them.
    func spanIndexChoice() throws -> SpanIndexChoice {
        if noSpanIndex {
            guard index == nil else { throw ValidationError("--index and --no-span-index exclude each other") }
            return .off
        }
        guard let index else { return .discover }
        do { return .pinned(try Digest(parsing: index)) } catch { throw ValidationError("--index \(index): \(error)") }
    }
}
