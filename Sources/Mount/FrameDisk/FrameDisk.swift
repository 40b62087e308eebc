import Cache
import Glibc
import ImgfsFormat
import Logging
import Synchronization
import Threading
import Verity

/// The logical disk of a mounted image: serves any byte range, fetching, verifying and caching
/// the frames it needs. Safe to call from many FUSE threads at once.
///
/// A read of `[offset, offset + size)`:
/// 1. holes are served as zeros, never fetched;
/// 2. frames whose bit is set in the `FrameCache` are read from it, and fetched frames the
///    `CacheWriter` has not written yet from memory;
/// 3. the rest are claimed in the single-flight table (`SingleFlight`); frames another reader is fetching
///    are waited for; owned frames are copied from another image's cache entry if one has the same
///    digest, else fetched in coalesced range requests, each member decompressed to its exact size
///    and verified (`VerifiedFrame.verify`) before it is stored or served.
///
/// Verification or fetch failures are retried `fetchAttempts` times per frame, then the read fails;
/// other frames are unaffected.
public final class FrameDisk: Sendable {
    public let index: FrameIndex
    public let cache: FrameCache
    public let statistics: MountStatistics
    var geometry: DiskGeometry { index.geometry }
    let source: any BlobSource
    let shared: SharedFrameLocator?
    let options: DiskOptions
    let logger: Logger
    /// Frames in flight: one fetch per frame however many readers want it.
    let flights = SingleFlight<Int, VerifiedFrame, MountError>()
    /// Sees sequential readers in data-frame space (see `dataFrames`).
    let streams: StreamDetector
    /// The frames that are not holes, in disk order. Readahead counts its window in these, so that
    /// a reader crossing a long run of holes (which it reads at memory speed) finds the data after
    /// it already fetched, instead of a window spent on holes and a stream that looks broken.
    let dataFrames: [Int]
    let readaheadJobs: BoundedQueue<[Int]>
    /// The mean compressed size of a data frame: what one frame of readahead costs the link.
    let meanFrameBytes: Double
    let readaheadLedger = ReadaheadLedger()
    /// Frames per readahead job (8 units, `DiskOptions.readaheadUnitBytes`): a reader who
    /// catches up with readahead waits for one such batch, not for the whole window.
    let readaheadBatchFrames: Int
    let readaheadThreads = Mutex<[WorkerThread]>([])
    let verifierThread = Mutex<WorkerThread?>(nil)
    /// Frames whose fetch failed on every attempt, until when a demand read of them fails at once
    /// with the same error. The kernel retries a failed read page by page; without this, a
    /// registry that stalls mid-body would hold each of those retries for another full timeout.
    let recentFailures = Mutex<[Int: (until: Double, error: MountError)]>([:])
    let committer: CacheCommitter
    /// Writes fetched frames into the cache off the fetching threads; until then they are pending.
    let writer: CacheWriter
    let activity = ReadActivity()
    let stopping = Atomic<Bool>(false)

    /// Why a batch of frames is wanted: readers wait, background work does not.
    enum Purpose: Sendable { case demand, readahead, profile, prefetch }

    public init(index: FrameIndex, cache: FrameCache, source: any BlobSource, shared: SharedFrameLocator?,
                statistics: MountStatistics = MountStatistics(), options: DiskOptions = DiskOptions(), logger: Logger) {
        self.index = index
        self.cache = cache
        self.source = source
        self.shared = shared
        self.statistics = statistics
        self.options = options
        self.logger = logger
        self.dataFrames = index.frames.indices.filter { !index.frames[$0].isHole }
        let framesPerUnit = max(1, options.readaheadUnitBytes / index.geometry.frameSize)
        self.streams = StreamDetector(frameCount: dataFrames.count, maxWindow: max(1, options.readaheadMaxFrames * framesPerUnit),
                                      framesPerUnit: framesPerUnit)
        self.readaheadBatchFrames = 8 * framesPerUnit
        let located = dataFrames.compactMap { index.frames[$0].location?.compressedLength }.filter { $0 > 0 }
        self.meanFrameBytes = located.isEmpty ? Double(index.geometry.frameSize)
            : located.reduce(0.0) { $0 + Double($1) } / Double(located.count)
        // A few batches of readahead at most: when the fetchers are behind, new hints are dropped
        // rather than queued, since the reader will have asked for those frames itself by then.
        self.readaheadJobs = BoundedQueue(capacity: 8)
        self.committer = CacheCommitter(cache: cache, logger: logger)
        self.writer = CacheWriter(cache: cache, capacity: options.pendingWriteBytes / index.geometry.frameSize, logger: logger)
    }

