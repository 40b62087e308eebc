import Glibc

/// The one retry policy of imgfs: a verified fetch of an object, a mounted frame or layer, a pulled
/// frame run or layer. Up to `attempts` tries, a growing pause between them, and no new try that
/// could not end before `deadline` (a try as long as the last one, after the pause): a source that
/// stalls costs one attempt's timeouts, not one per attempt, and a reader gets its error in time.
public struct BoundedRetry: Sendable {
    public var attempts: Int
    /// The pause after failed try `n` (1-based).
    public var pause: @Sendable (_ attempt: Int) -> Duration
    /// CLOCK_MONOTONIC seconds (`monotonicNow()`) by which the last try must have ended.
    public var deadline: Double?

    public init(attempts: Int, deadline: Double? = nil, pause: @escaping @Sendable (_ attempt: Int) -> Duration = { .milliseconds(100 * $0) }) {
        self.attempts = max(1, attempts)
        self.deadline = deadline
        self.pause = pause
    }

    /// Runs `body` (given the 1-based attempt) until it returns, throws an error `isRetryable`
    /// rejects, or the attempts or the deadline run out; then rethrows the last error. `failed` sees
    /// every failed try, and whether another one follows (to log it).
    public func run<T, E: Error>(isRetryable: (E) -> Bool = { _ in true },
                                 failed: (_ error: E, _ attempt: Int, _ willRetry: Bool) -> Void = { _, _, _ in },
                                 _ body: (_ attempt: Int) throws(E) -> T) throws(E) -> T {
        var attempt = 0
        while true {
            attempt += 1
            let started = monotonicNow()
            do {
                return try body(attempt)
            } catch {
                let pause = self.pause(attempt), now = monotonicNow()
                let willRetry = attempt < attempts && isRetryable(error)
                    && deadline.map { now + Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18 + (now - started) < $0 } ?? true
                failed(error, attempt, willRetry)
                guard willRetry else { throw error }
                sleep(for: pause)
            }
        }
    }
}
