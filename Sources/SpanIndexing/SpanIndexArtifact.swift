import Fetch
import OCI
import SpanIndex
import Verity

/// The span index as an OCI 1.1 artifact beside its image (docs/FORMAT.md, "Span indexes"):
/// an image manifest with `artifactType` `application/vnd.imgfs.span-index.v1`, the empty
/// config, one layer (the binary index) and `subject` = the image's manifest.
public enum SpanIndexArtifact {
    public static let artifactType: MediaType = "application/vnd.imgfs.span-index.v1"
    public static let blobMediaType: MediaType = "application/vnd.imgfs.span-index.v1+binary"
    /// An index larger than this is refused before it is fetched (16 TiB of disk at 1 MiB spans
    /// with incompressible windows is far below it).
    public static let maximumSize: Int64 = 1 << 30

    public static func manifest(subject: Descriptor, blob: Descriptor) -> Manifest {
        Manifest(mediaType: .ociManifest, artifactType: artifactType, config: Referrers.emptyConfigDescriptor, layers: [blob], subject: subject)
    }

    /// Uploads `index` and its artifact manifest, and makes it findable from `subject`.
    public static func push(_ index: SpanIndex, client: RegistryClient, repository: String, subject: Descriptor) throws(SpanIndexingError) -> Pushed {
        let bytes = index.encoded()
        let blob = Descriptor(mediaType: blobMediaType, digest: SHA256Hasher.digest(bytes), size: Int64(bytes.count))
        do throws(FetchError) {
            let config = Referrers.emptyConfigDescriptor
            if try client.blobSize(repository, digest: config.digest) == nil {
                try client.uploadBlob(repository, digest: config.digest, size: config.size, body: .bytes(Referrers.emptyConfig))
            }
            try client.uploadBlob(repository, digest: blob.digest, size: blob.size, body: .bytes(bytes))
            let (descriptor, source) = try client.pushReferrer(repository, manifest: manifest(subject: subject, blob: blob))
            return Pushed(manifestDigest: descriptor.digest, blob: blob, source: source)
        } catch {
            throw .registry(error)
        }
    }

    public struct Pushed: Sendable {
        public var manifestDigest: Digest
        public var blob: Descriptor
        public var source: ReferrersSource
    }

    public struct Found: Sendable {
        public var index: SpanIndex
        /// The artifact manifest's digest: what `--index` pins.
        public var manifestDigest: Digest
        public var blob: Descriptor
        /// nil when pinned by `--index`.
        public var source: ReferrersSource?
    }

    /// The span index of the image manifest `subject`: the artifact `pinned` if given, else the
    /// newest referrer of the span-index type (referrers API, else the `sha256-<hex>` tag). nil
    /// when there is none. The artifact must name `subject`; the blob must match its digest and
    /// decode strictly. Trust: as far as the tag that led to `subject` (docs/FORMAT.md).
    public static func find(client: RegistryClient, repository: String, subject: Digest, pinned: Digest? = nil) throws(SpanIndexingError) -> Found? {
        guard let found = try findBlob(client: client, repository: repository, subject: subject, pinned: pinned) else { return nil }
        let index: SpanIndex
        do { index = try SpanIndex(decoding: found.bytes) } catch { throw SpanIndexingError.index(error) }
        return Found(index: index, manifestDigest: found.manifestDigest, blob: found.blob, source: found.source)
    }

    /// The span index blob's bytes, as `find` locates and checks them, not yet decoded: for a
    /// mount, which keeps them in its metadata store to remount offline.
    public struct FoundBlob: Sendable {
        public var manifestDigest: Digest
        public var blob: Descriptor
        public var bytes: [UInt8]
        public var source: ReferrersSource?
    }

    public static func findBlob(client: RegistryClient, repository: String, subject: Digest, pinned: Digest? = nil) throws(SpanIndexingError) -> FoundBlob? {
        var source: ReferrersSource?
        let artifactDigest: Digest
        do {
            if let pinned {
                artifactDigest = pinned
            } else {
                let (found, from) = try client.referrers(repository, subject: subject, artifactType: artifactType)
                guard let last = found.last else { return nil }
                artifactDigest = last.digest
                source = from
            }
            let fetched = try client.manifest(repository, reference: artifactDigest.description, accept: [.ociManifest])
            let manifest: Manifest
            do { manifest = try ManifestEncoding.decode(Manifest.self, from: fetched.bytes) } catch {
                throw SpanIndexingError.artifact(artifactDigest, "not an image manifest: \(error)")
            }
            guard manifest.artifactType == artifactType else {
                throw SpanIndexingError.artifact(artifactDigest, "artifact type \(manifest.artifactType?.rawValue ?? "none"), not \(artifactType)")
            }
            guard manifest.subject?.digest == subject else {
                throw SpanIndexingError.artifact(artifactDigest, "its subject is \(manifest.subject.map { "\($0.digest)" } ?? "missing"), not the image \(subject)")
            }
            guard manifest.layers.count == 1, let blob = manifest.layers.first, blob.mediaType == blobMediaType,
                  (0...maximumSize).contains(blob.size) else {
                throw SpanIndexingError.artifact(artifactDigest, "expected one \(blobMediaType) layer of at most \(maximumSize) bytes")
            }
            let bytes = try client.blob(repository, digest: blob.digest, maxSize: blob.size)
            return FoundBlob(manifestDigest: artifactDigest, blob: blob, bytes: bytes, source: source)
        } catch let error as SpanIndexingError {
            throw error
        } catch let error as FetchError {
            throw .registry(error)
        } catch {
            throw .artifact(pinned ?? subject, "\(error)")
        }
    }
}

public enum SpanIndexingError: Error, CustomStringConvertible {
    case registry(FetchError)
    case index(SpanIndexError)
    case artifact(Digest, String)
    case noSeekableLayers(String)
    case notFound(subject: Digest)

    public var description: String {
        switch self {
        case .registry(let error): "\(error)"
        case .index(let error): "\(error)"
        case .artifact(let digest, let reason): "span index artifact \(digest): \(reason)"
        case .noSeekableLayers(let reason): reason
        case .notFound(let subject): "no span index refers to the image manifest \(subject) (push one with `imgfs index`)"
        }
    }
}