    /// Starts the cache's background commits, the cached-frame checker and the readahead threads.
    public func start() {
        committer.start()
        writer.start()
        startVerifier()
        guard options.readaheadThreads > 0 else { return }
        let threads = (0..<options.readaheadThreads).map { i in
            WorkerThread(name: "readahead-\(i)") { [self] in
                while let frames = readaheadJobs.pop() {
                    // Cached frames ahead of a sequential reader are checked here, off the reader's
                    // path, so that its reads of them are spliced from the cache file at once.
                    for frame in frames where cache.contains(frame) && !cache.isVerified(frame) { checkCached(frame) }
                    var fetched: [Int] = []
                    do { fetched = Array(try obtain(frames, purpose: .readahead).keys) } catch {
                        logger.debug("readahead failed", metadata: ["frames": "\(frames.first ?? -1)...", "error": "\(error)"])
                    }
                    let (hits, unread) = readaheadLedger.finished(frames, fetched: fetched)
                    statistics.readaheadHits.add(Int64(hits), ordering: .relaxed)
                    statistics.readaheadUnread.add(Int64(unread), ordering: .relaxed)
                }
            }
        }
        readaheadThreads.withLock { $0 = threads }
    }

    /// Stops background work and waits for it. Readers that are still waiting get errors.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        readaheadJobs.cancel()
        let threads = readaheadThreads.withLock { threads in
            defer { threads = [] }
            return threads
        }
        for thread in threads { thread.join() }
        verifierThread.withLock { thread in
            thread?.join()
            thread = nil
        }
        writer.stop()
        committer.stop()
    }

    public var isStopping: Bool { stopping.load(ordering: .relaxed) }

    // MARK: - Reading

    /// Fills `buffer` with disk bytes from `offset`; returns how many (fewer only at the end of the disk).
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(MountError) -> Int {
        guard offset < geometry.diskSize, buffer.count > 0 else { return 0 }
        let length = Int(min(UInt64(buffer.count), geometry.diskSize - offset))
        let frames = geometry.frames(covering: offset, length: length)
        if !frames.contains(where: { !index.frames[$0].isHole }) {
            // All hole (a writable overlay's reads of its base come here, not to `localPieces`):
            // zeros, without the cache's lock, readahead or flights.
            UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]).initializeMemory(as: UInt8.self, repeating: 0)
            statistics.cacheHits.add(Int64(frames.count), ordering: .relaxed)
            statistics.bytesServed.add(Int64(length), ordering: .relaxed)
            return length
        }
        activity.note(frames, now: monotonicNow())
        noteReadaheadHits(frames)
        scheduleReadahead(after: frames)

        // Cached frames this daemon has not served yet are checked against their digests first; one
        // that fails is dropped from the cache and so joins the missing frames below.
        for frame in cache.unverified(in: frames) where !index.frames[frame].isHole { checkCached(frame) }
        // Verified bytes in memory: fetched, waited for, or pending for the cache writer. Pending
        // bytes are kept here when seen, since a write that fails (disk full) drops them.
        var inMemory: [Int: VerifiedFrame] = [:]
        var missing = notInCache(frames, collecting: &inMemory)
        statistics.cacheHits.add(Int64(frames.count - missing.count), ordering: .relaxed)
        statistics.cacheMisses.add(Int64(missing.count), ordering: .relaxed)

        do throws(MountError) {
            if !missing.isEmpty {
                let started = monotonicNow()
                defer { statistics.countReadWait(seconds: monotonicNow() - started) }
                // `obtain` leaves out frames it found stored meanwhile; one whose write then
                // failed is neither pending nor cached when looked for again, and is fetched.
                for _ in 0..<options.fetchAttempts where !missing.isEmpty {
                    inMemory.merge(try obtain(missing, purpose: .demand)) { first, _ in first }
                    missing = notInCache(missing, collecting: &inMemory)
                }
                if let frame = missing.first { throw MountError.cache(.frameNotPresent(frame: frame, path: cache.dataFilePath)) }
            }
            var done = 0
            var position = offset
            for frame in frames {
                let within = Int(position - geometry.offset(ofFrame: frame))
                let count = min(geometry.length(ofFrame: frame) - within, length - done)
                let destination = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count])
                if index.frames[frame].isHole {
                    destination.initializeMemory(as: UInt8.self, repeating: 0)
                } else if let verified = inMemory[frame] {
                    verified.bytes.withUnsafeBytes { source in
                        destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[within..<within + count]))
                    }
                } else {
                    let n: Int
                    do { n = try cache.read(frame: frame, offset: within, into: destination) } catch { throw MountError.cache(error) }
                    guard n == count else { throw MountError.cache(.frameNotPresent(frame: frame, path: cache.dataFilePath)) }
                }
                done += count
                position += UInt64(count)
            }
            statistics.bytesServed.add(Int64(done), ordering: .relaxed)
            return done
        } catch {
            // Logged once, with the request it failed, where FUSE answers the kernel.
            statistics.readErrors.add(1, ordering: .relaxed)
            throw error
        }
    }

    /// Checks a cached frame's bytes once per daemon (`FrameCache.verify`). A frame that fails is
    /// dropped, counted and logged; the caller fetches it again. A check that cannot read the cache
    /// is logged and leaves the frame unverified, so that the read reports the error.
    func checkCached(_ frame: Int) {
        do {
            if case .dropped(let actual) = try cache.verify(frame) {
                statistics.cacheVerificationFailures.add(1, ordering: .relaxed)
                logger.warning("cached frame was corrupt; fetching it again", metadata: [
                    "frame": "\(frame)", "expected": "\(index.frames[frame].digest)", "actual": "\(actual)"])
            }
        } catch {
            logger.error("could not check a cached frame", metadata: ["frame": "\(frame)", "error": "\(error)"])
        }
    }

    /// The data frames of `frames` that are neither in the cache nor in `inMemory`; frames pending
    /// for the cache writer are added to `inMemory`.
    func notInCache(_ frames: some Sequence<Int>, collecting inMemory: inout [Int: VerifiedFrame]) -> [Int] {
        var missing: [Int] = []
        for frame in frames where !index.frames[frame].isHole && inMemory[frame] == nil {
            if let pending = writer.pending(frame) {
                inMemory[frame] = pending
            } else if !cache.contains(frame) {
                missing.append(frame)
            }
        }
        return missing
    }

    /// Whether frame `frame`'s verified bytes are here without a fetch: in the cache, or fetched
    /// and waiting for the cache writer.
    func isStored(_ frame: Int) -> Bool { writer.isPending(frame) || cache.contains(frame) }

    /// Makes `frames` present (fetching those that are missing) without reading them; for the
    /// profile and background prefetch. Does not wait for frames other threads are fetching.
    func prefetch(_ frames: [Int], purpose: Purpose) throws(MountError) {
        _ = try obtain(frames.filter { !index.frames[$0].isHole }, purpose: purpose)
    }

    /// One thread at the lowest CPU priority checks every cached frame once, in disk order, from
    /// the start of the mount: what it has checked by the time a reader gets there is spliced from
    /// the cache file straight away instead of being hashed on the reader's path. A remounted,
    /// fully cached disk thus pays its one SHA-256 per frame mostly on a core the reader does not use.
    func startVerifier() {
        guard !cache.unverified(in: 0..<index.frames.count).isEmpty else { return }
        let thread = WorkerThread(name: "cache-verify") { [self] in
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            for frame in 0..<index.frames.count {
                if isStopping { return }
                if !index.frames[frame].isHole, cache.contains(frame), !cache.isVerified(frame) { checkCached(frame) }
            }
        }
        verifierThread.withLock { $0 = thread }
    }

    // MARK: - Readahead

    func scheduleReadahead(after frames: Range<Int>) {
        guard options.readaheadThreads > 0,
              let ahead = streams.note(dataRank(of: frames.lowerBound)..<dataRank(of: frames.upperBound),
                                       limit: readaheadLimit) else { return }
        var batch: [Int] = []
        // Missing frames are fetched, and cached ones this daemon has not checked yet are checked.
        for frame in ahead.map({ dataFrames[$0] }) where !cache.isVerified(frame) && !writer.isPending(frame) {
            batch.append(frame)
            if batch.count == readaheadBatchFrames {
                offerReadahead(batch)
                batch = []
            }
        }
        if !batch.isEmpty { offerReadahead(batch) }
    }

    private func offerReadahead(_ batch: [Int]) {
        readaheadLedger.scheduled(batch)
        if !readaheadJobs.offer(batch) { _ = readaheadLedger.finished(batch, fetched: []) }
    }

    /// The most frames readahead keeps ahead of a reader: what the link carries in
    /// `readaheadHorizon` seconds, at least one frame (before the mount's requests have measured
    /// the link, at the rate of its fetch of the frame index, `LinkEstimate.seed`). Unlimited
    /// with neither, and on a link fast enough to carry the whole window in that time (loopback,
    /// a LAN), where whole-disk reads need all of it.
    var readaheadLimit: Int {
        StreamDetector.limit(bytesPerSecond: statistics.link.bytesPerSecond, horizon: options.readaheadHorizon,
                             frameBytes: meanFrameBytes, maxWindow: streams.maxWindow)
    }

    /// Counts frames of a read that readahead fetched for it.
    func noteReadaheadHits(_ frames: Range<Int>) {
        let hits = readaheadLedger.read(frames)
        guard hits > 0 else { return }
        statistics.readaheadUnread.subtract(Int64(hits), ordering: .relaxed)
        statistics.readaheadHits.add(Int64(hits), ordering: .relaxed)
    }

    /// How many data frames lie before `frame` (`dataFrames`' insertion point): a hole maps to the
    /// data frame after it.
    func dataRank(of frame: Int) -> Int {
        var low = 0
        var high = dataFrames.count
        while low < high {
            let middle = (low + high) / 2
            if dataFrames[middle] < frame { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
