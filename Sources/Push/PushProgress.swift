import Synchronization

/// Counters the pipeline bumps as it goes; the command line samples them for its display.
public final class PushProgress: Sendable {
    /// Logical disk size (holes included).
    public let diskSize = Atomic<Int64>(0)
    /// Disk bytes processed so far (holes count as processed when passed).
    public let diskBytesDone = Atomic<Int64>(0)
    /// Bytes the source really holds (its data extents), known after the sparse scan.
    public let dataBytes = Atomic<Int64>(0)
    public let compressedBytes = Atomic<Int64>(0)
    /// Frames holding data that were compressed (over a base, unchanged chunks' frames are not).
    public let framesCompressed = Atomic<Int>(0)
    public let uploadedBytes = Atomic<Int64>(0)
    public let blobsUploaded = Atomic<Int>(0)
    public let blobsSkipped = Atomic<Int>(0)

    public init() {}
}
