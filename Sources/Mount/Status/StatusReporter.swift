import Glibc
import Logging
import Threading

/// Writes a mount's status file once a second until stopped, then removes it.
public final class StatusReporter: Sendable {
    let session: any MountSession
    let mountpoint: String
    let reference: String?
    let logFile: String?
    let writableDirectory: String?
    let version: String?
    let commit: String?
    /// Registry requests retried so far (the registry client's count), if the mount has a client.
    let retries: (@Sendable () -> Int64)?
    let logger: Logger
    let startedAt: Double
    let process: ServingProcess?
    let thread = BackgroundThread(name: "status")

    public init(session: any MountSession, mountpoint: String, reference: String? = nil, logFile: String?, writableDirectory: String? = nil,
                process: ServingProcess? = nil, version: String? = nil, commit: String? = nil, retries: (@Sendable () -> Int64)? = nil,
                logger: Logger) {
        self.process = process
        self.retries = retries
        self.writableDirectory = writableDirectory
        self.version = version
        self.commit = commit
        self.session = session
        self.mountpoint = mountpoint
        self.reference = reference
        self.logFile = logFile
        self.logger = logger
        self.startedAt = wallClock()
    }

    public func start() {
        writeOnce()
        thread.startRepeating(every: 1) { [self] in writeOnce() }
    }

    public func stop() {
        thread.stop()
        MountStatusFiles.remove(mountpoint: mountpoint)
    }

    func writeOnce() {
        var status = session.status(pid: getpid(), mountpoint: mountpoint, reference: reference, logFile: logFile, startedAt: startedAt, now: wallClock())
        status.writableDirectory = writableDirectory
        if let process {
            status.holderPid = process.holderPid
            status.restarts = process.restarts
            status.upgrades = process.upgrades
            status.version = process.version
            status.serverBinary = process.binary
            status.serverBinaryModified = process.binaryModified
        }
        if let version { status.version = version }
        status.commit = commit
        status.statistics.retries = retries?()
        do { try MountStatusFiles.write(status) } catch {
            logger.debug("could not write the status file", metadata: ["error": "\(error)"])
        }
    }
}

/// Who serves a mount, for its status file.
public struct ServingProcess: Sendable {
    public var holderPid: Int32?
    public var restarts: UInt32?
    public var upgrades: UInt32?
    public var version: String
    public var binary: String?
    public var binaryModified: Double?

    public init(holderPid: Int32?, restarts: UInt32?, upgrades: UInt32?, version: String, binary: String?, binaryModified: Double?) {
        self.holderPid = holderPid
        self.restarts = restarts
        self.upgrades = upgrades
        self.version = version
        self.binary = binary
        self.binaryModified = binaryModified
    }
}

func wallClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
