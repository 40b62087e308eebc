import Glibc
import Logging
import Synchronization
import Threading

/// Writes a mount's status file once a second until stopped, then removes it.
public final class StatusReporter: Sendable {
    let session: any ServingSession
    let mountpoint: String
    let reference: String?
    let logFile: String?
    let writableDirectory: String?
    let logger: Logger
    let startedAt: Double
    let stopped = Atomic<Bool>(false)
    let thread = Mutex<WorkerThread?>(nil)

    public init(session: any ServingSession, mountpoint: String, reference: String? = nil, logFile: String?, writableDirectory: String? = nil, logger: Logger) {
        self.writableDirectory = writableDirectory
        self.session = session
        self.mountpoint = mountpoint
        self.reference = reference
        self.logFile = logFile
        self.logger = logger
        self.startedAt = wallClock()
    }

    public func start() {
        writeOnce()
        let worker = WorkerThread(name: "status") { [self] in
            while !stopped.load(ordering: .relaxed) {
                // Ten short sleeps rather than one, so that stop() returns promptly.
                for _ in 0..<10 where !stopped.load(ordering: .relaxed) { usleep(100_000) }
                if !stopped.load(ordering: .relaxed) { writeOnce() }
            }
        }
        thread.withLock { $0 = worker }
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        let worker = thread.withLock { value -> WorkerThread? in
            defer { value = nil }
            return value
        }
        worker?.join()
        MountStatusFiles.remove(mountpoint: mountpoint)
    }

    func writeOnce() {
        var status = session.status(pid: getpid(), mountpoint: mountpoint, reference: reference, logFile: logFile, startedAt: startedAt, now: wallClock())
        status.writableDirectory = writableDirectory
        do { try MountStatusFiles.write(status) } catch {
            logger.debug("could not write the status file", metadata: ["error": "\(error)"])
        }
    }
}

func wallClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
