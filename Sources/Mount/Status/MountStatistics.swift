import Synchronization
import Threading

/// Counters of one mounted disk, updated lock-free from FUSE and fetch threads and sampled by
/// the status writer once a second.
public final class MountStatistics: Sendable {
    /// Compressed bytes received from the registry for frames (metadata not included).
    let bytesFetched = Atomic<Int64>(0)
    /// Frames fetched from the registry, verified and stored.
    let framesFetched = Atomic<Int64>(0)
    /// Range requests sent to the registry.
    let rangeRequests = Atomic<Int64>(0)
    /// Frames served from the cache (or as holes) without waiting for the network.
    let cacheHits = Atomic<Int64>(0)
    /// Frames a read had to wait for (fetched, or copied from another image's cache entry).
    let cacheMisses = Atomic<Int64>(0)
    /// Microseconds reads spent waiting for frames they missed (a fetch of their own, or one under
    /// way for readahead or a prefetch): what a boot from this mount lost to the link.
    let readWaitMicroseconds = Atomic<Int64>(0)
    /// Frames copied from another image's cache entry instead of fetched.
    let sharedFrames = Atomic<Int64>(0)
    /// Frames another mount of the same image on this host fetched into the shared cache entry,
    /// read from it (and verified) instead of fetched.
    let framesFromOtherMounts = Atomic<Int64>(0)
    /// Frames whose bytes did not decompress or hash to the index's digest.
    let verificationFailures = Atomic<Int64>(0)
    /// Cached frames whose bytes no longer matched their digest when first served by this daemon
    /// (dropped from the cache and fetched again).
    let cacheVerificationFailures = Atomic<Int64>(0)
    /// Range requests being sent or received right now.
    let requestsInFlight = Atomic<Int>(0)
    /// The most range requests ever in flight at once: evidence that readers are served in parallel.
    let peakRequestsInFlight = Atomic<Int>(0)
    /// Range requests on behalf of a reader waiting right now (prefetch yields to these).
    let demandRequestsInFlight = Atomic<Int>(0)
    /// Reads answered with an error.
    let readErrors = Atomic<Int64>(0)
    /// Frames brought in by readahead, by the boot profile's prefetch and by background prefetch.
    let readaheadFrames = Atomic<Int64>(0)
    let profileFrames = Atomic<Int64>(0)
    let prefetchedFrames = Atomic<Int64>(0)
    /// Compressed frame bytes received, by why they were fetched (`FetchClass`): what demand-first
    /// scheduling is judged by on a slow link.
    let bytesByClass = ClassByteCounters()
    /// Of those, the bytes that arrived while a reader's request was in flight: what the classes
    /// that should hold still for readers (`TransferClass.yields(to:)`) took of the link anyway.
    let bytesWhileReadersWaited = ClassByteCounters()

    func countBytes(_ count: Int, for fetchClass: FetchClass) {
        bytesByClass.add(count, for: fetchClass)
        if demandRequestsInFlight.load(ordering: .relaxed) > 0 { bytesWhileReadersWaited.add(count, for: fetchClass) }
    }

    func countReadWait(seconds: Double) {
        readWaitMicroseconds.add(Int64(seconds * 1e6), ordering: .relaxed)
    }

    let foregroundLink = Mutex(BusyClock())
    /// Frames readahead fetched that a reader then read, and those no reader has read (yet).
    let readaheadHits = Atomic<Int64>(0)
    let readaheadUnread = Atomic<Int64>(0)
    /// Throughput and latency of the link to the registry, from this disk's range requests (until
    /// they have measured enough, the frame index's transfer: `LinkEstimate.seed`).
    let link = LinkEstimate()
    /// Bytes of disk.img returned to readers (through `read` or spliced from the cache).
    let bytesServed = Atomic<Int64>(0)
    /// How long range requests took, for `imgfs_fetch_duration_seconds`. A lock per range
    /// request costs nothing next to the request itself.
    let fetchLatency = Mutex(LatencyHistogram())

    public init() {}

    /// Counts one range request that took `seconds`, answered or not.
    func fetchFinished(seconds: Double) {
        fetchLatency.withLock { $0.observe(seconds) }
    }

    /// Runs one range request of a mounted disk and counts it: in flight (demand ones apart, which
    /// background prefetch yields to), its latency, and on success the request and its bytes.
    /// `foreground`: the request is not the background prefetch's; the time one runs is the
    /// link's busy time (`foregroundBusySeconds`), whose complement the prefetch may use.
    func countRequest<E: Error>(demand: Bool, foreground: Bool = true, _ fetch: () throws(E) -> [UInt8]) throws(E) -> [UInt8] {
        var bytes: [UInt8] = []
        try countStreamedRequest(demand: demand, foreground: foreground, received: { bytes.count }) { () throws(E) in
            bytes = try fetch()
        }
        return bytes
    }

