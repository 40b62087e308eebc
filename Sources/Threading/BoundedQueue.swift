import Glibc

/// A blocking FIFO with a fixed capacity, for handing work between threads.
///
/// `push` blocks while the queue is full, `pop` while it is empty. `close()` lets consumers drain
/// what is queued and then get nil; `cancel()` drops what is queued and wakes everybody, for the
/// first error in a pipeline. Bounded on purpose: a fast producer waits instead of buffering a disk.
public final class BoundedQueue<Element: Sendable>: @unchecked Sendable {
    // All fields below are guarded by `lock`; the class is Sendable because of that discipline.
    private var items: [Element?]
    private var head = 0
    private var count = 0
    private var closed = false
    private var cancelled = false
    private let lock = PThreadMutex()
    private let notEmpty: PThreadCondition
    private let notFull: PThreadCondition

    public let capacity: Int

    public init(capacity: Int) {
        precondition(capacity > 0, "a bounded queue needs room for one element")
        self.capacity = capacity
        self.items = Array(repeating: nil, count: capacity)
        self.notEmpty = PThreadCondition()
        self.notFull = PThreadCondition()
    }

    /// Appends `element`, waiting for room. Returns false (dropping it) if the queue was closed or cancelled.
    @discardableResult
    public func push(_ element: Element) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        while count == capacity && !closed && !cancelled { notFull.wait(lock) }
        guard !closed && !cancelled else { return false }
        items[(head + count) % capacity] = element
        count += 1
        notEmpty.signal()
        return true
    }

    /// The oldest element, waiting for one; nil once the queue is closed and drained, or cancelled.
    public func pop() -> Element? {
        lock.lock()
        defer { lock.unlock() }
        while count == 0 && !closed && !cancelled { notEmpty.wait(lock) }
        guard !cancelled, count > 0 else { return nil }
        let element = items[head]
        items[head] = nil
        head = (head + 1) % capacity
        count -= 1
        notFull.signal()
        return element
    }

    /// No more pushes; consumers drain what is queued.
    public func close() {
        lock.lock()
        closed = true
        notEmpty.broadcast()
        notFull.broadcast()
        lock.unlock()
    }

    /// Stop now: queued elements are dropped and every waiter returns.
    public func cancel() {
        lock.lock()
        cancelled = true
        for i in items.indices { items[i] = nil }
        count = 0
        notEmpty.broadcast()
        notFull.broadcast()
        lock.unlock()
    }
}
