import OCI
import Verity

/// A manifest exactly as the registry sent it: the digest is computed over these bytes, never
/// over a re-encoding, so it matches what the registry and every other client compute.
public struct FetchedManifest: Sendable, Equatable {
    public var bytes: [UInt8]
    public var mediaType: MediaType
    public var digest: Digest

    public init(bytes: [UInt8], mediaType: MediaType, digest: Digest) {
        self.bytes = bytes
        self.mediaType = mediaType
        self.digest = digest
    }
}

extension RegistryClient {
    /// `GET /v2/<repository>/manifests/<reference>`; mirrors first. When `reference` is a
    /// digest the bytes must hash to it.
    public func manifest(_ repository: String, reference: String, accept: [MediaType] = MediaType.acceptedManifests) throws(FetchError) -> FetchedManifest {
        let context = ErrorContext(operation: .getManifest, registry: registry, repository: repository, reference: reference)
        let pinned = reference.hasPrefix("sha256:") ? try? Digest(parsing: reference) : nil
        let limit = options.maxManifestSize
        let response = try pull(scopes: [.pull(repository)], context: context, resolving: pinned == nil) { endpoint in
            Transfer(
                method: "GET", url: endpoint.url("/v2/\(repository)/manifests/\(reference)"),
                headers: ["Accept: " + accept.map(\.rawValue).joined(separator: ", ")],
                collectLimit: limit + 1)
        }
        guard response.status == 200 else { throw statusError(response, context) }
        guard !response.bodyTruncated, response.body.count <= limit else {
            throw context.error(.tooLarge(limit: Int64(limit), size: response.headers["Content-Length"].flatMap { Int64($0) }), status: response.status)
        }
        let digest = SHA256Hasher.digest(response.body)
        if let pinned, pinned != digest {
            throw context.error(.digestMismatch(expected: pinned, actual: digest), status: response.status)
        }
        if let header = response.headers["Docker-Content-Digest"], header != digest.description {
            logger.warning("registry's Docker-Content-Digest differs from the digest of the bytes received", metadata: [
                "repository": "\(repository)", "reference": "\(reference)", "header": "\(header)", "computed": "\(digest)"])
        }
        let contentType = response.headers["Content-Type"].map { String($0.prefix { $0 != ";" }).trimmingSpaces() }
        let mediaType = contentType.flatMap { $0.isEmpty ? nil : MediaType($0) } ?? .octetStream
        return FetchedManifest(bytes: response.body, mediaType: mediaType, digest: digest)
    }

    /// `PUT /v2/<repository>/manifests/<reference>`; returns the digest of `bytes`.
    @discardableResult
    public func putManifest(_ repository: String, reference: String, bytes: [UInt8], mediaType: MediaType) throws(FetchError) -> Digest {
        let digest = SHA256Hasher.digest(bytes)
        let context = ErrorContext(operation: .putManifest, registry: registry, repository: repository, digest: nil, reference: reference)
        let response = try send(upstream, scopes: [.push(repository)], context: context) {
            Transfer(
                method: "PUT", url: self.upstream.url("/v2/\(repository)/manifests/\(reference)"),
                headers: ["Content-Type: " + mediaType.rawValue], body: .bytes(bytes))
        }
        guard response.status == 201 || response.status == 200 || response.status == 202 else { throw statusError(response, context) }
        if let header = response.headers["Docker-Content-Digest"], header != digest.description {
            throw context.error(.invalidResponse("registry stored the manifest as \(header), but its bytes hash to \(digest)"), status: response.status)
        }
        return digest
    }

    /// Runs a read request against each mirror, then upstream: a mirror's failure (or miss)
    /// is logged and the next source tried, so a mirror can only make pulls faster. A mirror
    /// that failed is skipped for a while, and one that is fetching `digest` whole from its
    /// upstream is not asked for that blob's ranges meanwhile (`MirrorHealth`). With `mirrors`
    /// false only upstream is asked: after a mirror's bytes failed verification.
    func pull(
        scopes: [AuthScope], context: ErrorContext, digest: Digest? = nil, mirrors: Bool = true, resolving: Bool = false,
        makeTransfer: (Endpoint) -> Transfer
    ) throws(FetchError) -> TransferResult {
        for mirror in mirrors ? mirrorEndpoints : [] where mirror.canResolve || !resolving {
            guard mirrorHealth.withLock({ $0.shouldTry(mirror.host, digest: digest, now: monotonicNanoseconds()) }) else {
                stats.withLock { $0.mirrorSkips += 1 }
                continue
            }
            var mirrorContext = context
            mirrorContext.registry = mirror.host
            do {
                let response = try send(mirror, scopes: scopes, context: mirrorContext) { makeTransfer(mirror) }
                if (200..<300).contains(response.status) {
                    stats.withLock { $0.mirrorHits += 1 }
                    if let digest, response.status == 206 {
                        mirrorHealth.withLock { $0.markWarm(mirror.host, digest: digest) }
                    }
                    return response
                }
                if response.status >= 500 || response.status == 429 {
                    mirrorHealth.withLock { $0.markDown(mirror.host, for: options.mirrorCooldown, now: monotonicNanoseconds()) }
                    stats.withLock { $0.mirrorFailures += 1 }
                }
                logger.debug("mirror miss", metadata: ["mirror": "\(mirror.host)", "status": "\(response.status)"])
            } catch where error.underlying is MirrorServesWholeBlob {
                if let digest {
                    mirrorHealth.withLock {
                        $0.markCold(mirror.host, digest: digest, for: options.wholeBlobProbeInterval, now: monotonicNanoseconds())
                    }
                }
                stats.withLock { $0.mirrorWholeBlobAnswers += 1 }
                logger.debug("mirror answered a range with the whole blob; its ranges go upstream while it fills", metadata: [
                    "mirror": "\(mirror.host)", "digest": "\(digest.map { "\($0)" } ?? "")"])
            } catch {
                mirrorHealth.withLock { $0.markDown(mirror.host, for: options.mirrorCooldown, now: monotonicNanoseconds()) }
                stats.withLock { $0.mirrorFailures += 1 }
                logger.info("mirror failed, trying the next source", metadata: ["mirror": "\(mirror.host)", "error": "\(error)"])
            }
        }
        return try send(upstream, scopes: scopes, context: context) { makeTransfer(self.upstream) }
    }
}
