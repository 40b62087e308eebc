import Cache
import ImgfsFormat
import Logging
import Verity

/// How a mount fetches and caches.
public struct MountConfiguration: Sendable {
    public var cacheRoot: String
    public var prefetch = true
    /// Prefetch bandwidth bound, compressed bytes per second; nil for none.
    public var prefetchRate: Int64?
    public var disk = DiskOptions()

    public init(cacheRoot: String) { self.cacheRoot = cacheRoot }
}

/// One mounted image, wired together: the cache entry, the shared-frame locator, the lazy disk,
/// the prefetcher. The one place these objects are created and connected.
public final class FrameSession: Sendable {
    public let resolved: ResolvedImage
    public let disk: FrameDisk
    public let configuration: MountConfiguration
    let prefetcher: Prefetcher?
    let logger: Logger

    /// Opens (creating or validating) the image's cache entry and builds the read path.
    public init(resolved: ResolvedImage, source: any BlobSource, configuration: MountConfiguration, logger: Logger) throws(MountError) {
        let index = resolved.index
        let key = CacheKey(digest: resolved.indexDigest)
        let holes = index.frames.indices.filter { index.frames[$0].isHole }
        let cache: FrameCache
        do {
            cache = try FrameCache.open(root: configuration.cacheRoot, key: key, geometry: index.geometry,
                                        frameDigests: index.frames.map(\.digest), imageReference: resolved.locator.description,
                                        holes: holes, logger: logger)
        } catch {
            throw .cache(error)
        }
        var wanted = Set<Digest>()
        for (i, frame) in index.frames.enumerated() where !frame.isHole && !cache.contains(i) { wanted.insert(frame.digest) }
        let shared = wanted.isEmpty ? nil : SharedFrameLocator(root: configuration.cacheRoot, excluding: key, wanted: wanted, logger: logger)
        if let shared, shared.count > 0 {
            logger.info("frames of this image found in other cache entries", metadata: ["count": "\(shared.count)"])
        }
        self.resolved = resolved
        self.configuration = configuration
        self.logger = logger
        self.disk = FrameDisk(index: index, cache: cache, source: source, shared: shared?.count == 0 ? nil : shared,
                             options: configuration.disk, logger: logger)
        if let sample = resolved.indexTransfer { disk.statistics.link.seed(sample) }
        // The profile is fetched even with background prefetch off: it is what the VM reads next.
        self.prefetcher = configuration.prefetch || !resolved.bootProfile.isEmpty
            ? Prefetcher(disk: disk, profile: resolved.bootProfile, background: configuration.prefetch,
                         rate: configuration.prefetchRate, logger: logger)
            : nil
    }

    /// Starts readahead, the boot profile's prefetch and background prefetch.
    public func start() {
        disk.start()
        if cacheComplete {
            logger.info("every frame is cached; nothing to prefetch")
        } else {
            prefetcher?.start()
        }
    }

    /// Stops background work and closes the cache entry. Call after FUSE stopped serving.
    public func stop() {
        prefetcher?.stop()
        disk.stop()
        disk.cache.close()
    }

    public var cacheComplete: Bool { disk.cache.allPresent }

    /// The status record `imgfs status` shows.
    /// - Parameter reference: the reference as the user typed it (default: the resolved locator).
    public func status(pid: Int32, mountpoint: String, reference: String? = nil, logFile: String?, startedAt: Double, now: Double) -> MountStatus {
        let stats = disk.cache.stats()
        var status = MountStatus(
            pid: pid, mountpoint: mountpoint, reference: reference ?? resolved.locator.description,
            manifestDigest: resolved.manifestDigest.description, cacheDirectory: configuration.cacheRoot,
            logFile: logFile, diskSize: stats.diskSize, totalFrames: stats.totalFrames, cachedFrames: stats.presentFrames,
            bytesCached: stats.presentBytes, offline: resolved.offline, prefetch: configuration.prefetch,
            startedAt: startedAt, updatedAt: now, statistics: disk.statistics.snapshot())
        status.readUnit = resolved.spanIndex == nil ? "frames" : "spans"
        status.spanIndex = resolved.spanIndex?.description
        return status
    }
}
