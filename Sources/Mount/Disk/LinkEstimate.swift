import Glibc
import Synchronization

/// What the link to the mount's registry carries, measured from the mount's own range requests
/// (every class: demand, readahead, profile, prefetch), so that readahead can size itself to it.
///
/// Throughput is bytes over *busy* time (time with at least one request in flight), not over
/// each request's duration: requests in flight at once share the link, and their durations
/// overlap. Both sums decay with the busy time added, so the estimate follows the last
/// `horizon` seconds the link was in use; idle time neither raises nor lowers it.
///
/// Latency is the part of a request's duration that throughput does not explain (round trip,
/// the registry's time to the first byte), averaged; an estimate, since the transfer layer
/// does not report when the first byte arrived.
final class LinkEstimate: Sendable {
    /// Seconds of busy time the estimate remembers.
    static let horizon = 5.0
    /// Bytes that must have been measured before throughput is reported: one small request
    /// says more about latency than about the link.
    static let minimumBytes = 512.0 * 1024
    static let latencyWeight = 0.2

    private struct State {
        var inFlight = 0
        /// When busy time was last accounted, while a request is in flight.
        var mark = 0.0
        var busySeconds = 0.0
        var bytes = 0.0
        var latency: Double?
        var requests: Int64 = 0
    }

    private let state = Mutex(State())
    /// `bytesPerSecond`'s bits (0: not measured yet), for readers that ask on every read.
    private let published = Atomic<UInt64>(0)

    init() {}

    func started(at now: Double) {
        state.withLock { state in
            if state.inFlight == 0 { state.mark = now }
            state.inFlight += 1
        }
    }

    /// A request that `started` finished after `seconds`, having received `bytes`, all of them
    /// also when it `failed` midway (a stall that moved nothing is busy time without bytes, which
    /// is what a stalled link looks like). Only a request that completed says how long the link
    /// takes to start answering.
    func finished(bytes: Int, seconds: Double, at now: Double, failed: Bool = false) {
        state.withLock { state in
            guard state.inFlight > 0 else { return }
            let busy = max(0, now - state.mark)
            state.mark = now
            state.inFlight -= 1
            let decay = exp(-busy / Self.horizon)
            state.busySeconds = state.busySeconds * decay + busy
            state.bytes = state.bytes * decay + Double(bytes)
            state.requests += 1
            published.store(Self.rate(state)?.bitPattern ?? 0, ordering: .relaxed)
            if let rate = Self.rate(state), bytes > 0, !failed {
                let sample = max(0, seconds - Double(bytes) / rate)
                state.latency = state.latency.map { $0 + Self.latencyWeight * (sample - $0) } ?? sample
            }
        }
    }

    private static func rate(_ state: State) -> Double? {
        guard state.bytes >= minimumBytes, state.busySeconds > 0 else { return nil }
        return state.bytes / state.busySeconds
    }

    /// Bytes a second the link carried lately; nil until enough was measured.
    var bytesPerSecond: Double? {
        let bits = published.load(ordering: .relaxed)
        return bits == 0 ? nil : Double(bitPattern: bits)
    }

    var snapshot: LinkSnapshot {
        state.withLock { LinkSnapshot(bytesPerSecond: Self.rate($0), latencySeconds: $0.latency, requests: $0.requests) }
    }
}

/// A `LinkEstimate` as `imgfs status` shows it.
public struct LinkSnapshot: Sendable, Codable, Equatable {
    /// Nil until enough bytes were measured.
    public var bytesPerSecond: Double?
    public var latencySeconds: Double?
    /// Range requests measured (answered or failed).
    public var requests: Int64
}
