import Synchronization
import Threading

/// Runs `work` over `units` on `threads` worker threads, each taking the next unit from a shared
/// cursor (the units are already in memory, so the "queue" is bounded by construction). The
/// first error stops every worker from taking more and is rethrown; workers see it through
/// `shouldStop` so a long transfer can abort early.
final class WorkPool<Unit: Sendable>: Sendable {
    private let units: [Unit]
    private let cursor = Atomic<Int>(0)
    private let failure = Mutex<PullError?>(nil)

    init(_ units: [Unit]) { self.units = units }

    var shouldStop: Bool { failure.withLock { $0 != nil } }

    func record(_ error: PullError) {
        failure.withLock { if $0 == nil { $0 = error } }
    }

    func run(threads: Int, name: String, work: @escaping @Sendable (Unit) throws(PullError) -> Void) throws(PullError) {
        guard !units.isEmpty else { return }
        let count = max(1, min(threads, units.count))
        let workers = (0..<count).map { i in
            WorkerThread(name: "\(name)-\(i)") { [self] in
                while !shouldStop {
                    let index = cursor.add(1, ordering: .relaxed).oldValue
                    guard index < units.count else { return }
                    do throws(PullError) { try work(units[index]) } catch {
                        record(error)
                        return
                    }
                }
            }
        }
        for worker in workers { worker.join() }
        if let error = failure.withLock({ $0 }) { throw error }
    }
}

/// Thrown from a transfer's sink to abort it once another worker has failed.
struct PullCancelled: Error {}