    /// The same for a transfer that streams its body elsewhere. `received` tells how many bytes
    /// arrived, and is asked also when the transfer fails midway: those bytes crossed the link
    /// too, and leaving them out would make the link look slower after every failure.
    func countStreamedRequest<E: Error>(demand: Bool, foreground: Bool = true, received: () -> Int, _ fetch: () throws(E) -> Void) throws(E) {
        requestStarted()
        if demand { demandRequestsInFlight.add(1, ordering: .relaxed) }
        if foreground { foregroundLink.withLock { $0.started(now: monotonicNow()) } }
        let started = monotonicNow()
        link.started(at: started)
        var failed = true
        defer {
            let now = monotonicNow()
            link.finished(bytes: received(), seconds: now - started, at: now, failed: failed)
            fetchFinished(seconds: now - started)
            requestsInFlight.subtract(1, ordering: .relaxed)
            if demand { demandRequestsInFlight.subtract(1, ordering: .relaxed) }
            if foreground { foregroundLink.withLock { $0.finished(now: monotonicNow()) } }
        }
        try fetch()
        failed = false
        rangeRequests.add(1, ordering: .relaxed)
        bytesFetched.add(Int64(received()), ordering: .relaxed)
    }

    /// Seconds since the mount started during which at least one range request other than the
    /// background prefetch's was in flight, as of `now`.
    func foregroundBusySeconds(now: Double) -> Double { foregroundLink.withLock { $0.busySeconds(now: now) } }

    /// Seconds since the last request of every class but the background prefetch ended; 0 while
    /// one is in flight.
    func foregroundIdleSeconds(now: Double) -> Double { foregroundLink.withLock { $0.secondsIdle(now: now) } }

    /// Compressed bytes fetched by every class but the background prefetch.
    var foregroundBytes: Int64 {
        let bytes = bytesByClass.snapshot
        return bytes.demand + bytes.readahead + bytes.profile
    }

    /// Counts a range request starting; returns after recording the new peak.
    func requestStarted() {
        let now = requestsInFlight.add(1, ordering: .relaxed).newValue
        var peak = peakRequestsInFlight.load(ordering: .relaxed)
        while now > peak {
            let (exchanged, original) = peakRequestsInFlight.compareExchange(expected: peak, desired: now, ordering: .relaxed)
            if exchanged { break }
            peak = original
        }
    }

    public func snapshot() -> Snapshot {
        Snapshot(
            bytesFetched: bytesFetched.load(ordering: .relaxed),
            framesFetched: framesFetched.load(ordering: .relaxed),
            rangeRequests: rangeRequests.load(ordering: .relaxed),
            cacheHits: cacheHits.load(ordering: .relaxed),
            cacheMisses: cacheMisses.load(ordering: .relaxed),
            sharedFrames: sharedFrames.load(ordering: .relaxed),
            verificationFailures: verificationFailures.load(ordering: .relaxed),
            requestsInFlight: requestsInFlight.load(ordering: .relaxed),
            peakRequestsInFlight: peakRequestsInFlight.load(ordering: .relaxed),
            readErrors: readErrors.load(ordering: .relaxed),
            readaheadFrames: readaheadFrames.load(ordering: .relaxed),
            profileFrames: profileFrames.load(ordering: .relaxed),
            prefetchedFrames: prefetchedFrames.load(ordering: .relaxed),
            cacheVerificationFailures: cacheVerificationFailures.load(ordering: .relaxed),

            bytesServed: bytesServed.load(ordering: .relaxed),
            fetchSeconds: fetchLatency.withLock { $0 },
            bytesFetchedByClass: bytesByClass.snapshot,
            bytesFetchedWhileReadersWaited: bytesWhileReadersWaited.snapshot,
            framesFromOtherMounts: framesFromOtherMounts.load(ordering: .relaxed),
            readaheadHits: readaheadHits.load(ordering: .relaxed),
            readaheadUnread: readaheadUnread.load(ordering: .relaxed),
            link: link.snapshot,
            readWaitSeconds: Double(readWaitMicroseconds.load(ordering: .relaxed)) / 1e6)
    }

