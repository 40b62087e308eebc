import OCI
import Threading
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
    /// One attempt at `GET /v2/<repository>/manifests/<reference>`; mirrors first. When
    /// `reference` is a digest the bytes must hash to it, and bytes from a mirror that do not are
    /// dropped and the manifest asked of upstream once more within the attempt, as for a small
    /// blob: a mirror serving a wrong manifest is bypassed, not retried.
    /// `manifest(_:reference:accept:)` (in `+VerifiedFetch`) retries it.
    func manifestAttempt(_ repository: String, reference: String, accept: [MediaType]) throws(FetchError) -> FetchedManifest {
        do {
            return try manifestAttempt(repository, reference: reference, accept: accept, mirrors: true)
        } catch {
            guard case .digestMismatch = error.kind, !mirrorEndpoints.isEmpty else { throw error }
            logger.warning("a manifest failed verification; asking upstream", metadata: ["reference": "\(reference)", "error": "\(error)"])
            return try manifestAttempt(repository, reference: reference, accept: accept, mirrors: false)
        }
    }

    private func manifestAttempt(_ repository: String, reference: String, accept: [MediaType], mirrors: Bool) throws(FetchError) -> FetchedManifest {
        let context = ErrorContext(operation: .getManifest, registry: registry, repository: repository, reference: reference)
        let pinned = reference.hasPrefix("sha256:") ? try? Digest(parsing: reference) : nil
        let limit = options.maxManifestSize
        let response = try pull(scopes: [.pull(repository)], context: context, mirrors: mirrors, resolving: pinned == nil) { endpoint in
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
    /// that failed is skipped for a while; a range of blob `rangeOf` goes to a mirror only once
    /// it serves ranges of that blob, and waits a bounded time while it fills (`MirrorHealth`).
    /// With `mirrors` false only upstream is asked: after a mirror's bytes failed verification.
    func pull(
        scopes: [AuthScope], context: ErrorContext, rangeOf digest: Digest? = nil, mirrors: Bool = true, resolving: Bool = false,
        makeTransfer: (Endpoint) -> Transfer
    ) throws(FetchError) -> TransferResult {
        for mirror in mirrors ? mirrorEndpoints : [] where mirror.canResolve || !resolving {
            guard mirrorHealth.withLock({ $0.isUsable(mirror.host, now: monotonicNanoseconds()) }) else {
                stats.withLock { $0.mirrorSkips += 1 }
                continue
            }
            var mirrorContext = context
            mirrorContext.registry = mirror.host
            // A range of a blob the mirror may be filling: wait for it (bounded), and when a probe
            // finds it still filling, wait again rather than go upstream.
            var rounds = 0
            while true {
                rounds += 1
                if let digest, !waitUntilServesRanges(mirror, digest: digest, deadline: context.deadline) {
                    stats.withLock { $0.mirrorSkips += 1 }
                    break
                }
                do {
                    let response = try send(mirror, scopes: scopes, context: mirrorContext) { makeTransfer(mirror) }
                    if (200..<300).contains(response.status) {
                        stats.withLock { $0.mirrorHits += 1 }
                        if let digest, response.status == 206 {
                            mirrorHealth.withLock { $0.probed(mirror.host, digest: digest, ranges: true, now: monotonicNanoseconds(), probeInterval: 0) }
                        }
                        return response
                    }
                    if response.status >= 500 || response.status == 429 {
                        mirrorHealth.withLock { $0.markDown(mirror.host, for: options.mirrorCooldown, now: monotonicNanoseconds()) }
                        stats.withLock { $0.mirrorFailures += 1 }
                    } else if let digest, response.status == 404 {
                        mirrorHealth.withLock { $0.absent(mirror.host, digest: digest, for: options.mirrorCooldown.nanoseconds, now: monotonicNanoseconds()) }
                    }
                    logger.debug("mirror miss", metadata: ["mirror": "\(mirror.host)", "status": "\(response.status)"])
                    break
                } catch where error.underlying is MirrorServesWholeBlob {
                    if let digest {
                        mirrorHealth.withLock {
                            $0.probed(mirror.host, digest: digest, ranges: false, now: monotonicNanoseconds(), probeInterval: options.wholeBlobProbeInterval.nanoseconds)
                        }
                    }
                    stats.withLock { $0.mirrorWholeBlobAnswers += 1 }
                    logger.debug("mirror answered a range with the whole blob; it is filling", metadata: [
                        "mirror": "\(mirror.host)", "digest": "\(digest.map { "\($0)" } ?? "")"])
                    if digest == nil || rounds > 1000 || monotonicNow() >= context.deadline ?? .infinity { break }
                } catch {
                    mirrorHealth.withLock { $0.markDown(mirror.host, for: options.mirrorCooldown, now: monotonicNanoseconds()) }
                    stats.withLock { $0.mirrorFailures += 1 }
                    logger.info("mirror failed, trying the next source", metadata: ["mirror": "\(mirror.host)", "error": "\(error)"])
                    break
                }
            }
        }
        return try send(upstream, scopes: scopes, context: context) { makeTransfer(self.upstream) }
    }

    /// Whether a range of `digest` should be asked of `mirror` now, waiting (at most
    /// `wholeBlobWait`) while it fills the blob. The request that is let through while the blob
    /// is cold is the probe: one per `wholeBlobProbeInterval` per process, the others sleep.
    /// Never past `deadline`: a reader that must give up by then gives up upstream, not here.
    func waitUntilServesRanges(_ mirror: Endpoint, digest: Digest, deadline: Double?) -> Bool {
        let interval = options.wholeBlobProbeInterval.nanoseconds
        let maxWait = options.wholeBlobWait.nanoseconds
        let start = monotonicNanoseconds()
        while true {
            let now = monotonicNanoseconds()
            switch mirrorHealth.withLock({ $0.action(mirror.host, digest: digest, now: now, probeInterval: interval, maxWait: maxWait) }) {
            case .useMirror, .probe:
                return true
            case .skip:
                return false
            case .wait:
                if now - start > maxWait || monotonicNow() >= deadline ?? .infinity { return false }
                sleep(for: .milliseconds(20))
            }
        }
    }
}
