import Cache
import ImageLayouts
import Logging
import Verity

/// What a scrub of an image's local cache found (`imgfs verify MOUNTPOINT|REF`).
public struct CacheScrubReport: Sendable, Codable {
    public var format: String
    /// Units checked: frames (imgfs) or layer files (lume, tart) present in the cache.
    public var checked: Int
    /// Units whose bytes did not match their digest; dropped from the cache (fetched again later).
    public var dropped: Int
    /// Frame numbers (imgfs) or layer names (other formats) that were dropped.
    public var droppedUnits: [String]
    /// Units of the image in all, cached or not.
    public var total: Int
}

/// Checks every cached unit of an image against its digest and drops the ones that do not match.
/// Safe while the image is mounted: the cache entry is shared, and a drop only clears bits (see
/// `FrameCache.drop`); a running daemon checks each frame once itself before serving it.
public enum CacheScrub {
    public static func scrub(_ image: ResolvedMountImage, cacheRoot: String, logger: Logger) throws(MountError) -> CacheScrubReport {
        switch image {
        case .imgfs(let resolved):
            let index = resolved.index
            let cache: FrameCache
            do {
                cache = try FrameCache.open(root: cacheRoot, key: CacheKey(digest: resolved.indexDigest), geometry: index.geometry,
                                            frameDigests: index.frames.map(\.digest), imageReference: resolved.locator.description,
                                            holes: index.frames.indices.filter { index.frames[$0].isHole }, logger: logger)
            } catch {
                throw .cache(error)
            }
            defer { cache.close() }
            // Holes are checked when the entry opens (they are punched again); data frames here.
            let dataFrames = index.frames.indices.filter { !index.frames[$0].isHole }
            let checked = dataFrames.filter { cache.contains($0) }.count
            let dropped: [Int]
            do { dropped = try cache.verifyAll() } catch { throw .cache(error) }
            return CacheScrubReport(format: ImageKind.imgfs.rawValue, checked: checked, dropped: dropped.count,
                                    droppedUnits: dropped.map(String.init), total: dataFrames.count)
        case .segments(let resolved):
            let store: SegmentStore
            do { store = try SegmentStore(cacheRoot: cacheRoot, logger: logger) } catch { throw .cache(error) }
            var checked = 0
            var dropped: [String] = []
            var seen = Set<SegmentKey>()
            let segments = resolved.layout.segments.filter { $0.length > 0 }
            for segment in segments {
                let key = SegmentKey(segment)
                guard seen.insert(key).inserted, store.contains(key, length: segment.length) else { continue }
                checked += 1
                do {
                    if try store.openChecked(key, segment: segment, logger: logger) == nil { dropped.append(segment.name) }
                } catch { throw .cache(error) }
            }
            return CacheScrubReport(format: resolved.kind.rawValue, checked: checked, dropped: dropped.count,
                                    droppedUnits: dropped, total: Set(segments.map(SegmentKey.init)).count)
        }
    }
}
