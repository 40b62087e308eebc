import Cache
import ImageFormat
import Logging
import OCI
import Verity

/// Which image to mount: a registry repository and a tag or a pinned manifest digest.
public struct ImageLocator: Sendable, CustomStringConvertible {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: Digest?

    public init(registry: String, repository: String, tag: String?, digest: Digest?) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    public var description: String {
        var text = "\(registry)/\(repository)"
        if let tag { text += ":\(tag)" }
        if let digest { text += "@\(digest)" }
        return text
    }
}

/// An imgfs image with everything a mount needs before it serves its first read: the manifest,
/// the decoded and validated frame index, and the small files.
public struct ResolvedImage: Sendable {
    public var locator: ImageLocator
    /// The digest of the image manifest itself (inside an image index, the entry chosen).
    public var manifestDigest: Digest
    public var image: ImgfsImage
    public var index: FrameIndex
    public var indexDigest: Digest
    public var nvram: [UInt8]?
    public var vmConfig: [UInt8]?
    /// Frame numbers to prefetch first, from the image's boot profile layer (if any).
    public var bootProfile: [Int]
    /// True when the registry could not be reached and the manifest came from the local store.
    public var offline: Bool
}

/// Turns a reference into a `ResolvedImage`: reference → manifest (through an image index if
/// need be) → config → frame index → validation, with the small blobs kept in a
/// `MetadataStore` so that a later mount works offline.
public struct ImageResolver: Sendable {
    let source: any BlobSource
    let store: MetadataStore
    let logger: Logger

    public init(source: any BlobSource, store: MetadataStore, logger: Logger) {
        self.source = source
        self.store = store
        self.logger = logger
    }

    public func resolve(_ locator: ImageLocator) throws(MountError) -> ResolvedImage {
        var offline = false
        let (topDigest, topBytes) = try topManifest(locator, offline: &offline)
        let (manifestDigest, manifest) = try imageManifest(topDigest, topBytes, locator: locator, offline: offline)

        let configBytes = try smallBlob(manifest.config, limit: FormatLimits.maximumConfigSize, what: "config", locator: locator, offline: offline)
        let image: ImgfsImage
        do { image = try ImgfsImage(manifest: manifest, configBytes: configBytes) } catch { throw .format(error) }
        let indexBytes = try smallBlob(image.indexDescriptor, limit: FormatLimits.maximumIndexSize, what: "frame index", locator: locator, offline: offline)
        let index: FrameIndex
        do {
            index = try FrameIndex(decoding: indexBytes)
            try image.validate(index)
        } catch {
            throw .format(error)
        }
        let nvram = try image.nvram.map { (d) throws(MountError) in
            try smallBlob(d, limit: FormatLimits.maximumSmallBlobSize, what: "nvram.bin", locator: locator, offline: offline)
        }
        let vmConfig = try image.vmConfig.map { (d) throws(MountError) in
            try smallBlob(d, limit: FormatLimits.maximumSmallBlobSize, what: "config.json", locator: locator, offline: offline)
        }
        var profile: [Int] = []
        if let descriptor = image.bootProfile {
            // A profile only orders prefetching; a broken one is worth a warning, not a failed mount.
            do {
                let bytes = try smallBlob(descriptor, limit: FormatLimits.maximumSmallBlobSize, what: "boot profile", locator: locator, offline: offline)
                profile = BootProfile.decode(bytes, frameCount: index.frames.count) ?? []
                if profile.isEmpty { logger.warning("boot profile layer is malformed; ignoring it", metadata: ["digest": "\(descriptor.digest)"]) }
            } catch {
                logger.warning("boot profile unavailable; prefetching in disk order", metadata: ["error": "\(error)"])
            }
        }
        return ResolvedImage(locator: locator, manifestDigest: manifestDigest, image: image, index: index,
                             indexDigest: image.indexDescriptor.digest, nvram: nvram, vmConfig: vmConfig,
                             bootProfile: profile, offline: offline)
    }

    /// The bytes the reference names (a manifest or an image index) and their digest.
    func topManifest(_ locator: ImageLocator, offline: inout Bool) throws(MountError) -> (Digest, [UInt8]) {
        if let pinned = locator.digest {
            // Content-addressed: a stored copy is as good as the registry's, so do not even ask.
            if let bytes = store.blob(pinned, limit: Self.manifestLimit) { return (pinned, bytes) }
            return (pinned, try fetchManifest(pinned, locator: locator, offline: offline))
        }
        let tag = locator.tag ?? "latest"
        do {
            let fetched = try source.manifest(tag)
            try checkManifestSize(fetched.bytes)
            let digest = SHA256Hasher.digest(fetched.bytes)
            do {
                try store.store(fetched.bytes, digest: digest)
                try store.setReference(registry: locator.registry, repository: locator.repository, tag: tag, to: digest)
            } catch { throw MountError.cache(error) }
            return (digest, fetched.bytes)
        } catch let error as SourceError {
            guard error.kind == .unreachable else { throw MountError.source(operation: "fetching manifest \(locator)", error) }
            guard let digest = store.reference(registry: locator.registry, repository: locator.repository, tag: tag),
                  let bytes = store.blob(digest, limit: Self.manifestLimit) else {
                throw MountError.offline(reference: locator.description, cause: error)
            }
            logger.warning("registry unreachable; using the manifest this tag named when it was last mounted", metadata: [
                "reference": "\(locator)", "manifest": "\(digest)", "error": "\(error)"])
            offline = true
            return (digest, bytes)
        } catch let error as MountError {
            throw error
        } catch {
            throw MountError.invalidArgument("\(error)")
        }
    }

