import Glibc
import Synchronization
import Threading

/// Copies the push pipeline's counters into the convert counters a few times a second, so the
/// command line samples one set whatever the target format.
final class ProgressForwarder: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let thread: Mutex<WorkerThread?> = Mutex(nil)

    init(_ tick: @escaping @Sendable () -> Void) {
        // The thread holds `self` until `stop()`, which the owner always calls.
        let worker = WorkerThread(name: "convert-progress") { [self] in
            while !stopped.load(ordering: .relaxed) {
                tick()
                usleep(100_000)
            }
            tick()
        }
        thread.withLock { $0 = worker }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        let worker = thread.withLock { value -> WorkerThread? in
            defer { value = nil }
            return value
        }
        worker?.join()
    }
}
