import Cache
import Logging
import Threading

/// Makes the frames a ``LazyDisk`` stages in its ``FrameCache`` durable, in the background, with
/// one group commit (two `fdatasync`s) at most every `interval` seconds.
///
/// Readers never wait for the device this way: they wait for the `pwrite` of their frame, and a
/// busy cold read commits tens of frames per sync instead of syncing after every range request.
/// What a crash can lose is bounded by `interval`: those frames are fetched again, and none of
/// them is trusted without its bit (see `FrameCache.commitStaged`).
final class CacheCommitter: @unchecked Sendable {
    let cache: FrameCache
    let interval: Double
    let logger: Logger
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var stopped = false
    private var thread: WorkerThread?

    init(cache: FrameCache, interval: Double = 0.1, logger: Logger) {
        self.cache = cache
        self.interval = interval
        self.logger = logger
    }

    func start() {
        thread = WorkerThread(name: "cache-commit") { [self] in
            while !monitor.wait(until: { stopped }, timeout: interval, then: { $0 }) {
                commit()
            }
        }
    }

    /// Stops the thread after a last commit. Frames staged later are committed by `FrameCache.close`.
    func stop() {
        monitor.withLock {
            stopped = true
            monitor.broadcast()
        }
        thread?.join()
        thread = nil
        commit()
    }

    private func commit() {
        guard cache.hasStaged else { return }
        do { try cache.commitStaged() } catch {
            logger.warning("could not make cached frames durable; they will be fetched again", metadata: ["error": "\(error)"])
        }
    }
}
