import Glibc

/// State that only its lock can reach, with a condition to wait on: the one lock type of imgfs.
///
/// Everything a `Monitor` guards lives inside it and is touched only in `withLock` and `wait`
/// closures, so the compiler (not a comment) checks that nothing reads it unlocked; the monitor is
/// `Sendable` exactly when its state is. Timed waits use CLOCK_MONOTONIC.
///
/// Closures run with the lock held: no I/O, no blocking and no other monitor inside them, unless
/// the owner documents the lock order.
public final class Monitor<State> {
    private let mutex = PThreadMutex()
    private let condition = PThreadCondition()
    // Reached only with `mutex` held, through the methods below.
    private var state: State

    public init(_ state: State) { self.state = state }

    /// Runs `body` on the state with the lock held.
    public func withLock<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
        mutex.lock()
        defer { mutex.unlock() }
        return try body(&state)
    }

    /// With the lock held, waits until `predicate` is true, then runs `body`.
    public func wait<R, E: Error>(until predicate: (State) -> Bool, then body: (inout State) throws(E) -> R) throws(E) -> R {
        mutex.lock()
        defer { mutex.unlock() }
        while !predicate(state) { condition.wait(mutex) }
        return try body(&state)
    }

    /// Like `wait(until:then:)` but gives up after `timeout` seconds; `body` learns whether the
    /// predicate held.
    public func wait<R, E: Error>(until predicate: (State) -> Bool, timeout: Double,
                                  then body: (inout State, Bool) throws(E) -> R) throws(E) -> R {
        mutex.lock()
        defer { mutex.unlock() }
        let deadline = PThreadCondition.deadline(after: timeout)
        while !predicate(state) {
            if !condition.wait(mutex, until: deadline) { return try body(&state, predicate(state)) }
        }
        return try body(&state, true)
    }

    /// Wakes every waiter so that it re-checks its predicate. Callable with or without the lock;
    /// call it from inside a closure that changed what a waiter waits for.
    public func broadcast() { condition.broadcast() }

    /// Changes the state and wakes every waiter so that it re-checks its predicate.
    public func update<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
        mutex.lock()
        defer {
            condition.broadcast()
            mutex.unlock()
        }
        return try body(&state)
    }
}

// The state is reachable only under the lock, so the monitor may cross threads when its state may.
extension Monitor: @unchecked Sendable where State: Sendable {}
