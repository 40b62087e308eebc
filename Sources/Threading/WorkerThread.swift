import Glibc
import Synchronization

/// A joinable OS thread. imgfs uses plain threads where blocking C libraries (libcurl, libfuse,
/// compression) want them, instead of blocking the Swift concurrency pool.
public final class WorkerThread: Sendable {
    private let thread: pthread_t
    private let joined = Atomic<Bool>(false)

    /// Starts `body` on a new thread named `name` (what `top -H` and `/proc/PID/task/*/comm` show;
    /// the kernel keeps its first 15 bytes).
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadBody(name: name, body: body))
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { context in
            let body = Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue()
            _ = setThreadName(pthread_self(), body.shortName)
            body.body()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            fatalError("pthread_create failed: \(String(cString: strerror(result)))")
        }
        self.thread = thread
    }

    /// Waits for the thread to finish. Later calls return at once.
    public func join() {
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pthread_join(thread, nil)
    }

    /// Runs `count` copies of `body(i)` on their own threads and waits for all of them.
    public static func run(count: Int, name: String, _ body: @escaping @Sendable (Int) -> Void) {
        let threads = (0..<count).map { i in WorkerThread(name: "\(name)-\(i)") { body(i) } }
        for thread in threads { thread.join() }
    }
}

private final class ThreadBody {
    let shortName: String
    let body: @Sendable () -> Void
    init(name: String, body: @escaping @Sendable () -> Void) {
        // pthread_setname_np fails with ERANGE on names over 15 bytes; keep the start, whole characters.
        var short = ""
        for character in name where short.utf8.count + character.utf8.count <= 15 { short.append(character) }
        self.shortName = short
        self.body = body
    }
}

// glibc has it, but Glibc's module map hides it behind _GNU_SOURCE.
@_silgen_name("pthread_setname_np")
private func setThreadName(_ thread: pthread_t, _ name: UnsafePointer<CChar>) -> Int32
