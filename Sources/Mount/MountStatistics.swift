import Synchronization

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
    /// Frames copied from another image's cache entry instead of fetched.
    let sharedFrames = Atomic<Int64>(0)
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

    public init() {}

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
            cacheVerificationFailures: cacheVerificationFailures.load(ordering: .relaxed))
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

        /// Hits over all frame lookups by readers; 1 when nothing was read yet.
        public var hitRatio: Double {
            let total = cacheHits + cacheMisses
            return total == 0 ? 1 : Double(cacheHits) / Double(total)
        }
    }
}
