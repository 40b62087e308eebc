import Threading

/// A bounded queue of background jobs whose producers never wait: `offer` drops the job when
/// the queue is full. For hints (readahead) that a FUSE thread must not block on.
final class JobQueue<Job: Sendable>: Sendable {
    private struct State: Sendable {
        var jobs: [Job] = []
        var closed = false
    }

    private let monitor = Monitor(State())
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Queues `job` unless the queue is full or closed; returns whether it was queued.
    func offer(_ job: Job) -> Bool {
        let capacity = self.capacity
        return monitor.withLock { state in
            guard !state.closed, state.jobs.count < capacity else { return false }
            state.jobs.append(job)
            monitor.broadcast()
            return true
        }
    }

    /// The oldest job, waiting for one; nil once closed (queued jobs are dropped then).
    func pop() -> Job? {
        monitor.wait(until: { !$0.jobs.isEmpty || $0.closed }) { state in
            guard !state.closed else { return nil }
            return state.jobs.removeFirst()
        }
    }

    func close() {
        monitor.update { state in
            state.closed = true
            state.jobs.removeAll()
        }
    }
}
