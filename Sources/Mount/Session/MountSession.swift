import ImageLayouts
import Logging
import Threading
import Verity

/// A mounted image as the command line drives it, whatever serves its disk: `FrameSession`
/// (imgfs frames) or `LayerSession` (other formats, whole layers).
public protocol MountSession: AnyObject, Sendable {
    var servedDisk: any VirtualDisk { get }
    var nvramBytes: [UInt8]? { get }
    var vmConfigBytes: [UInt8]? { get }
    /// `disk.img`, or `disk.qcow2` for a qcow2 containerDisk (for `qemu -drive format=qcow2`).
    var diskFileName: String { get }
    var manifestDigest: Digest { get }
    var isOffline: Bool { get }
    /// What the link carried when the image was resolved (the frame index's transfer), for the
    /// daemon's first choice of readahead; nil when the index came from the store.
    var linkSample: TransferSample? { get }
    /// Takes a sample another process measured (the parent's `linkSample`) as the link's first
    /// figure (`LinkEstimate.seed`).
    func seedLink(_ sample: TransferSample)
    func start()
    func stop()
    func status(pid: Int32, mountpoint: String, reference: String?, logFile: String?, startedAt: Double, now: Double) -> MountStatus
}

extension FrameSession: MountSession {
    public var servedDisk: any VirtualDisk { disk }
    public var nvramBytes: [UInt8]? { resolved.nvram }
    public var vmConfigBytes: [UInt8]? { resolved.vmConfig }
    public var diskFileName: String { resolved.diskFormat.fileName }
    public var manifestDigest: Digest { resolved.manifestDigest }
    public var isOffline: Bool { resolved.offline }
    public var linkSample: TransferSample? { resolved.indexTransfer }
    public func seedLink(_ sample: TransferSample) { disk.statistics.link.seed(sample) }
}

extension ImageFileSystem {
    public convenience init(serving session: any MountSession, logger: Logger) {
        self.init(disk: session.servedDisk, nvram: session.nvramBytes, vmConfig: session.vmConfigBytes, diskName: session.diskFileName, logger: logger)
    }
}

/// One mounted image of another format, wired together: the whole-layer disk and a background
/// prefetch of its layers in disk order (one at a time, behind any reader's fetch).
public final class LayerSession: MountSession {
    public let resolved: ResolvedSegmentImage
    public let disk: LayerDisk
    public let configuration: MountConfiguration
    let logger: Logger
    let prefetchThread = BackgroundThread(name: "layer-prefetch")

    public init(resolved: ResolvedSegmentImage, source: any BlobSource, configuration: MountConfiguration, logger: Logger) throws(MountError) {
        self.resolved = resolved
        self.configuration = configuration
        self.logger = logger
        self.disk = try LayerDisk(layout: resolved.layout, cacheRoot: configuration.cacheRoot, source: source,
                                    options: configuration.disk, logger: logger)
    }

    public var servedDisk: any VirtualDisk { disk }
    public var nvramBytes: [UInt8]? { resolved.nvram }
    public var vmConfigBytes: [UInt8]? { resolved.vmConfig }
    public var diskFileName: String { resolved.diskFormat.fileName }
    public var manifestDigest: Digest { resolved.manifestDigest }
    public var isOffline: Bool { resolved.offline }
    /// Whole layers are fetched from the first read; no readahead choice depends on the link.
    public var linkSample: TransferSample? { nil }
    public func seedLink(_ sample: TransferSample) {}

    public func start() {
        disk.start()
        guard configuration.prefetch else { return }
        // Whole layers, in disk order. `prefetchRate` is not applied here (a layer is one unit);
        // the one-at-a-time order and the demand-first queue keep readers ahead of it.
        prefetchThread.start { [self] in
            for segment in disk.layout.segments where !prefetchThread.isStopping && !disk.isStopping {
                do { try disk.prefetch(segment) } catch {
                    logger.debug("layer prefetch failed", metadata: ["layer": "\(segment.name)", "error": "\(error)"])
                }
            }
        }
    }

    /// Stops prefetch and fetching. Call after FUSE stopped serving.
    public func stop() {
        disk.stop()
        prefetchThread.stop()
    }

    /// Layers stand in for frames in the counters (`totalFrames` = layers, `cachedFrames` = verified layers).
    public func status(pid: Int32, mountpoint: String, reference: String?, logFile: String?, startedAt: Double, now: Double) -> MountStatus {
        let cached = disk.cachedSegments()
        var status = MountStatus(
            pid: pid, mountpoint: mountpoint, reference: reference ?? resolved.locator.description,
            manifestDigest: resolved.manifestDigest.description, cacheDirectory: configuration.cacheRoot,
            logFile: logFile, diskSize: disk.size, totalFrames: disk.layout.segments.count, cachedFrames: cached.count,
            bytesCached: cached.bytes, offline: resolved.offline, prefetch: configuration.prefetch,
            startedAt: startedAt, updatedAt: now, statistics: disk.statistics.snapshot())
        status.readUnit = "layers"
        return status
    }
}
