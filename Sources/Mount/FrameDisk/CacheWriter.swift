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
/// Bounded: `enqueue` waits while `capacity` frames are queued, so pending frames number at most
/// `capacity`, plus the one being written, plus one for each thread waiting for room, however far
/// the link outruns the disk. A frame a reader waits for does not wait for room: it is written on
/// the reader's thread instead, as before there was a writer, rather than behind the queue.
final class CacheWriter: Sendable {
    let cache: FrameCache
    let logger: Logger
    /// `cache.stage`, except in tests, which stand in a disk that fails or holds writes.
    private let store: @Sendable (VerifiedFrame) throws -> Void
    private let queue: BoundedQueue<VerifiedFrame>
    private let pendingFrames = Mutex<[Int: VerifiedFrame]>([:])
    /// `pendingFrames.count`, for the read path's check of frames nothing is pending for.
    private let pendingCount = Atomic<Int>(0)
    private let thread = Mutex<WorkerThread?>(nil)
    /// Between `start` and `stop`; otherwise frames are written on the caller's thread.
    private let running = Atomic<Bool>(false)

    init(cache: FrameCache, capacity: Int, logger: Logger,
         store: (@Sendable (VerifiedFrame) throws -> Void)? = nil) {
        self.cache = cache
        self.logger = logger
        self.store = store ?? { [cache] frame in try cache.stage(frame) }
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
        // The thread empties the closed queue before it ends; a producer whose push comes after
        // the close writes its frame itself.
        worker?.join()
    }

    /// Queues a verified frame for the data file; the frame's cross-process claim, if this process
    /// holds it, is released once it is written. A full queue makes the caller wait for room,
    /// unless `waitForRoom` is false (a reader waits for this frame): then the caller writes it.
    /// Without a writer thread (stopped, or never started) the frame is written by the caller.
    func enqueue(_ frame: VerifiedFrame, waitForRoom: Bool = true) {
        guard running.load(ordering: .acquiring) else { return write(frame) }
        let isNew = pendingFrames.withLock { pending in pending.updateValue(frame, forKey: frame.index) == nil }
        if isNew { pendingCount.add(1, ordering: .releasing) }
        let queued = waitForRoom ? queue.push(frame) : queue.offer(frame)
        if !queued { write(frame) }
    }

    /// The verified bytes of frame `index` if its write is still pending.
    func pending(_ index: Int) -> VerifiedFrame? {
        guard pendingCount.load(ordering: .acquiring) > 0 else { return nil }
        return pendingFrames.withLock { $0[index] }
    }

    func isPending(_ index: Int) -> Bool { pending(index) != nil }

    private func write(_ frame: VerifiedFrame) {
        do { try store(frame) } catch {
            // A cache that cannot be written (disk full) costs refetches later: a reader that
            // found the frame pending has its bytes already (`FrameDisk.read`), a later one
            // finds it neither pending nor cached and fetches it again.
            logger.warning("could not store a frame in the cache", metadata: ["frame": "\(frame.index)", "error": "\(error)"])
        }
        // The claim goes before the frame stops being pending: released later, it could be the
        // claim of this process's next fetch of a frame whose write failed.
        cache.releaseClaim(frame.index)
        // Resident (or failed) before it stops being pending: a reader that misses it here finds
        // it in the cache's bitmap, or fetches it if its write failed.
        let removed = pendingFrames.withLock { $0.removeValue(forKey: frame.index) != nil }
        if removed { pendingCount.subtract(1, ordering: .releasing) }
    }
}