    public struct Snapshot: Sendable, Codable, Equatable {
        public var bytesFetched: Int64
        public var framesFetched: Int64
        public var rangeRequests: Int64
        public var cacheHits: Int64
        public var cacheMisses: Int64
        public var sharedFrames: Int64
        public var verificationFailures: Int64
        public var requestsInFlight: Int
        public var peakRequestsInFlight: Int
        public var readErrors: Int64
        public var readaheadFrames: Int64
        public var profileFrames: Int64
        public var prefetchedFrames: Int64
        /// Optional so that the status of a daemon from before it existed still decodes.
        public var cacheVerificationFailures: Int64?
        // Optional, like every field added later: a status file written by an older daemon
        // still decodes after an upgrade.
        public var bytesServed: Int64?
        public var fetchSeconds: LatencyHistogram?
        public var bytesFetchedByClass: BytesByClass?
        /// Of `bytesFetchedByClass`, those received while a reader's request was in flight: for
        /// every class but demand, how much of the link it took while readers waited.
        public var bytesFetchedWhileReadersWaited: BytesByClass?
        /// Registry requests sent again (transport errors, 429 and 5xx); set by the status
        /// reporter from the registry client, which the disk does not know.
        public var retries: Int64?
        /// Frames another mount of the image on this host fetched and this one read from the
        /// shared cache entry instead (`framesFetched` of all such mounts together is one copy).
        public var framesFromOtherMounts: Int64?
        /// Of `readaheadFrames`: those a reader then read, and those none has read yet (waste
        /// so far, and all of it once the mount is idle).
        public var readaheadHits: Int64?
        public var readaheadUnread: Int64?
        /// The link to the registry as this disk's range requests measured it (or as the frame
        /// index's transfer seeded it, `seeded`).
        public var link: LinkSnapshot?
        /// Seconds reads spent waiting for frames they missed, summed over reads (two reads
        /// waiting at once count twice).
        public var readWaitSeconds: Double?

        /// Hits over all frame lookups by readers; 1 when nothing was read yet.
        public var hitRatio: Double {
            let total = cacheHits + cacheMisses
            return total == 0 ? 1 : Double(cacheHits) / Double(total)
        }
    }
}

/// Why frame bytes were fetched: a reader waits for them (demand), or they were fetched ahead of
/// readers by readahead, by the boot profile's prefetch or by the background prefetch.
public enum FetchClass: Int, CaseIterable, Sendable {
    case demand, readahead, profile, prefetch
    public var name: String { "\(self)" }
}

/// Compressed bytes fetched per `FetchClass`.
public struct BytesByClass: Sendable, Codable, Equatable {
    public var demand: Int64
    public var readahead: Int64
    public var profile: Int64
    public var prefetch: Int64

    public init(demand: Int64, readahead: Int64, profile: Int64, prefetch: Int64) {
        (self.demand, self.readahead, self.profile, self.prefetch) = (demand, readahead, profile, prefetch)
    }

    public subscript(_ fetchClass: FetchClass) -> Int64 {
        switch fetchClass {
        case .demand: demand
        case .readahead: readahead
        case .profile: profile
        case .prefetch: prefetch
        }
    }
}

/// Durations in Prometheus histogram buckets: `cumulativeCounts[i]` observations took at most
/// `bounds[i]` seconds; `count` includes those past the last bound.
public struct LatencyHistogram: Sendable, Codable, Equatable {
    /// From a loopback registry's milliseconds to a stalled link's low-speed timeout.
    public static let defaultBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    public var bounds: [Double]
    public var cumulativeCounts: [Int64]
    public var count: Int64 = 0
    public var sum: Double = 0

    public init(bounds: [Double] = LatencyHistogram.defaultBounds) {
        self.bounds = bounds
        cumulativeCounts = Array(repeating: 0, count: bounds.count)
    }

    public mutating func observe(_ seconds: Double) {
        count += 1
        sum += seconds
        for i in bounds.indices where seconds <= bounds[i] { cumulativeCounts[i] += 1 }
    }
}

/// How long at least one of some set of activities has been running: the sum of the intervals
/// during which `running` was above zero.
struct BusyClock: Sendable {
    var running = 0
    var since = 0.0
    var accumulated = 0.0
    /// When `running` last fell to zero.
    var lastEnded = -Double.infinity

    mutating func started(now: Double) {
        if running == 0 { since = now }
        running += 1
    }

    mutating func finished(now: Double) {
        running -= 1
        if running == 0 {
            accumulated += now - since
            lastEnded = now
        }
    }

    func busySeconds(now: Double) -> Double { accumulated + (running > 0 ? now - since : 0) }

    /// Seconds since the last activity ended; 0 while one runs.
    func secondsIdle(now: Double) -> Double { running > 0 ? 0 : now - lastEnded }
}
