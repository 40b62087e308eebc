import Synchronization
import Verity

/// Counters the pipeline bumps as it goes; the command line samples them for its display.
public final class PullProgress: Sendable {
    /// Disk bytes the pull has to place (bytes held by segments; holes between them are free).
    public let totalBytes = Atomic<Int64>(0)
    /// Disk bytes placed so far, including those a previous run had placed.
    public let doneBytes = Atomic<Int64>(0)
    /// Compressed bytes received from the registry in this run.
    public let downloadedBytes = Atomic<Int64>(0)
    /// Blobs or frame runs fetched in this run.
    public let requests = Atomic<Int>(0)
    /// imgfs frames copied from the local mount cache instead of downloaded.
    public let framesFromCache = Atomic<Int>(0)
    /// Units (layers or frame runs) a previous run had finished.
    public let unitsResumed = Atomic<Int>(0)

    public init() {}
}

/// What a pull did, for the command line's summary and `--json`.
public struct PullResult: Sendable, Codable {
    public var reference: String
    public var manifestDigest: Digest
    public var format: String
    public var directory: String
    public var diskSize: UInt64
    public var files: [String]
    public var bytesDownloaded: Int64
    public var requests: Int
    public var framesFromCache: Int
    public var unitsResumed: Int
    public var fsverityDigest: Digest?
    public var verityEnabled: Bool
    public var alreadyComplete: Bool
}
