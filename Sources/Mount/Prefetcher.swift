import Glibc
import ImageFormat
import Logging
import Synchronization
import Threading

/// Background prefetch of a whole disk after mount, at the lowest priority: it pauses while
/// readers are waiting for the network, stays under a bandwidth limit (token bucket), and goes
/// through the same single-flight path as reads, so a reader that wants a frame being
/// prefetched waits for that fetch instead of starting another.
///
/// Order: the boot profile's frames first (if the image has one), then the disk from the start.
public final class Prefetcher: Sendable {
    let disk: LazyDisk
    let profile: [Int]
    let rate: Int64?
    let logger: Logger
    /// Compressed bytes per batch: small enough that a reader behind a prefetch batch waits little.
    let batchBytes: Int64 = 4 * 1024 * 1024
    let stopped = Atomic<Bool>(false)
    let thread = Mutex<WorkerThread?>(nil)

    /// - Parameter rate: bytes per second of compressed data, or nil for no limit.
    public init(disk: LazyDisk, profile: [Int], rate: Int64?, logger: Logger) {
        self.disk = disk
        self.profile = profile
        self.rate = rate
        self.logger = logger
    }

    public func start() {
        let worker = WorkerThread(name: "prefetch") { [self] in self.run() }
        thread.withLock { $0 = worker }
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        let worker = thread.withLock { value -> WorkerThread? in
            defer { value = nil }
            return value
        }
        worker?.join()
    }

    var isStopped: Bool { stopped.load(ordering: .relaxed) || disk.isStopping }

    func run() {
        // The lowest CPU priority for this thread only (Linux keeps nice values per thread): the
        // frames it decompresses and verifies must not slow the reads, or the VM, that the
        // mount is for. Best effort; an unprivileged daemon may only lower it, which this does.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        let index = disk.index
        let start = monotonicNow()
        var bucket = rate.map { TokenBucket(rate: Double(max(1, $0)), burst: Double(batchBytes), now: start) }
        var failures = 0
        let order = profile + Array(0..<index.frames.count)
        var cursor = 0
        while cursor < order.count, !isStopped {
            // Collect the next batch of missing frames.
            var batch: [Int] = []
            var bytes: Int64 = 0
            while cursor < order.count, batch.count < 64, bytes < batchBytes {
                let frame = order[cursor]
                // Profile frames go out in profile order: a batch is fetched in disk order, so it
                // holds only an ascending run of them, and never mixes them with the sequential pass.
                if let previous = batch.last, cursor <= profile.count, frame != previous + 1 { break }
                cursor += 1
                guard let location = index.frames[frame].location, !index.frames[frame].isHole,
                      !disk.cache.contains(frame), !disk.flights.isInFlight(frame) else { continue }
                batch.append(frame)
                bytes += Int64(location.compressedLength)
            }
            guard !batch.isEmpty else { continue }
            // Readers first: wait while any of them waits for the network.
            while disk.statistics.demandRequestsInFlight.load(ordering: .relaxed) > 0, !isStopped { usleep(20_000) }
            if var current = bucket {
                var delay = current.take(Double(bytes), now: monotonicNow())
                bucket = current
                while delay > 0, !isStopped {
                    let slice = min(delay, 0.1)
                    usleep(UInt32(slice * 1e6))
                    delay -= slice
                }
            }
            guard !isStopped else { break }
            do {
                try disk.prefetch(batch)
                failures = 0
            } catch {
                failures += 1
                logger.warning("prefetch batch failed", metadata: ["firstFrame": "\(batch[0])", "error": "\(error)"])
                // A registry that keeps failing is not hammered: back off, and give up after a run
                // of failures (one bad layer of 512 frames is 8 batches, and does not stop it).
                if failures >= 20 {
                    logger.warning("prefetch stopped after repeated failures; frames are still fetched on demand")
                    return
                }
                usleep(UInt32(min(5.0, 0.25 * Double(failures)) * 1e6))
            }
        }
        if !isStopped {
            logger.info("prefetch finished", metadata: [
                "seconds": "\(Int(monotonicNow() - start))", "present": "\(disk.cache.presentCount)", "frames": "\(index.frames.count)"])
        }
    }
}

/// A token bucket: `take` says how long to wait before sending `bytes` at `rate` bytes/s.
struct TokenBucket {
    let rate: Double
    let burst: Double
    var tokens: Double
    var last: Double

    init(rate: Double, burst: Double, now: Double) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now
    }

    /// Spends `bytes` tokens (going into debt if need be) and returns the seconds to wait.
    mutating func take(_ bytes: Double, now: Double) -> Double {
        tokens = min(burst, tokens + (now - last) * rate)
        last = now
        tokens -= bytes
        return tokens >= 0 ? 0 : -tokens / rate
    }
}
