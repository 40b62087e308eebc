import ImgfsFormat
import Logging
import Synchronization
import Threading

/// The first phase of a mount's prefetch: the boot profile's frames, fetched at normal priority by
/// a few threads at once, because the VM will ask for them within seconds. It does not yield to
/// readers (they are reading the same frames) and is not bound by `--prefetch-rate` (the reads
/// would fetch these frames anyway, only later and one request at a time).
///
/// The profile is cut into batches in its own order, each an ascending run of frames (so that
/// one range request can carry it); the workers take batches in that order, so requests go out in
/// profile order, `workers` at a time.
struct ProfileFetch {
    let disk: FrameDisk
    let batches: [[Int]]
    let workers: Int
    let logger: Logger

    /// Frames per batch at most: small enough that the frames the VM wants first arrive first.
    static let batchFrames = 8

    init(disk: FrameDisk, profile: [Int], workers: Int, logger: Logger) {
        self.disk = disk
        self.batches = Self.batches(of: profile)
        self.workers = max(1, workers)
        self.logger = logger
    }

    /// Consecutive profile entries grouped while each is its predecessor + 1, at most `batchFrames`.
    static func batches(of profile: [Int]) -> [[Int]] {
        var batches: [[Int]] = []
        for frame in profile {
            if let last = batches.last?.last, frame == last + 1, batches[batches.count - 1].count < batchFrames {
                batches[batches.count - 1].append(frame)
            } else {
                batches.append([frame])
            }
        }
        return batches
    }

    /// Fetches every missing profile frame; returns when all batches were tried or `isStopped`.
    func run(isStopped: @escaping @Sendable () -> Bool) {
        guard !batches.isEmpty else { return }
        let next = Atomic<Int>(0)
        let start = monotonicNow()
        // Profile frames a reader (or readahead) had fetched or was fetching when the workers
        // reached them: how far the profile fell behind the boot it is for.
        let behind = Atomic<Int>(0)
        let work = { @Sendable [self] (_: Int) in
            while !isStopped() {
                let i = next.add(1, ordering: .relaxed).oldValue
                guard i < batches.count else { return }
                // Frames already cached, or being fetched for a reader, are skipped inside.
                let reached = batches[i].filter { disk.isStored($0) || disk.flights.isRunning($0) }.count
                if reached > 0 { behind.add(reached, ordering: .relaxed) }
                do { try disk.prefetch(batches[i], purpose: .profile) } catch {
                    // A reader that wants these frames fetches them itself and sees the error.
                    logger.warning("profile batch failed", metadata: ["firstFrame": "\(batches[i][0])", "error": "\(error)"])
                }
            }
        }
        if workers == 1 {
            work(0)
        } else {
            WorkerThread.run(count: workers, name: "profile", work)
        }
        logger.info("boot profile fetched", metadata: [
            "frames": "\(batches.reduce(0) { $0 + $1.count })", "seconds": "\(monotonicNow() - start)",
            "alreadyFetchedForReaders": "\(behind.load(ordering: .relaxed))"])
    }
}