    static let manifestLimit: Int64 = 4 * 1024 * 1024

    func checkManifestSize(_ bytes: [UInt8]) throws(MountError) {
        guard Int64(bytes.count) <= Self.manifestLimit else {
            throw .source(operation: "fetching manifest", SourceError(.other, "manifest of \(bytes.count) bytes exceeds the limit of \(Self.manifestLimit)"))
        }
    }

    /// A manifest by digest, checked against it and stored.
    func fetchManifest(_ digest: Digest, locator: ImageLocator, offline: Bool) throws(MountError) -> [UInt8] {
        if let bytes = store.blob(digest, limit: Self.manifestLimit) { return bytes }
        let fetched: SourceManifest
        do { fetched = try source.manifest(digest.description) } catch {
            if error.kind == .unreachable { throw .offline(reference: locator.description, cause: error) }
            throw .source(operation: "fetching manifest \(digest)", error)
        }
        try checkManifestSize(fetched.bytes)
        let actual = SHA256Hasher.digest(fetched.bytes)
        guard actual == digest else { throw .manifestDigestMismatch(expected: digest, actual: actual) }
        do { try store.store(fetched.bytes, digest: digest) } catch { throw .cache(error) }
        return fetched.bytes
    }

    /// The image manifest, choosing linux/amd64 (or the only entry) if `bytes` is an image index.
    func imageManifest(_ digest: Digest, _ bytes: [UInt8], locator: ImageLocator, offline: Bool) throws(MountError) -> (Digest, Manifest) {
        struct Probe: Decodable {
            var mediaType: String?
            var manifests: [Descriptor]?
        }
        let probe: Probe
        do { probe = try ManifestEncoding.decode(Probe.self, from: bytes) } catch {
            throw .badManifest(digest: digest, reason: error.description)
        }
        let isIndex = probe.manifests != nil || probe.mediaType == MediaType.ociIndex.rawValue
            || probe.mediaType == MediaType.dockerManifestList.rawValue
        guard isIndex else {
            do { return (digest, try ManifestEncoding.decode(Manifest.self, from: bytes)) } catch {
                throw .badManifest(digest: digest, reason: error.description)
            }
        }
        let entries = probe.manifests ?? []
        let chosen = entries.first { $0.platform?.os == "linux" && $0.platform?.architecture == "amd64" }
            ?? (entries.count == 1 ? entries.first : nil)
        guard let chosen else {
            let available = entries.map { "\($0.platform?.os ?? "?")/\($0.platform?.architecture ?? "?")" }.joined(separator: ", ")
            throw .noMatchingPlatform(digest: digest, available: available.isEmpty ? "no entries" : available)
        }
        logger.info("image index: using one entry", metadata: ["index": "\(digest)", "manifest": "\(chosen.digest)"])
        let childBytes = try fetchManifest(chosen.digest, locator: locator, offline: offline)
        do { return (chosen.digest, try ManifestEncoding.decode(Manifest.self, from: childBytes)) } catch {
            throw .badManifest(digest: chosen.digest, reason: error.description)
        }
    }

    /// A small blob (config, index, nvram, config.json), from the store or the registry,
    /// checked against its descriptor's size and digest before anything reads it.
    func smallBlob(_ descriptor: Descriptor, limit: Int64, what: String, locator: ImageLocator, offline: Bool) throws(MountError) -> [UInt8] {
        if let bytes = store.blob(descriptor.digest, limit: limit), Int64(bytes.count) == descriptor.size { return bytes }
        guard descriptor.size >= 0, descriptor.size <= limit else {
            throw .format(descriptor.mediaType == .imgfsIndex ? .indexTooLarge(descriptor.size)
                          : .notAnImgfsImage(reason: "\(what) blob of \(descriptor.size) bytes exceeds the limit of \(limit)"))
        }
        let bytes: [UInt8]
        do { bytes = try source.blob(descriptor.digest, maxSize: descriptor.size) } catch {
            if error.kind == .unreachable { throw .offline(reference: locator.description, cause: error) }
            throw .source(operation: "fetching \(what) blob \(descriptor.digest)", error)
        }
        let actual = SHA256Hasher.digest(bytes)
        guard Int64(bytes.count) == descriptor.size, actual == descriptor.digest else {
            throw .source(operation: "fetching \(what) blob \(descriptor.digest)",
                          SourceError(.other, "received \(bytes.count) bytes hashing to \(actual), expected \(descriptor.size) bytes"))
        }
        do { try store.store(bytes, digest: descriptor.digest) } catch { throw .cache(error) }
        return bytes
    }
}
