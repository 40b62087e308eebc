/// A thread that runs until it is told to stop, for imgfs's background loops (prefetch, status
/// file, progress lines, cache commits). Its `pause` wakes at once when `stop()` is called, so
/// stopping a loop that sleeps between rounds never waits out the sleep.
public final class BackgroundThread: Sendable {
    private struct State: Sendable {
        var stopRequested = false
        var worker: WorkerThread?
    }

    public let name: String
    private let monitor = Monitor(State())

    public init(name: String) { self.name = name }

    /// Runs `body` on a new thread, unless stopped already; `body` should return soon after
    /// `isStopping` turns true. Call once.
    public func start(_ body: @escaping @Sendable () -> Void) {
        let name = self.name
        monitor.withLock { state in
            guard !state.stopRequested, state.worker == nil else { return }
            state.worker = WorkerThread(name: name, body)
        }
    }

    /// Calls `tick` every `interval` seconds until stopped (the first call after one interval).
    public func startRepeating(every interval: Double, _ tick: @escaping @Sendable () -> Void) {
        start { [self] in
            while !pause(interval) { tick() }
        }
    }

    public var isStopping: Bool { monitor.withLock { $0.stopRequested } }

    /// Sleeps `seconds`, or less if `stop()` is called meanwhile; returns whether to stop.
    public func pause(_ seconds: Double) -> Bool {
        monitor.wait(until: { $0.stopRequested }, timeout: seconds) { _, stopped in stopped }
    }

    /// Asks the thread to stop, wakes it from `pause`, and waits for it to end. Safe to call
    /// more than once, and before `start` (which then starts nothing).
    public func stop() {
        let thread = monitor.update { state -> WorkerThread? in
            state.stopRequested = true
            defer { state.worker = nil }
            return state.worker
        }
        thread?.join()
    }
}
