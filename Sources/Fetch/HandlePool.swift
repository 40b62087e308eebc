import Synchronization

/// A bounded stack of idle libcurl handles. A request checks one out, uses it on its own
/// thread and returns it; returning keeps the handle's connections open for the next request.
/// More requests than `maxIdle` may run at once (each gets a fresh handle); the surplus is
/// freed on return, so memory and open connections stay bounded when the burst is over.
final class HandlePool: Sendable {
    private let idle = Mutex<[CurlEasy]>([])
    private let maxIdle: Int

    init(maxIdle: Int) { self.maxIdle = maxIdle }

    /// nil only when libcurl cannot make a handle (out of memory, failed global init).
    func withHandle<R>(_ body: (CurlEasy) -> R) -> R? {
        let reused = idle.withLock { $0.popLast() }
        guard let handle = reused ?? CurlEasy() else { return nil }
        let result = body(handle)
        idle.withLock { handles in
            if handles.count < maxIdle { handles.append(handle) }
        }
        return result
    }
}
