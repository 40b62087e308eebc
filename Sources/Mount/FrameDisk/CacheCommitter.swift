import Cache
import Logging
import Threading

/// Makes the frames a ``FrameDisk`` stages in its ``FrameCache`` durable, in the background, with
/// one group commit (two `fdatasync`s) at most every `interval` seconds.
///
/// Readers never wait for the device this way (nor for the `pwrite` of their frame, which the
/// `CacheWriter` does), and a busy cold read commits tens of frames per sync instead of syncing
/// after every range request.
/// What a crash can lose is bounded by `interval`: those frames are fetched again, and none of
/// them is trusted without its bit (see `FrameCache.commitStaged`).
final class CacheCommitter: Sendable {
    let cache: FrameCache
    let interval: Double
    let logger: Logger
    private let thread = BackgroundThread(name: "cache-commit")

    init(cache: FrameCache, interval: Double = 0.1, logger: Logger) {
        self.cache = cache
        self.interval = interval
        self.logger = logger
    }

    func start() {
        thread.startRepeating(every: interval) { [self] in commit() }
    }

    /// Stops the thread after a last commit. Frames staged later are committed by `FrameCache.close`.
    func stop() {
        thread.stop()
        commit()
    }

    private func commit() {
        guard cache.hasStaged else { return }
        do { try cache.commitStaged() } catch {
            logger.warning("could not make cached frames durable; they will be fetched again", metadata: ["error": "\(error)"])
        }
    }
}
