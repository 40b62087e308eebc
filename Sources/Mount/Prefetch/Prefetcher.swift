import Glibc
import ImgfsFormat
import Logging
import Threading

/// A mount's prefetch, in two phases on one thread:
/// 1. the boot profile's frames (if the image has one), at normal priority and several requests
///    at once (`ProfileFetch`);
/// 2. unless `background` is off (`--no-prefetch`), the whole disk from the start, at the lowest
///    priority and under a bandwidth limit (token bucket). It waits for the boot: until the
///    mount's users have read most of the profile (or `profileGrace` has passed). Then it yields
///    to them: while they have read within `quietSeconds`, it sends one batch per `busyInterval`
///    at most, and none while a reader waits for the network. On a machine whose cores the VM
///    needs, background decompression during the boot slowed it by a fifth (BENCHMARKS.md).
///
/// Both go through the same single-flight path as reads, so a reader that wants a frame being
/// prefetched waits for that fetch instead of starting another.
public final class Prefetcher: Sendable {
    let disk: FrameDisk
    let profile: [Int]
    let background: Bool
    let rate: Int64?
    let profileWorkers: Int
    let logger: Logger
    /// Compressed bytes per batch: small enough that a reader behind a prefetch batch waits little.
    let batchBytes: Int64 = 4 * 1024 * 1024
    let quietSeconds = 1.0
    let busyInterval = 1.0
    let profileGrace = 120.0
    let thread = BackgroundThread(name: "prefetch")

    /// - Parameters:
    ///   - background: whether the whole-disk pass follows the profile.
    ///   - rate: bytes per second of compressed data for the whole-disk pass, or nil for no limit.
    ///   - profileWorkers: range requests in flight at once for the profile.
    public init(disk: FrameDisk, profile: [Int], background: Bool = true, rate: Int64?, profileWorkers: Int = 3, logger: Logger) {
        self.disk = disk
        self.profile = profile
        self.background = background
        self.rate = rate
        self.profileWorkers = profileWorkers
        self.logger = logger
        disk.activity.watch(profile: profile.filter { !disk.index.frames[$0].isHole })
    }

    public func start() {
        thread.start { [self] in self.run() }
    }

    public func stop() {
        thread.stop()
    }

    var isStopped: Bool { thread.isStopping || disk.isStopping }

    func run() {
        ProfileFetch(disk: disk, profile: profile, workers: profileWorkers, logger: logger).run { [self] in isStopped }
        if background { runBackgroundPass() }
    }

    func runBackgroundPass() {
        // The lowest CPU priority for this thread only (Linux keeps nice values per thread): the
        // frames it decompresses and verifies must not slow the reads, or the VM, that the
        // mount is for. Best effort; an unprivileged daemon may only lower it, which this does.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        let index = disk.index
        let start = monotonicNow()
        var bucket = rate.map { TokenBucket(rate: Double(max(1, $0)), burst: Double(batchBytes), now: start) }
        var failures = 0
        var lastBatch = -Double.infinity
        var frame = 0
        while frame < index.frames.count, !isStopped {
            // Collect the next batch of missing frames.
            var batch: [Int] = []
            var bytes: Int64 = 0
            while frame < index.frames.count, batch.count < 64, bytes < batchBytes {
                defer { frame += 1 }
                guard let location = index.frames[frame].location, !index.frames[frame].isHole,
                      !disk.cache.contains(frame), !disk.flights.isRunning(frame) else { continue }
                batch.append(frame)
                bytes += Int64(location.compressedLength)
            }
            guard !batch.isEmpty else { continue }
            waitForTurn(start: start, lastBatch: lastBatch)
            if var current = bucket {
                let delay = current.take(Double(bytes), now: monotonicNow())
                bucket = current
                if delay > 0, thread.pause(delay) { break }
            }
            guard !isStopped else { break }
            lastBatch = monotonicNow()
            do {
                try disk.prefetch(batch, purpose: .prefetch)
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
                if thread.pause(min(5.0, 0.25 * Double(failures))) { break }
            }
        }
        if !isStopped {
            logger.info("prefetch finished", metadata: [
                "seconds": "\(Int(monotonicNow() - start))", "present": "\(disk.cache.presentCount)", "frames": "\(index.frames.count)"])
        }
    }
}

extension Prefetcher {
    /// Returns when the background pass may send its next batch (or when stopped).
    func waitForTurn(start: Double, lastBatch: Double) {
        let activity = disk.activity
        while !isStopped {
            let now = monotonicNow()
            let booting = !activity.hasReadProfile && now - start < profileGrace
            let busy = (activity.secondsSinceLastRead(now: now) ?? .infinity) < quietSeconds && now - lastBatch < busyInterval
            let readerWaiting = disk.statistics.demandRequestsInFlight.load(ordering: .relaxed) > 0
            if !booting, !busy, !readerWaiting { return }
            _ = thread.pause(0.02)
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
