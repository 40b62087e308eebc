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

final class PThreadCondition: @unchecked Sendable {
    let raw: UnsafeMutablePointer<pthread_cond_t>

    init() {
        raw = .allocate(capacity: 1)
        raw.initialize(to: pthread_cond_t())
        pthread_cond_init(raw, nil)
    }

    deinit {
        pthread_cond_destroy(raw)
        raw.deallocate()
    }

    func wait(_ mutex: PThreadMutex) { pthread_cond_wait(raw, mutex.raw) }

    /// Waits at most until `deadline` (CLOCK_REALTIME); returns false on timeout.
    func wait(_ mutex: PThreadMutex, until deadline: timespec) -> Bool {
        var deadline = deadline
        return pthread_cond_timedwait(raw, mutex.raw, &deadline) != ETIMEDOUT
    }

    func signal() { pthread_cond_signal(raw) }
    func broadcast() { pthread_cond_broadcast(raw) }
}

/// A condition variable bundled with its mutex, for the few places that need a custom wait
/// (single-flight frame fetches, reorder buffers).
public final class Monitor: @unchecked Sendable {
    private let mutex = PThreadMutex()
    private let condition = PThreadCondition()

    public init() {}

    /// Runs `body` with the lock held.
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        mutex.lock()
        defer { mutex.unlock() }
        return try body()
    }

    /// With the lock held, waits until `predicate` is true, then runs `body`.
    public func wait<R>(until predicate: () -> Bool, then body: () throws -> R) rethrows -> R {
        mutex.lock()
        defer { mutex.unlock() }
        while !predicate() { condition.wait(mutex) }
        return try body()
    }

    /// Like `wait(until:then:)` but gives up after `timeout` seconds; `body` gets whether the predicate held.
    public func wait<R>(until predicate: () -> Bool, timeout: Double, then body: (Bool) throws -> R) rethrows -> R {
        mutex.lock()
        defer { mutex.unlock() }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nanos = Int(now.tv_nsec) + Int((timeout - timeout.rounded(.down)) * 1e9)
        let deadline = timespec(tv_sec: now.tv_sec + Int(timeout) + nanos / 1_000_000_000, tv_nsec: nanos % 1_000_000_000)
        while !predicate() {
            if !condition.wait(mutex, until: deadline) { return try body(predicate()) }
        }
        return try body(true)
    }

    /// Wakes every waiter so it re-checks its predicate. Call after changing guarded state.
    public func broadcast() { condition.broadcast() }
}
