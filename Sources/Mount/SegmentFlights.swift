import Cache
import Formats
import Threading

/// The single-flight table of whole-layer fetches: at most one fetch per `SegmentKey`, however
/// many readers (and segments sharing a blob) want it. Readers `claim` a flight and `wait` for it
/// with a deadline; fetch threads take queued flights with `next`, demanded ones before prefetch.
///
/// The queue holds at most one flight per key, so it is bounded by the number of distinct layers.
/// Lock order: `monitor` is a leaf; no I/O and no other lock is taken under it.
final class SegmentFlights: @unchecked Sendable {
    final class Flight: @unchecked Sendable {
        let key: SegmentKey
        let segment: Segment
        // Guarded by the table's monitor.
        var demanded: Bool
        var result: Result<VerifiedSegmentFile, MountError>?

        init(key: SegmentKey, segment: Segment, demanded: Bool) {
            self.key = key
            self.segment = segment
            self.demanded = demanded
        }
    }

    private struct State: Sendable {
        var flights: [SegmentKey: Flight] = [:]
        var queue: [Flight] = []
        var closed = false
    }

    private let monitor = Monitor(State())

    /// The flight fetching `segment`'s key: an existing one (promoted if this is a demand), or a
    /// new queued one. A closed table gives a flight that has already failed with `.stopped`.
    func claim(_ segment: Segment, key: SegmentKey, demand: Bool) -> Flight {
        monitor.withLock { state in
            if let flight = state.flights[key] {
                if demand { flight.demanded = true }
                return flight
            }
            let flight = Flight(key: key, segment: segment, demanded: demand)
            guard !state.closed else {
                flight.result = .failure(.stopped)
                return flight
            }
            state.flights[key] = flight
            state.queue.append(flight)
            monitor.broadcast()
            return flight
        }
    }

    /// The next flight to fetch (a reader's before background prefetch), waiting for one; nil once closed.
    func next() -> Flight? {
        monitor.wait(until: { !$0.queue.isEmpty || $0.closed }) { state in
            guard !state.closed else { return nil }
            let position = state.queue.firstIndex { $0.demanded } ?? 0
            return state.queue.remove(at: position)
        }
    }

    /// Publishes a flight's result and wakes its waiters; the next claim of the key starts afresh.
    func complete(_ flight: Flight, _ result: Result<VerifiedSegmentFile, MountError>) {
        monitor.update { state in
            flight.result = result
            if state.flights[flight.key] === flight { state.flights[flight.key] = nil }
        }
    }

    /// The flight's result, or a timeout after `timeout` seconds (the fetch itself goes on).
    func wait(_ flight: Flight, timeout: Double) -> Result<VerifiedSegmentFile, MountError> {
        monitor.wait(until: { _ in flight.result != nil }, timeout: max(0.001, timeout)) { _, arrived in
            guard arrived, let result = flight.result else {
                return .failure(.foreign(.timedOut(layer: flight.segment.name, blob: flight.segment.blob.digest, seconds: timeout)))
            }
            return result
        }
    }

    /// Fails every queued flight with `.stopped` and ends `next`; running fetches notice
    /// `SegmentDisk.isStopping` between requests and complete their flights themselves.
    func close() {
        monitor.update { state in
            state.closed = true
            for flight in state.queue {
                flight.result = .failure(.stopped)
                if state.flights[flight.key] === flight { state.flights[flight.key] = nil }
            }
            state.queue.removeAll()
        }
    }

    var count: Int { monitor.withLock { $0.flights.count } }
}
