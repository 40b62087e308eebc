/// A blocking FIFO with a fixed capacity, for handing work between threads.
///
/// `push` blocks while the queue is full, `pop` while it is empty. `close()` lets consumers drain
/// what is queued and then get nil; `cancel()` drops what is queued and wakes everybody, for the
/// first error in a pipeline. Bounded on purpose: a fast producer waits instead of buffering a disk.
public final class BoundedQueue<Element: Sendable>: Sendable {
    private struct State: Sendable {
        var items: [Element] = []
        var head = 0
        var closed = false
        var cancelled = false
        var count: Int { items.count - head }
    }

    private let monitor = Monitor(State())
    public let capacity: Int

    public init(capacity: Int) {
        precondition(capacity > 0, "a bounded queue needs room for one element")
        self.capacity = capacity
    }

    /// Appends `element`, waiting for room. Returns false (dropping it) if the queue was closed or cancelled.
    @discardableResult
    public func push(_ element: Element) -> Bool {
        let capacity = self.capacity
        return monitor.wait(until: { $0.count < capacity || $0.closed || $0.cancelled }) { state in
            guard !state.closed && !state.cancelled else { return false }
            state.items.append(element)
            monitor.broadcast()
            return true
        }
    }

    /// Appends `element` if there is room, never waiting: for hints (readahead) that a FUSE thread
    /// must not block on. Returns whether it was queued.
    public func offer(_ element: Element) -> Bool {
        let capacity = self.capacity
        return monitor.update { state in
            guard !state.closed, !state.cancelled, state.count < capacity else { return false }
            state.items.append(element)
            return true
        }
    }

    /// The oldest element, waiting for one; nil once the queue is closed and drained, or cancelled.
    public func pop() -> Element? {
        return monitor.wait(until: { $0.count > 0 || $0.closed || $0.cancelled }) { state -> Element? in
            guard !state.cancelled, state.count > 0 else { return nil }
            let element = state.items[state.head]
            state.head += 1
            // Compact now and then, so the array does not grow with everything ever queued.
            if state.head >= 64 && state.head * 2 >= state.items.count {
                state.items.removeFirst(state.head)
                state.head = 0
            }
            monitor.broadcast()
            return element
        }
    }

    /// No more pushes; consumers drain what is queued.
    public func close() {
        monitor.update { $0.closed = true }
    }

    /// Stop now: queued elements are dropped and every waiter returns.
    public func cancel() {
        monitor.update { state in
            state.cancelled = true
            state.items = []
            state.head = 0
        }
    }
}
