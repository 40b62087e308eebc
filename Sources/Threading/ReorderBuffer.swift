/// Puts results that finish out of order back in order, holding at most `window` of them:
/// a producer more than `window` ahead of the consumer waits.
public final class ReorderBuffer<Element: Sendable>: @unchecked Sendable {
    // Guarded by `monitor`.
    private var pending = [Int: Element]()
    private var next = 0
    private var cancelled = false
    private let monitor = Monitor()
    private let window: Int

    public init(window: Int) {
        precondition(window > 0, "a reorder buffer needs a window of at least one")
        self.window = window
    }

    /// Stores the result for `position`, waiting while it is too far ahead of the consumer.
    public func put(_ element: Element, at position: Int) {
        monitor.wait(until: { position < next + window || cancelled }) {
            guard !cancelled else { return }
            pending[position] = element
            monitor.broadcast()
        }
    }

    /// The result for `position` (which must be the next one), waiting for it; nil once cancelled.
    public func take(_ position: Int) -> Element? {
        monitor.wait(until: { pending[position] != nil || cancelled }) {
            guard !cancelled, let element = pending.removeValue(forKey: position) else { return nil }
            next = position + 1
            monitor.broadcast()
            return element
        }
    }

    public func cancel() {
        monitor.withLock {
            cancelled = true
            pending.removeAll()
            monitor.broadcast()
        }
    }
}
