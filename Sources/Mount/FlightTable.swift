import ImageFormat
import Threading

/// The single-flight table: at most one fetch per frame at a time, however many readers want it.
///
/// A reader `claim`s the frames it is missing. Frames no one is fetching become its own
/// (`owned`); it must `complete` every one of them, success or failure. Frames another thread is
/// fetching come back as `waiting`, and the reader `wait`s for their results.
///
/// Lock order: `monitor`, then `FrameCache`'s internal lock (via `isPresent`), which is a leaf.
/// No I/O and no other lock is taken under `monitor`.
///
/// Deadlock freedom: a thread first completes everything it owns and only then waits for frames
/// others own; so no thread waits while holding an unfinished claim.
final class FlightTable: @unchecked Sendable {
    /// One frame's fetch. `result` is written once, under the table's monitor.
    final class Flight: @unchecked Sendable {
        let frame: Int
        var result: Result<VerifiedFrame, MountError>?
        init(frame: Int) { self.frame = frame }
    }

    private let monitor = Monitor([Int: Flight]())

    /// Splits `frames` into those the caller now owns and those already in flight. Frames for
    /// which `isPresent` turns true under the lock (stored since the caller looked) are dropped:
    /// a fetcher stores a frame before it completes the flight, so no frame falls in between.
    func claim(_ frames: [Int], isPresent: (Int) -> Bool) -> (owned: [Flight], waiting: [Flight]) {
        monitor.withLock { flights in
            var owned: [Flight] = []
            var waiting: [Flight] = []
            for frame in frames {
                if let flight = flights[frame] {
                    waiting.append(flight)
                } else if !isPresent(frame) {
                    let flight = Flight(frame: frame)
                    flights[frame] = flight
                    owned.append(flight)
                }
            }
            return (owned, waiting)
        }
    }

    /// Publishes the result of an owned flight and wakes its waiters.
    func complete(_ flight: Flight, _ result: Result<VerifiedFrame, MountError>) {
        monitor.update { flights in
            flight.result = result
            if flights[flight.frame] === flight { flights[flight.frame] = nil }
        }
    }

    /// The result of a flight someone else owns, or `.timedOut` after `timeout` seconds.
    func wait(_ flight: Flight, timeout: Double) -> Result<VerifiedFrame, MountError> {
        monitor.wait(until: { _ in flight.result != nil }, timeout: max(0.001, timeout)) { _, arrived in
            guard arrived, let result = flight.result else { return .failure(.timedOut(frame: flight.frame, seconds: timeout)) }
            return result
        }
    }

    var count: Int { monitor.withLock { $0.count } }

    func isInFlight(_ frame: Int) -> Bool { monitor.withLock { $0[frame] != nil } }
}
