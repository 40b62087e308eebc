import Glibc

/// A pthread mutex on the heap (pthread objects must not move once initialised).
final class PThreadMutex: @unchecked Sendable {
    let raw: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        raw = .allocate(capacity: 1)
        raw.initialize(to: pthread_mutex_t())
        pthread_mutex_init(raw, nil)
    }

    deinit {
        pthread_mutex_destroy(raw)
        raw.deallocate()
    }

    func lock() { pthread_mutex_lock(raw) }
    func unlock() { pthread_mutex_unlock(raw) }
}

/// A condition variable whose timed waits run on CLOCK_MONOTONIC, so that a wall-clock step
/// (NTP, an operator's `date -s`) neither ends a wait early nor stretches it.
final class PThreadCondition: @unchecked Sendable {
    let raw: UnsafeMutablePointer<pthread_cond_t>

    init() {
        raw = .allocate(capacity: 1)
        raw.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(raw, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(raw)
        raw.deallocate()
    }

    func wait(_ mutex: PThreadMutex) { pthread_cond_wait(raw, mutex.raw) }

    /// Waits at most until `deadline` (CLOCK_MONOTONIC); returns false on timeout.
    func wait(_ mutex: PThreadMutex, until deadline: timespec) -> Bool {
        var deadline = deadline
        return pthread_cond_timedwait(raw, mutex.raw, &deadline) != ETIMEDOUT
    }

    func broadcast() { pthread_cond_broadcast(raw) }

    /// The CLOCK_MONOTONIC time `seconds` from now.
    static func deadline(after seconds: Double) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let seconds = max(0, seconds)
        let nanos = Int(now.tv_nsec) + Int((seconds - seconds.rounded(.down)) * 1e9)
        return timespec(tv_sec: now.tv_sec + Int(seconds) + nanos / 1_000_000_000, tv_nsec: nanos % 1_000_000_000)
    }
}
