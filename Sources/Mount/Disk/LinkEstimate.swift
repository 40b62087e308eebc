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
///
/// Until the mount's own requests have measured `minimumBytes`, a `seed` stands in: a transfer
/// made before the mount served anything (the frame index, fetched when the image was
/// resolved). The kernel fixes a file's readahead when the file is opened, and a hypervisor
/// opens its disk before the first range request, so without a seed that choice would be blind.
final class LinkEstimate: Sendable {
    /// Seconds of busy time the estimate remembers.
    static let horizon = 5.0
    /// Bytes that must have been measured before throughput is reported: one small request
    /// says more about latency than about the link.
    static let minimumBytes = 512.0 * 1024
    static let latencyWeight = 0.2
    /// The smallest transfer `seed` takes: TCP's initial window (10 segments) and a shaper's
    /// burst carry tens of KiB before a link's rate shows. A 1 GiB disk's frame index is 56 KiB.
    static let minimumSeedBytes = 48 * 1024

    private struct State {
        var inFlight = 0
        /// When busy time was last accounted, while a request is in flight.
        var mark = 0.0
        var busySeconds = 0.0
        var bytes = 0.0
        var latency: Double?
        var requests: Int64 = 0
        /// Bytes a second of the seed transfer; nil without one.
        var seed: Double?
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
            // Measured once, the seed is gone for good: a later stall that decays the bytes
            // below `minimumBytes` must not bring back a figure from before the mount.
            if Self.measuredRate(state) != nil { state.seed = nil }
            published.store(Self.rate(state)?.bitPattern ?? 0, ordering: .relaxed)
            // Latency against the mount's own figure only: a seed that errs low would hide it.
            if let rate = Self.measuredRate(state), bytes > 0, !failed {
                let sample = max(0, seconds - Double(bytes) / rate)
                state.latency = state.latency.map { $0 + Self.latencyWeight * (sample - $0) } ?? sample
            }
        }
    }

    private static func rate(_ state: State) -> Double? { measuredRate(state) ?? state.seed }

    private static func measuredRate(_ state: State) -> Double? {
        guard state.bytes >= minimumBytes, state.busySeconds > 0 else { return nil }
        return state.bytes / state.busySeconds
    }

    /// Takes `sample` as the estimate until the mount's own requests have measured enough. A
    /// small transfer's duration is mostly round trips (the connection, TCP's slow start), so the
    /// seed errs low, toward a slow link; one below `minimumSeedBytes` is ignored: it is over
    /// within the first round trips, or within the burst a link's shaper allows after a pause,
    /// and says nothing about the rate.
    func seed(_ sample: TransferSample) {
        guard sample.bytes >= Self.minimumSeedBytes, let rate = sample.bytesPerSecond else { return }
        state.withLock { state in
            guard Self.measuredRate(state) == nil else { return }
            state.seed = rate
            published.store(Self.rate(state)?.bitPattern ?? 0, ordering: .relaxed)
        }
    }

    /// Bytes a second the link carried lately (or the seed's); nil until enough was measured.
    var bytesPerSecond: Double? {
        let bits = published.load(ordering: .relaxed)
        return bits == 0 ? nil : Double(bitPattern: bits)
    }

    var snapshot: LinkSnapshot {
        state.withLock { state in
            let seeded = Self.measuredRate(state) == nil && state.seed != nil
            return LinkSnapshot(bytesPerSecond: Self.rate(state), latencySeconds: state.latency, requests: state.requests, seeded: seeded ? true : nil)
        }
    }
}

/// A `LinkEstimate` as `imgfs status` shows it.
public struct LinkSnapshot: Sendable, Codable, Equatable {
    /// The seed's until enough bytes were measured; nil without either.
    public var bytesPerSecond: Double?
    public var latencySeconds: Double?
    /// Range requests measured (answered or failed).
    public var requests: Int64
    /// True while `bytesPerSecond` is the seed's (the frame index's transfer), not yet measured.
    public var seeded: Bool? = nil
}

/// One finished transfer: how many bytes took how long. What a mount measured before its own
/// range requests (`LinkEstimate.seed`), passed from the command that resolved the image to
/// the daemon that serves it.
public struct TransferSample: Sendable, Equatable {
    public var bytes: Int
    public var seconds: Double

    public init(bytes: Int, seconds: Double) {
        self.bytes = bytes
        self.seconds = seconds
    }

    /// Nil for a transfer that says nothing about a rate (no bytes, or no measurable time).
    public var bytesPerSecond: Double? {
        guard bytes > 0, seconds > 0, seconds.isFinite else { return nil }
        return Double(bytes) / seconds
    }

    /// `BYTES:SECONDS`, as the daemon's `--link-sample` takes it.
    public var argument: String { "\(bytes):\(seconds)" }

    /// Parses `argument`'s form; nil for anything else.
    public init?(argument: String) {
        let parts = argument.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let bytes = Int(parts[0]), bytes >= 0, let seconds = Double(parts[1]), seconds >= 0, seconds.isFinite
        else { return nil }
        self.init(bytes: bytes, seconds: seconds)
    }
}
