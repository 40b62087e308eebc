/// At most one fetch per key at a time, however many threads want it: the single-flight table of
/// imgfs frames and of whole foreign layers alike.
///
/// Two ways to run a flight:
/// - **claim and fetch**: `claim(_:joining:isPresent:)` splits keys into those the caller now
///   owns (it must `complete` each, success or failure) and those another thread is fetching
///   (which it may `wait` for). Deadlock freedom: a caller completes everything it owns before it
///   waits for anything, so no thread waits while holding an unfinished claim.
/// - **queue for workers**: `enqueue(_:demand:)` hands the key to worker threads that take flights
///   with `next()`, demanded ones before background ones; the caller `wait`s.
///
/// A result is kept only while someone who joined the flight has not collected it, so the table
/// holds nothing for finished flights nobody waits for.
public final class SingleFlight<Key: Hashable & Sendable, Value: Sendable, Failure: Error & Sendable>: Sendable {
    /// One caller's handle on one flight.
    public struct Ticket: Sendable, Hashable {
        public let key: Key
        let id: UInt64
    }

    private struct Running: Sendable {
        var id: UInt64
        var demanded: Bool
        /// Callers that will `wait` for this flight's result.
        var joined: Int
    }

    private struct Finished: Sendable {
        var result: Result<Value, Failure>
        var uncollected: Int
    }

    private struct State: Sendable {
        var running: [Key: Running] = [:]
        var finished: [UInt64: Finished] = [:]
        var queue: [Ticket] = []
        var nextID: UInt64 = 0
        var closed: Failure?

        mutating func start(_ key: Key, demanded: Bool, joined: Int) -> Ticket {
            nextID += 1
            running[key] = Running(id: nextID, demanded: demanded, joined: joined)
            return Ticket(key: key, id: nextID)
        }

        /// Whether a result has arrived for `ticket` (or the ticket is unknown, which `collect` reports).
        func isSettled(_ ticket: Ticket) -> Bool { running[ticket.key]?.id != ticket.id }

        mutating func collect(_ ticket: Ticket) -> Result<Value, Failure>? {
            guard var done = finished[ticket.id] else { return nil }
            done.uncollected -= 1
            finished[ticket.id] = done.uncollected > 0 ? done : nil
            return done.result
        }

        mutating func abandon(_ ticket: Ticket) {
            if running[ticket.key]?.id == ticket.id { running[ticket.key]?.joined -= 1 } else { _ = collect(ticket) }
        }
    }

    private let monitor = Monitor(State())

    public init() {}

    /// Splits `keys` into flights the caller now owns and flights already running. Keys for which
    /// `isPresent` turns true under the lock (stored since the caller looked) are dropped: an owner
    /// stores its value before it completes the flight, so no key falls in between. With
    /// `joining` false the caller will not wait for running flights (background work), and they
    /// come back empty.
    public func claim(_ keys: [Key], joining: Bool, isPresent: (Key) -> Bool) -> (owned: [Ticket], waiting: [Ticket]) {
        monitor.withLock { state in
            var owned: [Ticket] = []
            var waiting: [Ticket] = []
            for key in keys {
                if var running = state.running[key] {
                    guard joining else { continue }
                    running.joined += 1
                    state.running[key] = running
                    waiting.append(Ticket(key: key, id: running.id))
                } else if !isPresent(key) {
                    owned.append(state.start(key, demanded: joining, joined: 0))
                }
            }
            return (owned, waiting)
        }
    }

    /// The running flight of `key`, joined (and promoted when `demand`), or a new one queued for
    /// the workers. The caller must `wait` for it. A closed table gives a flight already failed.
    public func enqueue(_ key: Key, demand: Bool) -> Ticket {
        monitor.withLock { state in
            if var running = state.running[key] {
                running.joined += 1
                running.demanded = running.demanded || demand
                state.running[key] = running
                return Ticket(key: key, id: running.id)
            }
            let ticket = state.start(key, demanded: demand, joined: 1)
            if let failure = state.closed {
                state.running[key] = nil
                state.finished[ticket.id] = Finished(result: .failure(failure), uncollected: 1)
                return ticket
            }
            state.queue.append(ticket)
            monitor.broadcast()
            return ticket
        }
    }

    /// The next queued flight for a worker (demanded ones first) and whether a reader waits for
    /// it, waiting for one; nil once closed.
    public func next() -> (ticket: Ticket, demanded: Bool)? {
        monitor.wait(until: { !$0.queue.isEmpty || $0.closed != nil }) { state in
            guard state.closed == nil else { return nil }
            let position = state.queue.firstIndex { state.running[$0.key]?.demanded == true } ?? 0
            let ticket = state.queue.remove(at: position)
            return (ticket, state.running[ticket.key]?.demanded ?? false)
        }
    }

    /// Whether a caller waits for the running flight of `key`: its owner claimed it for a reader,
    /// or a reader joined it.
    public func isAwaited(_ key: Key) -> Bool {
        monitor.withLock { state in state.running[key].map { $0.demanded || $0.joined > 0 } ?? false }
    }

    /// Whether a reader waits for the running flight of `key`: claimed or enqueued for one, or
    /// joined by one since. Unlike `isAwaited`, background callers that wait do not count.
    public func isDemanded(_ key: Key) -> Bool { monitor.withLock { $0.running[key]?.demanded ?? false } }

    /// Whether a flight of `key` is running.
    public func isRunning(_ key: Key) -> Bool { monitor.withLock { $0.running[key] != nil } }

    public var count: Int { monitor.withLock { $0.running.count } }

    /// Publishes the result of a flight the caller owns (or a worker took) and wakes its waiters;
    /// the next claim of the key starts a new flight.
    public func complete(_ ticket: Ticket, _ result: Result<Value, Failure>) {
        monitor.update { state in
            guard let running = state.running[ticket.key], running.id == ticket.id else { return }
            state.running[ticket.key] = nil
            if running.joined > 0 { state.finished[ticket.id] = Finished(result: result, uncollected: running.joined) }
        }
    }

    /// The result of a flight the caller joined, or nil after `timeout` seconds (the flight goes on).
    public func wait(_ ticket: Ticket, timeout: Double) -> Result<Value, Failure>? {
        monitor.wait(until: { $0.isSettled(ticket) }, timeout: max(0.001, timeout)) { state, settled in
            guard settled else {
                state.abandon(ticket)
                return nil
            }
            return state.collect(ticket)
        }
    }

    /// Fails every queued flight with `failure` and ends `next`; flights a worker is running are
    /// completed by that worker.
    public func close(failing failure: Failure) {
        monitor.update { state in
            state.closed = failure
            for ticket in state.queue {
                guard let running = state.running.removeValue(forKey: ticket.key) else { continue }
                if running.joined > 0 { state.finished[ticket.id] = Finished(result: .failure(failure), uncollected: running.joined) }
            }
            state.queue.removeAll()
        }
    }
}
