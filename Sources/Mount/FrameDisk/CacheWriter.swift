import Cache
import ImgfsFormat
import Logging
import Synchronization
import Threading

/// Writes the frames a ``FrameDisk`` fetched into its ``FrameCache`` on a thread of its own, so
/// that the threads fetching them go back to the link at once.
///
/// Why: the data file is sparse, and on ext4 a direct write that allocates blocks holds the file's
/// inode lock exclusively until the device has the bytes. Four readahead threads writing their own
/// frames queued behind one another there: in a cold read of the 8 GiB corpus over a 1 Gbit/s link
/// they spent more than half their time off the CPU in `ext4_file_write_iter`, while their
/// connections stalled (BENCHMARKS.md, issue 14). One writer takes the same lock without anybody
/// waiting on it.
///
/// Until its write is done a frame is *pending*: readers are served its verified bytes from
/// memory (`pending`) and nobody fetches it again (`FrameDisk.isStored`). The write's order with
/// respect to durability is the cache's own (`FrameCache.stage`, then the committer), and a frame
/// is claimed across processes (`FrameCache.claim`) until it is in the data file, so another
/// mount of the image waits for it instead of fetching it too.
///
/// Bounded: `enqueue` waits while `capacity` frames are pending, so memory stays within
/// `capacity` frames however far the link outruns the disk.
final class CacheWriter: Sendable {
    let cache: FrameCache
    let logger: Logger
    private let queue: BoundedQueue<VerifiedFrame>
    private let pendingFrames = Mutex<[Int: VerifiedFrame]>([:])
    /// `pendingFrames.count`, for the read path's check of frames nothing is pending for.
    private let pendingCount = Atomic<Int>(0)
    private let thread = Mutex<WorkerThread?>(nil)
    /// Between `start` and `stop`; otherwise frames are written on the caller's thread.
    private let running = Atomic<Bool>(false)

    init(cache: FrameCache, capacity: Int, logger: Logger) {
        self.cache = cache
        self.logger = logger
        self.queue = BoundedQueue(capacity: max(1, capacity))
    }

    func start() {
        let worker = WorkerThread(name: "cache-write") { [self] in
            while let frame = queue.pop() { write(frame) }
        }
        thread.withLock { $0 = worker }
        running.store(true, ordering: .releasing)
    }

    /// Writes what is pending, then stops the thread; later frames are written by their callers.
    func stop() {
        running.store(false, ordering: .releasing)
        queue.close()
        let worker = thread.withLock { worker in
            defer { worker = nil }
            return worker
        }
        worker?.join()
        // Queued while the thread was never started or had just stopped: written all the same.
        while let frame = queue.pop() { write(frame) }
    }

    /// Queues a verified frame for the data file, waiting while the queue is full; the frame's
    /// cross-process claim, if this process holds it, is released once it is written. Without a
    /// writer thread (stopped, or never started) the frame is written on the caller's thread.
    func enqueue(_ frame: VerifiedFrame) {
        guard running.load(ordering: .acquiring) else { return write(frame) }
        let isNew = pendingFrames.withLock { pending in pending.updateValue(frame, forKey: frame.index) == nil }
        if isNew { pendingCount.add(1, ordering: .releasing) }
        if !queue.push(frame) { write(frame) }
    }

    /// The verified bytes of frame `index` if its write is still pending.
    func pending(_ index: Int) -> VerifiedFrame? {
        guard pendingCount.load(ordering: .acquiring) > 0 else { return nil }
        return pendingFrames.withLock { $0[index] }
    }

    func isPending(_ index: Int) -> Bool { pending(index) != nil }

    private func write(_ frame: VerifiedFrame) {
        do { try cache.stage(frame) } catch {
            // A cache that cannot be written (disk full) costs refetches later, not this read:
            // the frame was served from memory already.
            logger.warning("could not store a frame in the cache", metadata: ["frame": "\(frame.index)", "error": "\(error)"])
        }
        // Resident (or failed) before it stops being pending: a reader that misses it here finds
        // it in the cache's bitmap, never neither.
        let removed = pendingFrames.withLock { $0.removeValue(forKey: frame.index) != nil }
        if removed { pendingCount.subtract(1, ordering: .releasing) }
        cache.releaseClaim(frame.index)
    }
}
