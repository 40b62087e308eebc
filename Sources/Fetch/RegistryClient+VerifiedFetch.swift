import OCI
import Threading
import Verity

/// Every verified fetch of a whole object (a manifest by digest, a config, a frame index, a boot
/// profile, nvram) under one retry policy: bytes that do not hash to their digest, or an answer
/// that breaks the protocol (a `Content-Range` that does not match, a body that ends early), are
/// fetched again, up to `verifiedFetchAttempts` times in all, with the client's backoff between
/// attempts. Dropped connections and 5xx are retried below this, per request
/// (`performWithRetries`), so they are not counted here.
///
/// A proxy or CDN that corrupts one response in twenty costs a retry, not the mount; a registry
/// that always sends the wrong bytes gets the last attempt's error, which names the blob and both
/// digests.
extension RegistryClient {
    /// Attempts per object, the same as for a frame (`DiskOptions.fetchAttempts`).
    public static let verifiedFetchAttempts = 3

    /// A whole (small) blob in memory, verified against `digest`.
    public func blob(_ repository: String, digest: Digest, maxSize: Int64) throws(FetchError) -> [UInt8] {
        try retryingBadBodies { () throws(FetchError) in
            try blobAttempt(repository, digest: digest, maxSize: maxSize)
        }
    }

    /// `GET /v2/<repository>/manifests/<reference>`; mirrors first. When `reference` is a digest
    /// the bytes must hash to it (and are fetched again when they do not).
    public func manifest(_ repository: String, reference: String, accept: [MediaType] = MediaType.acceptedManifests) throws(FetchError) -> FetchedManifest {
        try retryingBadBodies { () throws(FetchError) in
            try manifestAttempt(repository, reference: reference, accept: accept)
        }
    }

    /// Runs `attempt` under the one retry policy (`BoundedRetry`) with the client's backoff; logs
    /// each retry with the digests involved (at info: a daemon's log shows it, a command's stderr
    /// keeps to the one error line it renders).
    func retryingBadBodies<T>(_ attempt: () throws(FetchError) -> T) throws(FetchError) -> T {
        try BoundedRetry(attempts: Self.verifiedFetchAttempts, pause: backoff).run(isRetryable: Self.isBadBody, failed: { error, tries, willRetry in
            guard willRetry else {
                if tries > 1 { logger.debug("giving up on a fetch after \(tries) attempts", metadata: ["error": "\(error)"]) }
                return
            }
            logger.info("fetched bytes are wrong; fetching them again", metadata: ["error": "\(error)", "attempt": "\(tries)"])
            stats.withLock { $0.retries += 1 }
        }) { (_) throws(FetchError) in try attempt() }
    }

    /// Failures that say the bytes were damaged on the way, which another attempt can fix.
    static func isBadBody(_ error: FetchError) -> Bool {
        switch error.kind {
        case .digestMismatch, .invalidResponse: true
        default: false
        }
    }
}
