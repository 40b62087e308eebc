import Glibc

/// A joinable OS thread. imgfs uses plain threads where blocking C libraries (libcurl, libfuse,
/// compression) want them, instead of blocking the Swift concurrency pool.
public final class WorkerThread: @unchecked Sendable {
    private var thread: pthread_t
    private var joined = false

    /// Starts `body` on a new thread; `name` is kept for diagnostics.
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadBody(name: name, body: body))
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { context in
            let body = Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue()
            body.body()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            fatalError("pthread_create failed: \(String(cString: strerror(result)))")
        }
        self.thread = thread
    }

    /// Waits for the thread to finish. Call once.
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }

    /// Runs `count` copies of `body(i)` on their own threads and waits for all of them.
    public static func run(count: Int, name: String, _ body: @escaping @Sendable (Int) -> Void) {
        let threads = (0..<count).map { i in WorkerThread(name: "\(name)-\(i)") { body(i) } }
        for thread in threads { thread.join() }
    }
}

private final class ThreadBody {
    let name: String
    let body: @Sendable () -> Void
    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}
