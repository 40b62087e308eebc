import OCI
import Verity

/// Where a referrer was found, for messages and `--json`.
public enum ReferrersSource: String, Sendable, Codable {
    case referrersAPI = "referrers-api"
    case fallbackTag = "fallback-tag"
}

extension RegistryClient {
    /// The referrers of `subject` with artifact type `artifactType`, newest last as listed:
    /// from `GET /v2/<repository>/referrers/<subject>?artifactType=…`, or, where the registry
    /// answers that with 404 (no referrers API), from the fallback tag `sha256-<hex>`'s image
    /// index. No referrers at all is an empty list, not an error.
    public func referrers(_ repository: String, subject: Digest, artifactType: MediaType) throws(FetchError) -> (descriptors: [Descriptor], source: ReferrersSource) {
        let encodedType = artifactType.rawValue.replacingPlusAndSlash()
        let context = ErrorContext(operation: .getManifest, registry: registry, repository: repository, reference: "referrers/\(subject)")
        let limit = options.maxManifestSize
        let response = try pull(scopes: [.pull(repository)], context: context, mirrors: false) { endpoint in
            Transfer(method: "GET", url: endpoint.url("/v2/\(repository)/referrers/\(subject)?artifactType=\(encodedType)"),
                     headers: ["Accept: " + MediaType.ociIndex.rawValue], collectLimit: limit + 1)
        }
        if response.status == 200 {
            guard !response.bodyTruncated, response.body.count <= limit else {
                throw context.error(.tooLarge(limit: Int64(limit), size: nil), status: response.status)
            }
            let index: ImageIndex
            do { index = try ManifestEncoding.decode(ImageIndex.self, from: response.body) } catch {
                throw context.error(.invalidResponse("referrers list: \(error)"), status: response.status)
            }
            // The filter is optional for registries; apply it here as well.
            return (index.manifests.filter { $0.artifactType == artifactType }, .referrersAPI)
        }
        guard response.status == 404 || response.status == 405 || response.status == 400 else { throw statusError(response, context) }
        guard let index = try fallbackIndex(repository, subject: subject) else { return ([], .fallbackTag) }
        return (index.manifests.filter { $0.artifactType == artifactType }, .fallbackTag)
    }

    /// The image index under the fallback tag, nil when the tag does not exist.
    func fallbackIndex(_ repository: String, subject: Digest) throws(FetchError) -> ImageIndex? {
        let tag = Referrers.fallbackTag(for: subject)
        let fetched: FetchedManifest
        do {
            fetched = try manifest(repository, reference: tag, accept: [.ociIndex])
        } catch where error.kind == .notFound {
            return nil
        }
        do {
            return try ManifestEncoding.decode(ImageIndex.self, from: fetched.bytes)
        } catch {
            let context = ErrorContext(operation: .getManifest, registry: registry, repository: repository, reference: tag)
            throw context.error(.invalidResponse("the referrers tag does not hold an image index: \(error)"))
        }
    }

    /// Pushes `manifest` (whose `subject` must be set) by digest, and makes it findable: where
    /// the registry's referrers API lists it, nothing more; otherwise the fallback tag's index
    /// is updated to include it (read, add, write: two clients pushing referrers to the same
    /// subject at once can lose one, as the spec accepts). Returns the referrer's descriptor.
    @discardableResult
    public func pushReferrer(_ repository: String, manifest: Manifest) throws(FetchError) -> (descriptor: Descriptor, source: ReferrersSource) {
        guard let subject = manifest.subject else {
            let context = ErrorContext(operation: .putManifest, registry: registry, repository: repository)
            throw context.error(.invalidRequest("a referrer needs a subject"))
        }
        let bytes = ManifestEncoding.encode(manifest)
        let digest = SHA256Hasher.digest(bytes)
        try putManifest(repository, reference: digest.description, bytes: bytes, mediaType: .ociManifest)
        let descriptor = Descriptor(mediaType: .ociManifest, digest: digest, size: Int64(bytes.count),
                                    annotations: manifest.annotations, artifactType: manifest.artifactType)
        if let artifactType = manifest.artifactType,
           case let (found, source) = try referrers(repository, subject: subject.digest, artifactType: artifactType),
           source == .referrersAPI, found.contains(where: { $0.digest == digest }) {
            return (descriptor, .referrersAPI)
        }
        let index = Referrers.adding(descriptor, to: try fallbackIndex(repository, subject: subject.digest))
        try putManifest(repository, reference: Referrers.fallbackTag(for: subject.digest), bytes: ManifestEncoding.encode(index), mediaType: .ociIndex)
        return (descriptor, .fallbackTag)
    }
}

extension String {
    /// Percent-encodes the two characters of a media type that a query string cannot carry.
    func replacingPlusAndSlash() -> String {
        var out = ""
        for character in self {
            switch character {
            case "+": out += "%2B"
            case "/": out += "%2F"
            default: out.append(character)
            }
        }
        return out
    }
}
