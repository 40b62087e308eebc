import OCI
import Verity

/// Where `ManifestResolver` reads: the registry for pull, convert and verify --remote; the
/// mount's metadata store in front of it for mount.
public protocol ManifestSource {
    associatedtype Failure: Error
    /// The manifest or image index that `reference` (a tag or a `sha256:` digest) names, and the
    /// digest of its bytes; asked by digest, the source has checked that they hash to it.
    func manifest(_ reference: String) throws(Failure) -> (digest: Digest, bytes: [UInt8])
    /// A small blob whole (a config, a frame index), at most `limit` bytes, checked against `descriptor`.
    func blob(_ descriptor: Descriptor, limit: Int64) throws(Failure) -> [UInt8]
    /// Bytes `range` of a blob, unverified: the start of a containerDisk's layers, where the
    /// disk's tar header is (checked again when the layer is read whole).
    func blob(_ descriptor: Descriptor, range: Range<Int64>) throws(Failure) -> [UInt8]
}

/// An image manifest a reference resolved to.
public struct ResolvedManifest: Sendable {
    /// The digest of the image manifest: of the index entry chosen, when the reference named an index.
    public var digest: Digest
    public var manifest: Manifest
    /// The image index the manifest was chosen from, if the reference named one.
    public var indexDigest: Digest?
}

/// The one way imgfs turns a reference into an image, so that mount, pull, convert and verify
/// follow an image index to the same entry: reference → manifest (an index's entry for
/// `platform`) → the `VMImage` its format's reader makes of it.
public struct ManifestResolver<Source: ManifestSource> {
    public let source: Source
    public let platform: Platform

    public init(source: Source, platform: Platform) {
        self.source = source
        self.platform = platform
    }

    public func manifest(_ reference: String) throws(ResolveError<Source.Failure>) -> ResolvedManifest {
        let (digest, bytes) = try fetch(reference)
        guard let index = try Self.imageIndex(bytes, digest: digest) else {
            return ResolvedManifest(digest: digest, manifest: try Self.decode(bytes, digest: digest), indexDigest: nil)
        }
        guard let entry = index.entry(for: platform) else {
            throw .manifest(.noMatchingPlatform(index: digest, wanted: platform, available: index.platforms))
        }
        let (entryDigest, entryBytes) = try fetch(entry.digest.description)
        guard try Self.imageIndex(entryBytes, digest: entryDigest) == nil else {
            throw .manifest(.badManifest(digest: entryDigest, reason: "an image index inside image index \(digest); imgfs follows one level"))
        }
        return ResolvedManifest(digest: entryDigest, manifest: try Self.decode(entryBytes, digest: entryDigest), indexDigest: digest)
    }

    /// The manifest and the image its format's reader makes of it (configs and frame index
    /// fetched through the source and checked).
    public func image(_ reference: String) throws(ResolveError<Source.Failure>) -> (image: VMImage, manifest: ResolvedManifest) {
        let resolved = try manifest(reference)
        // The reader turns a failed load into a layout error; the source's own error says more
        // (an unreachable registry is not a malformed image), so that is what is thrown.
        var failure: Source.Failure?
        do throws(ImageLayoutError) {
            let image = try VMImageReader.read(resolved.manifest, load: { descriptor, limit in
                do throws(Source.Failure) { return try source.blob(descriptor, limit: limit) } catch {
                    failure = failure ?? error
                    throw error
                }
            }, loadRange: { descriptor, range in
                do throws(Source.Failure) { return try source.blob(descriptor, range: range) } catch {
                    failure = failure ?? error
                    throw error
                }
            })
            return (image, resolved)
        } catch {
            if let failure { throw .source(failure) }
            throw .layout(error)
        }
    }

    private func fetch(_ reference: String) throws(ResolveError<Source.Failure>) -> (digest: Digest, bytes: [UInt8]) {
        do { return try source.manifest(reference) } catch { throw .source(error) }
    }

    /// The index `bytes` are, or nil when they are an image manifest: by the media type the JSON
    /// declares or, for an OCI index that declares none, its `manifests` list.
    static func imageIndex(_ bytes: [UInt8], digest: Digest) throws(ResolveError<Source.Failure>) -> ImageIndex? {
        let probe: IndexProbe = try decode(bytes, digest: digest)
        guard probe.manifests != nil || probe.mediaType == MediaType.ociIndex.rawValue
            || probe.mediaType == MediaType.dockerManifestList.rawValue else { return nil }
        return try decode(bytes, digest: digest)
    }

    static func decode<T: Decodable>(_ bytes: [UInt8], digest: Digest) throws(ResolveError<Source.Failure>) -> T {
        do { return try ManifestEncoding.decode(T.self, from: bytes) } catch {
            throw .manifest(.badManifest(digest: digest, reason: error.description))
        }
    }
}

/// Just enough of a manifest or index to tell which it is.
private struct IndexProbe: Decodable {
    var mediaType: String?
    var manifests: [Descriptor]?
}

/// Why a reference did not resolve to an image: the source failed, or what it served is not an
/// image manifest imgfs can use, or not a VM image it reads.
public enum ResolveError<SourceFailure: Error>: Error {
    case source(SourceFailure)
    case manifest(ManifestError)
    case layout(ImageLayoutError)
}

/// A manifest or image index that does not lead to an image manifest.
public enum ManifestError: Error, Equatable, CustomStringConvertible {
    /// The JSON does not decode as a manifest or index.
    case badManifest(digest: Digest, reason: String)
    /// The index has no entry for the platform asked for.
    case noMatchingPlatform(index: Digest, wanted: Platform, available: [String])

    public var description: String {
        switch self {
        case .badManifest(let digest, let reason): "manifest \(digest) is not valid: \(reason)"
        case .noMatchingPlatform(let index, let wanted, let available):
            "image index \(index) has no entry for \(wanted); it has "
                + (available.isEmpty ? "no entries" : available.joined(separator: ", ") + " (choose one with --platform)")
        }
    }
}
