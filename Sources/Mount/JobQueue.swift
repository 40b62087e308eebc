import Threading

/// A bounded queue of background jobs whose producers never wait: `offer` drops the job when
/// the queue is full. For hints (readahead) that a FUSE thread must not block on.
final class JobQueue<Job: Sendable>: @unchecked Sendable {
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var jobs: [Job] = []
    private var closed = false
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Queues `job` unless the queue is full or closed; returns whether it was queued.
    func offer(_ job: Job) -> Bool {
        monitor.withLock {
            guard !closed, jobs.count < capacity else { return false }
            jobs.append(job)
            monitor.broadcast()
            return true
        }
    }

    /// The oldest job, waiting for one; nil once closed (queued jobs are dropped then).
    func pop() -> Job? {
        monitor.wait(until: { !jobs.isEmpty || closed }) {
            guard !closed else { return nil }
            return jobs.removeFirst()
        }
    }

    func close() {
        monitor.withLock {
            closed = true
            jobs.removeAll()
            monitor.broadcast()
        }
    }
}
