/// Tunables of a mounted disk's read path: imgfs frames and whole layers of other formats alike.
public struct DiskOptions: Sendable {
    /// Tries per frame or layer before reads of it fail (bytes that fail verification are fetched again).
    public var fetchAttempts = 3
    /// The longest a read waits for its frames before it fails with EIO. A read's range requests
    /// end by then too (the deadline travels to the transfer), however slowly a registry sends.
    public var readTimeout: Double = 30
    /// The same for a read that waits for a whole layer of a lume or tart image (tart's are
    /// 512 MiB), not for one frame. The fetch goes on after a read gives up, so a later read
    /// finds the layer cached.
    public var layerReadTimeout: Double = 120
    /// The bound on one range request no reader waits on (readahead, the boot profile, prefetch,
    /// a layer's stream): generous, so a slow link still fills the cache, but finite, so a
    /// trickling registry cannot hold a background thread forever.
    public var backgroundTransferTimeout: Double = 300
    /// How long a frame that failed every attempt fails again at once, without a new fetch.
    public var failureMemory: Double = 5
    /// The largest range request; adjacent missing frames are coalesced up to this size.
    public var maxRequestBytes: Int64 = 16 * 1024 * 1024
    /// Readahead window once reads look sequential, in units of `readaheadUnitBytes` (64 MiB).
    public var readaheadMaxFrames = 64
    /// What readahead counts as one frame when frames are smaller: in its window, its jobs and
    /// the distances that tell a sequential stream (`StreamDetector`). The kernel's requests, which
    /// set those distances, come in bytes, and a range request on a fast link costs mostly per
    /// request, so 256 KiB frames get four times as many as 1 MiB ones (issue 20).
    public var readaheadUnitBytes = 1 << 20
    /// Readahead keeps at most what the link carries in this many seconds ahead of a reader
    /// (as measured, `LinkEstimate`): on a slow link more would only queue in front of the
    /// reader's next miss.
    public var readaheadHorizon: Double = 1
    /// Threads fetching readahead in the background (0 disables readahead).
    public var readaheadThreads = 4
    /// Fetched frames waiting for the cache writer at most (`CacheWriter`), in bytes: the link
    /// may outrun the disk by this much before fetching threads wait for it.
    public var pendingWriteBytes = 64 * 1024 * 1024
    /// Threads fetching whole layers; each streams one layer at a time.
    public var layerFetchThreads = 2
    /// Range request size while streaming a layer: bounds the memory a fetch holds.
    public var layerRequestBytes: Int64 = 8 * 1024 * 1024

    public init() {}

    /// Both read timeouts set to `seconds` (`imgfs mount --read-timeout`).
    public mutating func setReadTimeout(_ seconds: Double) {
        readTimeout = seconds
        layerReadTimeout = seconds
    }
}
