import Cache
import ImageLayouts
import ImgfsFormat
import Logging
import OCI
import Threading
import Verity

/// Turns a reference into what a mount serves, through `ManifestResolver` (as pull and convert
/// do) over `StoredManifestSource`, so that the small blobs are kept in a `MetadataStore` and a
/// later mount works offline.
public struct ImageResolver: Sendable {
    let source: any BlobSource
    let store: MetadataStore
    /// The image index entry to mount.
    let platform: Platform
    /// Whether a lume or tart image is read through a span index (a mount) or as whole layers.
    let spanIndexChoice: SpanIndexChoice
    let logger: Logger

    public init(source: any BlobSource, store: MetadataStore, platform: Platform = .host, spanIndex: SpanIndexChoice = .off, logger: Logger) {
        self.source = source
        self.store = store
        self.platform = platform
        self.spanIndexChoice = spanIndex
        self.logger = logger
    }

    /// An imgfs image, served frame by frame.
    public func resolve(_ locator: Reference) throws(MountError) -> ResolvedImage {
        switch try resolveAnyFormat(locator) {
        case .imgfs(let resolved): return resolved
        case .segments(let resolved): throw .format(.notAnImgfsImage(reason: "\(locator) is a \(resolved.kind.rawValue) image"))
        }
    }

    /// An image of any format `VMImageReader` reads. Manifests, configs, frame index, nvram and
    /// config.json go through the metadata store, so every format remounts offline.
    public func resolveAnyFormat(_ locator: Reference) throws(MountError) -> ResolvedMountImage {
        let stored = StoredManifestSource(resolver: self, locator: locator)
        let image: VMImage
        let manifest: ResolvedManifest
        do {
            (image, manifest) = try ManifestResolver(source: stored, platform: platform)
                .image(locator.digest?.description ?? locator.tag ?? Reference.defaultTag)
        } catch {
            switch error {
            case .source(let error): throw error
            case .manifest(let error): throw .manifest(error)
            case .layout(.imgfs(let error)): throw .format(error)
            case .layout(let error): throw .foreign(.layout(error))
            }
        }
        if let index = manifest.indexDigest {
            logger.info("image index: using its entry for this platform", metadata: [
                "index": "\(index)", "platform": "\(platform)", "manifest": "\(manifest.digest)"])
        }
        let limit = FormatsLimits.maximumSmallBlobSize
        let nvram = try image.nvram.map { (d) throws(MountError) in try smallBlob(d, limit: limit, what: "nvram.bin", locator: locator) }
        let vmConfig = try image.vmConfig.map { (d) throws(MountError) in try smallBlob(d, limit: limit, what: "config.json", locator: locator) }
        guard let imgfs = image.imgfs else {
            let segments = ResolvedSegmentImage(locator: locator, manifestDigest: manifest.digest, kind: image.kind, layout: image.layout,
                                                diskFormat: image.diskFormat, nvram: nvram, vmConfig: vmConfig, offline: stored.offline)
            if let spanned = try spanIndexed(segments) { return .imgfs(spanned) }
            logger.info("not an imgfs image: serving it layer by layer", metadata: [
                "format": "\(image.kind.rawValue)", "layers": "\(image.layout.segments.count)", "manifest": "\(manifest.digest)"])
            return .segments(segments)
        }
        var profile: [Int] = []
        if let descriptor = imgfs.image.bootProfile {
            // A profile only orders prefetching; a broken one is worth a warning, not a failed mount.
            do {
                let bytes = try smallBlob(descriptor, limit: FormatLimits.maximumSmallBlobSize, what: "boot profile", locator: locator)
                profile = BootProfile.decode(bytes, frameCount: imgfs.index.frames.count) ?? []
                if profile.isEmpty { logger.warning("boot profile layer is malformed; ignoring it", metadata: ["digest": "\(descriptor.digest)"]) }
            } catch {
                logger.warning("boot profile unavailable; prefetching in disk order", metadata: ["error": "\(error)"])
            }
        }
        return .imgfs(ResolvedImage(locator: locator, manifestDigest: manifest.digest, index: imgfs.index,
                                    indexDigest: imgfs.image.indexDescriptor.digest, nvram: nvram, vmConfig: vmConfig,
                                    bootProfile: profile, offline: stored.offline, indexTransfer: stored.indexTransfer))
    }

    /// A small blob (config, index, nvram, config.json), from the store or the registry,
    /// checked against its descriptor's size and digest before anything reads it.
    func smallBlob(_ descriptor: Descriptor, limit: Int64, what: String, locator: Reference) throws(MountError) -> [UInt8] {
        try storedOrFetchedBlob(descriptor, limit: limit, what: what, locator: locator).bytes
    }

    /// `smallBlob`, and its transfer when it came from the registry rather than the store.
    func storedOrFetchedBlob(_ descriptor: Descriptor, limit: Int64, what: String, locator: Reference) throws(MountError)
        -> (bytes: [UInt8], transfer: TransferSample?) {
        if let bytes = store.blob(descriptor.digest, limit: limit), Int64(bytes.count) == descriptor.size { return (bytes, nil) }
        guard descriptor.size >= 0, descriptor.size <= limit else {
            throw .format(descriptor.mediaType == .imgfsIndex ? .indexTooLarge(descriptor.size)
                          : .notAnImgfsImage(reason: "\(what) blob of \(descriptor.size) bytes exceeds the limit of \(limit)"))
        }
        let bytes: [UInt8]
        let started = monotonicNow()
        do { bytes = try source.blob(descriptor.digest, maxSize: descriptor.size) } catch {
            if error.kind == .unreachable { throw .offline(reference: locator.description, cause: error) }
            throw .source(operation: "fetching \(what) blob \(descriptor.digest)", error)
        }
        let transfer = TransferSample(bytes: bytes.count, seconds: monotonicNow() - started)
        let actual = SHA256Hasher.digest(bytes)
        guard Int64(bytes.count) == descriptor.size, actual == descriptor.digest else {
            throw .source(operation: "fetching \(what) blob \(descriptor.digest)",
                          SourceError(.other, "received \(bytes.count) bytes hashing to \(actual), expected \(descriptor.size) bytes"))
        }
        do { try store.store(bytes, digest: descriptor.digest) } catch { throw .cache(error) }
        return (bytes, transfer)
    }
}
