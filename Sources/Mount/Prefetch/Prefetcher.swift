import Fetch
import Glibc
import ImgfsFormat
import Logging
import Threading

/// A mount's prefetch, in two phases on one thread:
/// 1. the boot profile's frames (if the image has one), at normal priority and several requests
///    at once (`ProfileFetch`);
/// 2. unless `background` is off (`--no-prefetch`), the whole disk from the start, at the lowest
///    priority and under a bandwidth limit (token bucket). It waits for the boot to start: until
///    the mount's users have read a few frames (`ReadActivity.startFrames`), or `startHold` has
///    passed with nobody reading; and with a profile, for the boot to end: until they have read
///    most of the profile (or `profileGrace` has passed). Then it takes
///    only the link's idle share while they read (`IdleShare`): a batch starts only when no
///    other range request runs, is as long as the link carries in `readingBatchSeconds` (its
///    rate measured by the batches themselves), and the batches' time on the link stays within
///    `idleShare` of the time no other request ran, their bytes within `readingByteShare` of
///    what the readers' classes fetched. A batch under way holds still while any other request
///    runs (`DemandGate`). On a machine whose cores the VM needs, background decompression
///    during the boot slowed it by a fifth (BENCHMARKS.md). `rate` caps it throughout.
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
    /// Readers that read within this long are active: the pass takes only the idle share. A boot
    /// under emulation computes for several seconds between reads; with 3 s the pass took those
    /// gaps whole and moved twice what the boot read at 25 Mbit/s (issue 20).
    let quietSeconds: Double
    /// While readers are active, a batch lasts about this long on the link: what a reader that
    /// arrives as it starts may find ahead of its own bytes, besides the held batch's window.
    let readingBatchSeconds = 0.25
    /// The smallest batch while readers are active, before the link's rate is known.
    let readingBatchBytes: Int64 = 256 * 1024
    /// The part of the link's idle time (no other request in flight) the pass may use while
    /// readers are active: the rest stays free for the next reader, who need not wait for a
    /// held batch to drain.
    let idleShare = 0.5
    /// Its bytes while readers are active, against what the readers' classes fetched: a boot
    /// should move little more than what it reads, and a prefetch in disk order mostly fetches
    /// what it does not.
    let readingByteShare = 0.125
    let profileGrace = 120.0
    /// How long the pass waits for readers to start before it fills an unread mount's cache. On
    /// an idle link before the guest's first read (a TCG boot reads its root file system 10-36 s
    /// after qemu starts) the pass moved 25-85 MB in disk order, against the 37.5 MB of frames the
    /// whole boot reads, at 25 Mbit/s (issue 20, BENCHMARKS.md).
    let startHold: Double
    let thread = BackgroundThread(name: "prefetch")

    /// - Parameters:
    ///   - background: whether the whole-disk pass follows the profile.
    ///   - rate: bytes per second of compressed data for the whole-disk pass, or nil for no limit.
    ///   - profileWorkers: range requests in flight at once for the profile.
    ///   - quietSeconds: how long after a read the mount's readers count as active.
    ///   - startHold: how long the whole-disk pass waits for readers to start reading.
    public init(disk: FrameDisk, profile: [Int], background: Bool = true, rate: Int64?, profileWorkers: Int = 3,
                quietSeconds: Double = 10, startHold: Double = 60, logger: Logger) {
        self.quietSeconds = quietSeconds
        self.startHold = startHold
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
        var share = IdleShare(share: idleShare, now: start, busy: disk.statistics.foregroundBusySeconds(now: start))
        var frame = 0
        var announced = false
        while frame < index.frames.count, !isStopped {
            let reading = waitForTurn(start: start, share: &share)
            if !announced {
                announced = true
                logger.info("background prefetch starts", metadata: [
                    "afterSeconds": "\(Int(monotonicNow() - start))", "readersStarted": "\(disk.activity.hasStarted)"])
            }
            guard !isStopped else { break }
            // Collect the next batch of missing frames.
            let budget = reading ? max(readingBatchBytes, min(batchBytes, Int64(share.linkRate * readingBatchSeconds))) : batchBytes
            var batch: [Int] = []
            var bytes: Int64 = 0
            while frame < index.frames.count, batch.count < 64, bytes < budget {
                defer { frame += 1 }
                guard let location = index.frames[frame].location, !index.frames[frame].isHole,
                      !disk.isStored(frame), !disk.flights.isRunning(frame) else { continue }
                batch.append(frame)
                bytes += Int64(location.compressedLength)
            }
            guard !batch.isEmpty else { continue }
            if var current = bucket {
                let delay = current.take(Double(bytes), now: monotonicNow())
                bucket = current
                if delay > 0, thread.pause(delay) { break }
            }
            guard !isStopped else { break }
            let started = monotonicNow()
            do {
                try disk.prefetch(batch, purpose: .prefetch)
                failures = 0
                share.batchEnded(bytes: bytes, seconds: monotonicNow() - started, whileReading: reading)
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
    /// Returns when the background pass may send its next batch (or when stopped), and whether
    /// readers are active, so that the batch takes only the idle share.
    func waitForTurn(start: Double, share: inout IdleShare) -> Bool {
        let activity = disk.activity
        let statistics = disk.statistics
        while !isStopped {
            let now = monotonicNow()
            share.observe(now: now, busy: statistics.foregroundBusySeconds(now: now))
            let booting = !activity.hasReadProfile && now - start < profileGrace
                || !activity.hasStarted && now - start < startHold
            let reading = (activity.secondsSinceLastRead(now: now) ?? .infinity) < quietSeconds
            let readerWaiting = statistics.demandRequestsInFlight.load(ordering: .relaxed) > 0
            // The link's gate would hold the batch for the rest of its linger (`TransferClass.linger`)
            // after such a request, with the batch's request already counted as busy link time:
            // wait it out here, where waiting measures nothing.
            let lingering = statistics.foregroundIdleSeconds(now: now) < TransferClass.prefetch.linger
            // While readers are active: only on an idle link, within the idle share's time, and
            // within `readingByteShare` of the readers' bytes.
            let busy = reading && (statistics.requestsInFlight.load(ordering: .relaxed) > 0 || share.credit < 0
                || Double(share.bytesWhileReading) > readingByteShare * Double(statistics.foregroundBytes))
            if !booting, !busy, !readerWaiting, !lingering { return reading }
            _ = thread.pause(0.02)
        }
        return false
    }
}

/// The background pass's measured share of the link while readers are active: it earns link
/// time at `share` of the time no other range request was in flight (the mount's statistics
/// measure it), and spends each batch's own duration; a batch starts only with the credit not
/// negative. The batches also measure the link's rate, which sizes the next ones.
struct IdleShare {
    let share: Double
    /// Seconds of link time the pass may still use; at most `maxCredit`, so that a long idle
    /// spell does not buy a long run of batches once readers return.
    var credit = 0.0
    let maxCredit = 1.0
    /// Bytes per second the link carried a batch at, the fastest of the recent ones (a batch that
    /// held still for readers measures less than the link).
    var linkRate = 0.0
    var bytesWhileReading: Int64 = 0
    var last: Double
    var lastBusy: Double

    init(share: Double, now: Double, busy: Double) {
        self.share = share
        self.last = now
        self.lastBusy = busy
    }

    mutating func observe(now: Double, busy: Double) {
        let idle = max(0, (now - last) - (busy - lastBusy))
        credit = min(maxCredit, credit + share * idle)
        (last, lastBusy) = (now, busy)
    }

    mutating func batchEnded(bytes: Int64, seconds: Double, whileReading: Bool) {
        // Only while readers are active does the batch spend credit: on a quiet link it earns
        // what it uses back at once, and the cap (`rate`) is the only limit.
        if whileReading {
            credit -= seconds
            bytesWhileReading += bytes
        }
        if seconds > 0 { linkRate = max(Double(bytes) / seconds, linkRate * 0.9) }
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
