import Threading

/// Why a transfer runs, most urgent first: what `DemandGate` orders transfers on one link by.
public enum TransferClass: Int, CaseIterable, Sendable {
    /// A reader is blocked until the bytes arrive.
    case demand
    /// A reader reading sequentially will want them next.
    case readahead
    /// The boot profile: what the boot will read, fetched ahead of it.
    case profile
    /// The background pass over the whole disk.
    case prefetch

    /// Whether a running transfer of `other` makes one of this class hold still.
    ///
    /// Readahead and the boot profile yield to readers; the background prefetch to everything
    /// else. Readahead that shared the link with demand as one more flow (with the shaper's queue
    /// full, each new demand request also started slowly behind it) kept a 1 MiB demand read at
    /// 16 Mbit/s waiting 3.5 s; held, it waits only for the held transfers' windows. What made
    /// holding readahead costly before (every 100 Mbit/s boot of the first attempt 6-8 s slower)
    /// was, as far as measured, the 250 ms a held transfer took to notice that a reader had come
    /// to wait for it: it now checks every `DemandGate.urgentPoll`.
    public func yields(to other: TransferClass) -> Bool {
        switch self {
        case .demand: false
        case .readahead, .profile: other == .demand
        case .prefetch: other != .prefetch
        }
    }

    /// Seconds after a transfer this class yields to has ended during which this class still
    /// holds still. Only the background prefetch lingers: a reader reading sequentially asks for
    /// its next bytes milliseconds after its last arrived, and a prefetch transfer that moved in
    /// that gap put up to its receive window of bytes on the link ahead of them (on a 16 Mbit/s
    /// link, with the kernel's 128 KiB readahead making a sequential reader's requests one at a
    /// time, the prefetch took 21-26% as many bytes as the reader during its reads, against 11%
    /// while the 4 MiB windows kept demand running without gaps). Readahead and the profile do not
    /// linger: what they fetch is what the same readers want next.
    public var linger: Double { self == .prefetch ? 0.1 : 0 }

    /// Whether transfers of this class ever hold still, and so run on the background handles
    /// whose connections have a small receive buffer (`Transfer.background`).
    public var yields: Bool { Self.allCases.contains { yields(to: $0) } }
}

/// The link to one registry, as the transfers on it share it: a transfer of a lower class
/// (`TransferClass.yields(to:)`) does not start while one it yields to runs, and holds still
/// between body chunks while one runs, so that on a slow link a reader's bytes are not queued
/// behind those nobody waits for yet. A paused transfer stops reading its socket, and TCP stops
/// its sender once the (small) receive window is full.
///
/// A transfer holds still `maxPause` at a time, then takes one more chunk before it checks again:
/// a long run of demand slows it to a trickle of a few chunks a second, which keeps it above
/// libcurl's low-speed limit (1 KiB/s), rather than failing it. One whose bytes a reader has
/// meanwhile come to wait for (the caller's `urgent`, checked every `urgentPoll`) is not held.
public final class DemandGate: Sendable {
    private let state = Monitor<State>(State())
    public static let maxPause = 0.25
    /// How often a held transfer asks whether a reader now waits for it: a reader that joins a
    /// held transfer waits at most this long for it to move again.
    public static let urgentPoll = 0.01
    /// The longest a transfer waits to start while ones it yields to run.
    public static let maxStartDelay = 5.0

    struct State: Sendable {
        /// Transfers running now, by `TransferClass.rawValue`.
        var running = [Int](repeating: 0, count: TransferClass.allCases.count)
        /// Seconds transfers have held still, summed over transfers, by class.
        var pausedSeconds = [Double](repeating: 0, count: TransferClass.allCases.count)
        /// When the last transfer of each class ended (`monotonicNow()`), for `TransferClass.linger`.
        var lastEnded = [Double](repeating: -.infinity, count: TransferClass.allCases.count)

        func mustHold(_ transferClass: TransferClass, now: Double) -> Bool {
            TransferClass.allCases.contains { other in
                transferClass.yields(to: other)
                    && (running[other.rawValue] > 0 || now - lastEnded[other.rawValue] < transferClass.linger)
            }
        }
    }

    public init() {}

    /// Runs a transfer of `transferClass`, counted as running while `transfer` runs. The caller
    /// makes it wait (`waitToStart`) and hold still (`yield`) as its class must.
    public func run<R, E: Error>(_ transferClass: TransferClass, _ transfer: () throws(E) -> R) throws(E) -> R {
        state.withLock { $0.running[transferClass.rawValue] += 1 }
        defer {
            state.update { state in
                state.running[transferClass.rawValue] -= 1
                state.lastEnded[transferClass.rawValue] = monotonicNow()
            }
        }
        return try transfer()
    }

    /// Runs a demand transfer: every class that yields holds still until it (and any other) is done.
    public func demand<R, E: Error>(_ transfer: () throws(E) -> R) throws(E) -> R {
        try run(.demand, transfer)
    }

    public func isRunning(_ transferClass: TransferClass) -> Bool { state.withLock { $0.running[transferClass.rawValue] > 0 } }

    public var isDemandRunning: Bool { isRunning(.demand) }

    /// Whether a transfer of `transferClass` would hold still now.
    public func mustHold(_ transferClass: TransferClass) -> Bool { state.withLock { $0.mustHold(transferClass, now: monotonicNow()) } }

    /// Total seconds transfers of `transferClass` have held still.
    public func pausedSeconds(_ transferClass: TransferClass) -> Double { state.withLock { $0.pausedSeconds[transferClass.rawValue] } }

    /// Total seconds transfers of every class have held still.
    public var pausedSeconds: Double { state.withLock { $0.pausedSeconds.reduce(0, +) } }

    /// Called before a transfer of `transferClass` starts: returns when nothing it yields to runs,
    /// when `urgent()`, or after `seconds`.
    public func waitToStart(_ transferClass: TransferClass, urgent: () -> Bool, upTo seconds: Double) {
        let until = monotonicNow() + seconds
        while mustHold(transferClass), !urgent() {
            let left = until - monotonicNow()
            if left <= 0 { return }
            hold(transferClass, for: min(left, Self.urgentPoll))
        }
    }

    /// Called by a transfer of `transferClass` before it takes its next chunk: returns at once
    /// when nothing it yields to runs (or `urgent()` says a reader now waits for it), else when
    /// the last such transfer ends, `urgent()` turns true, or `maxPause` has passed.
    public func yield(_ transferClass: TransferClass, urgent: () -> Bool) {
        let until = monotonicNow() + Self.maxPause
        while mustHold(transferClass), !urgent() {
            let left = until - monotonicNow()
            if left <= 0 { return }
            hold(transferClass, for: min(left, Self.urgentPoll))
        }
    }

    /// Waits up to `seconds` for nothing `transferClass` yields to to run, counting the wait.
    private func hold(_ transferClass: TransferClass, for seconds: Double) {
        let started = monotonicNow()
        // A linger's end signals nothing: the wait then ends at `seconds` (at most `urgentPoll`).
        state.wait(until: { !$0.mustHold(transferClass, now: monotonicNow()) }, timeout: seconds) { state, _ in
            state.pausedSeconds[transferClass.rawValue] += monotonicNow() - started
        }
    }
}
