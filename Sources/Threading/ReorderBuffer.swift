/// Puts results that finish out of order back in order, holding at most `window` of them:
/// a producer more than `window` ahead of the consumer waits.
public final class ReorderBuffer<Element: Sendable>: Sendable {
    private struct State: Sendable {
        var pending = [Int: Element]()
        var next = 0
        var cancelled = false
    }

    private let monitor = Monitor(State())
    private let window: Int

    public init(window: Int) {
        precondition(window > 0, "a reorder buffer needs a window of at least one")
        self.window = window
    }

    /// Stores the result for `position`, waiting while it is too far ahead of the consumer.
    public func put(_ element: Element, at position: Int) {
        let window = self.window
        monitor.wait(until: { position < $0.next + window || $0.cancelled }) { state in
            guard !state.cancelled else { return }
            state.pending[position] = element
            monitor.broadcast()
        }
    }

    /// The result for `position` (which must be the next one), waiting for it; nil once cancelled.
    public func take(_ position: Int) -> Element? {
        monitor.wait(until: { $0.pending[position] != nil || $0.cancelled }) { state in
            guard !state.cancelled, let element = state.pending.removeValue(forKey: position) else { return nil }
            state.next = position + 1
            monitor.broadcast()
            return element
        }
    }

    public func cancel() {
        monitor.update { state in
            state.cancelled = true
            state.pending.removeAll()
        }
    }
}
