import Cache
import ImageLayouts
import ImgfsFormat
import OCI
import SpanIndex
import Verity

/// Which span index a mount of a lume or tart image reads by (docs/FORMAT.md, "Span indexes").
public enum SpanIndexChoice: Sendable, Equatable {
    /// The newest one the registry lists for the image (referrers API, else the tag fallback).
    case discover
    /// This artifact (its manifest digest), which must name the image as its subject.
    case pinned(Digest)
    /// None: whole layers.
    case off
}

extension ImageResolver {
    /// `image` served frame by frame through its span index, as an imgfs image is: nil (whole
    /// layers, said once in the log) when it has none, or one that does not fit its layout.
    ///
    /// Trust: the index is trusted as far as the reference that led to the image; each frame is
    /// checked against the index's frame digest, not against the layer digest (docs/FORMAT.md).
    func spanIndexed(_ image: ResolvedSegmentImage) throws(MountError) -> ResolvedImage? {
        let pinned: Digest?
        switch spanIndexChoice {
        case .off: return nil
        case .discover: pinned = nil
        case .pinned(let digest): pinned = digest
        }
        let locator = image.locator
        let tag = "span-index.\(image.manifestDigest.hex)"
        var found: SpanIndexBlob?
        do {
            found = try source.spanIndex(of: image.manifestDigest, pinned: pinned)
        } catch {
            // Offline: the span index this image was last mounted with, if any.
            guard error.kind == .unreachable || image.offline else {
                if pinned != nil { throw .source(operation: "fetching span index \(pinned!)", error) }
                logger.warning("could not look up a span index; serving whole layers", metadata: ["image": "\(locator)", "error": "\(error)"])
                return nil
            }
            if let blob = store.reference(registry: locator.registry, repository: locator.repository, tag: tag),
               let bytes = store.blob(blob, limit: Self.maximumSpanIndexSize) {
                found = SpanIndexBlob(artifact: blob, blob: blob, bytes: bytes)
            }
        }
        guard let found else {
            if pinned != nil { throw .format(.notAnImgfsImage(reason: "span index \(pinned!) was not found for \(locator)")) }
            logger.info("no span index for this image: serving it whole layer by whole layer (`imgfs index` makes one)", metadata: [
                "image": "\(locator)", "manifest": "\(image.manifestDigest)"])
            return nil
        }
        let actual = SHA256Hasher.digest(found.bytes)
        guard actual == found.blob else {
            throw .source(operation: "fetching span index \(found.artifact)", SourceError(.other, "its blob hashes to \(actual), not \(found.blob)"))
        }
        let index: FrameIndex
        do {
            let decoded = try SpanIndex(decoding: found.bytes)
            guard let spanSize = decoded.layers.first?.spanSize, decoded.layers.allSatisfy({ $0.spanSize == spanSize }) else {
                throw SpanIndexedLayout.Unsuitable(description: "its layers have different span sizes")
            }
            for segment in image.layout.segments {
                guard let layer = decoded.layer(segment.blob.digest), layer.frameLength == segment.length || segment.codec != .gzipTar else {
                    throw SpanIndexedLayout.Unsuitable(description: "the span index does not cover the disk file of \(segment.name)")
                }
            }
            let layers = decoded.layers.map { layer in
                SpanIndexedLayout.LayerSpans(blob: layer.layerDigest, checkpoints: layer.spans.map(\.checkpoint),
                                             frameDigests: layer.frameDigests, frameOrigin: layer.frameOrigin)
            }
            index = try SpanIndexedLayout.frameIndex(image.layout, frameSize: Int(spanSize), spans: layers)
        } catch {
            if pinned != nil { throw .format(.notAnImgfsImage(reason: "span index \(found.artifact): \(error)")) }
            logger.warning("the span index does not fit this image: serving it whole layer by whole layer", metadata: [
                "image": "\(locator)", "index": "\(found.artifact)", "error": "\(error)"])
            return nil
        }
        do {
            try store.store(found.bytes, digest: found.blob)
            try store.setReference(registry: locator.registry, repository: locator.repository, tag: tag, to: found.blob)
        } catch { throw .cache(error) }
        logger.info("serving the image frame by frame through its span index", metadata: [
            "image": "\(locator)", "index": "\(found.artifact)", "frames": "\(index.frames.count)", "frameSize": "\(index.geometry.frameSize)"])
        return ResolvedImage(locator: locator, manifestDigest: image.manifestDigest, index: index, indexDigest: found.blob,
                             nvram: image.nvram, vmConfig: image.vmConfig, bootProfile: [], offline: image.offline, spanIndex: found.artifact,
                             diskFormat: image.diskFormat)
    }

    /// A span index is a few percent of the image; past 1 GiB it is not one worth reading.
    static let maximumSpanIndexSize: Int64 = 1 << 30
}
