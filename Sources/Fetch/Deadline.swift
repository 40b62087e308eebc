import Glibc

/// When a call must have finished, on CLOCK_MONOTONIC: a FUSE read's deadline handed down to the
/// transfers it waits for. Every request made for the call (a token, a mirror, upstream, each
/// retry) gets what is left of it as its libcurl timeout, and no retry starts once it cannot
/// begin before the deadline, so the call ends by then whatever the registry does.
public struct Deadline: Sendable, Hashable, Comparable {
    /// Nanoseconds on CLOCK_MONOTONIC.
    public var uptimeNanoseconds: Int64

    public init(uptimeNanoseconds: Int64) {
        self.uptimeNanoseconds = uptimeNanoseconds
    }

    /// `seconds` on CLOCK_MONOTONIC as `clock_gettime` counts them (Mount's `monotonicNow()`).
    public init(monotonicSeconds seconds: Double) {
        // Far-future deadlines (and infinity) clamp instead of trapping in the conversion.
        let nanoseconds = seconds * 1e9
        self.uptimeNanoseconds = nanoseconds >= 9.2e18 ? Int64.max : nanoseconds <= 0 ? 0 : Int64(nanoseconds)
    }

    public static var now: Deadline { Deadline(uptimeNanoseconds: monotonicNanoseconds()) }

    /// `duration` from now.
    public static func after(_ duration: Duration) -> Deadline {
        let (sum, overflow) = monotonicNanoseconds().addingReportingOverflow(duration.nanoseconds)
        return Deadline(uptimeNanoseconds: overflow ? Int64.max : sum)
    }

    /// Time left, zero once the deadline has passed.
    public var remaining: Duration { .nanoseconds(max(0, uptimeNanoseconds - monotonicNanoseconds())) }

    public var hasPassed: Bool { monotonicNanoseconds() >= uptimeNanoseconds }

    /// Whether something that first waits `delay` would still start before the deadline.
    func allows(after delay: Duration) -> Bool {
        let (start, overflow) = monotonicNanoseconds().addingReportingOverflow(delay.nanoseconds)
        return !overflow && start < uptimeNanoseconds
    }

    /// What is left in whole milliseconds, rounded up (libcurl's timeout unit); 0 once passed.
    var remainingMilliseconds: Int {
        let left = uptimeNanoseconds - monotonicNanoseconds()
        guard left > 0 else { return 0 }
        return Int(min(left / 1_000_000 + (left % 1_000_000 == 0 ? 0 : 1), Int64(Int32.max)))
    }

    public static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.uptimeNanoseconds < rhs.uptimeNanoseconds }
}
