import Formats
import Logging
import OCI
import Verity

/// An image of another format (lume OCI, lume legacy, tart) with everything a mount needs: the
/// validated disk layout, and the small files, verified against their digests.
public struct ResolvedSegmentImage: Sendable {
    public var locator: ImageLocator
    public var manifestDigest: Digest
    public var kind: ImageKind
    public var layout: DiskLayout
    public var nvram: [UInt8]?
    public var vmConfig: [UInt8]?
    /// True when the registry could not be reached and the manifest came from the local store.
    public var offline: Bool
}

/// What a reference resolves to: an imgfs image (served frame by frame) or another format's
/// (served layer by layer).
public enum ResolvedMountImage: Sendable {
    case imgfs(ResolvedImage)
    case segments(ResolvedSegmentImage)
}

extension ImageResolver {
    /// Like `resolve`, for any format `VMImageReader` reads. The manifests, configs, nvram and
    /// config.json go through the same metadata store, so these images remount offline too.
    public func resolveAnyFormat(_ locator: ImageLocator) throws(MountError) -> ResolvedMountImage {
        var offline = false
        let (topDigest, topBytes) = try topManifest(locator, offline: &offline)
        let (manifestDigest, manifest) = try imageManifest(topDigest, topBytes, locator: locator, offline: offline)
        switch VMImageReader.kind(of: manifest) {
        case nil:
            // The same words as pull and convert: what it is (a container image, a Helm chart…)
            // and what imgfs reads, not which media type the imgfs reader expected.
            throw .foreign(.layout(.unrecognised(reason: ForeignArtifact.describe(manifest))))
        case .imgfs?:
            // imgfs's own path, pinned to the manifest just chosen: it is in the store now, so
            // this asks the registry nothing.
            var pinned = locator
            pinned.digest = manifestDigest
            var resolved = try resolve(pinned)
            resolved.locator = locator
            resolved.offline = resolved.offline || offline
            return .imgfs(resolved)
        case .lumeOCI?, .lumeLegacy?, .tart?:
            let image: VMImage
            do {
                image = try VMImageReader.read(manifest) { descriptor, limit in
                    try smallBlob(descriptor, limit: limit, what: "config", locator: locator, offline: offline)
                }
            } catch {
                throw .foreign(.layout(error))
            }
            let limit = FormatsLimits.maximumSmallBlobSize
            let nvram = try image.nvram.map { (d) throws(MountError) in
                try smallBlob(d, limit: limit, what: "nvram.bin", locator: locator, offline: offline)
            }
            let vmConfig = try image.vmConfig.map { (d) throws(MountError) in
                try smallBlob(d, limit: limit, what: "config.json", locator: locator, offline: offline)
            }
            logger.info("not an imgfs image: serving it layer by layer", metadata: [
                "format": "\(image.kind.rawValue)", "layers": "\(image.layout.segments.count)", "manifest": "\(manifestDigest)"])
            return .segments(ResolvedSegmentImage(locator: locator, manifestDigest: manifestDigest, kind: image.kind,
                                                  layout: image.layout, nvram: nvram, vmConfig: vmConfig, offline: offline))
        }
    }
}
