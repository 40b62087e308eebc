import OCI
import Verity

extension RegistryClient {
    /// `HEAD /v2/<repository>/blobs/<digest>`: the blob's size, or nil when the registry does not have it.
    public func blobSize(_ repository: String, digest: Digest) throws(FetchError) -> Int64? {
        let context = ErrorContext(operation: .headBlob, registry: registry, repository: repository, digest: digest)
        let response = try pull(scopes: [.pull(repository)], context: context) { endpoint in
            Transfer(method: "HEAD", url: endpoint.url("/v2/\(repository)/blobs/\(digest)"))
        }
        if response.status == 404 { return nil }
        guard response.status == 200 else { throw statusError(response, context) }
        guard let length = response.headers["Content-Length"].flatMap({ Int64($0.trimmingSpaces()) }) else {
            throw context.error(.invalidResponse("HEAD response has no Content-Length"), status: response.status)
        }
        return length
    }

    /// One attempt at a whole (small) blob in memory, verified against `digest`; `blob(_:digest:maxSize:)`
    /// (in `+VerifiedFetch`) retries it. Bytes from a mirror that do not match are dropped and
    /// the blob asked of upstream once more within the attempt.
    func blobAttempt(_ repository: String, digest: Digest, maxSize: Int64) throws(FetchError) -> [UInt8] {
        do {
            return try verifiedBlob(repository, digest: digest, maxSize: maxSize, mirrors: true)
        } catch {
            guard case .digestMismatch = error.kind, !mirrorEndpoints.isEmpty else { throw error }
            logger.warning("a blob failed verification; asking upstream", metadata: ["digest": "\(digest)", "error": "\(error)"])
            return try verifiedBlob(repository, digest: digest, maxSize: maxSize, mirrors: false)
        }
    }

    private func verifiedBlob(_ repository: String, digest: Digest, maxSize: Int64, mirrors: Bool) throws(FetchError) -> [UInt8] {
        var bytes: [UInt8] = []
        let hasher = SHA256Hasher()
        do {
            try blob(repository, digest: digest, range: nil, mirrors: mirrors) { buffer in
                guard Int64(bytes.count + buffer.count) <= maxSize else { throw BlobLimitExceeded() }
                bytes.append(contentsOf: buffer)
                hasher.update(buffer)
            }
        } catch where error.underlying is BlobLimitExceeded {
            var tooLarge = error
            tooLarge.kind = .tooLarge(limit: maxSize, size: nil)
            tooLarge.underlying = nil
            throw tooLarge
        }
        let actual = hasher.finalize()
        guard actual == digest else {
            let context = ErrorContext(operation: .getBlob, registry: registry, repository: repository, digest: digest)
            throw context.error(.digestMismatch(expected: digest, actual: actual))
        }
        return bytes
    }

    /// Streams a blob, or exactly `range` of it, to `sink` (unverified: callers verify frames).
    ///
    /// Ranges are requested with `Range: bytes=a-b`. A 206 must carry the matching
    /// `Content-Range`; a registry that ignores ranges and sends 200 with the whole blob is
    /// handled by skipping to the range start and stopping at its end. A dropped connection
    /// resumes from the first byte not yet delivered, so `sink` sees every byte exactly once.
    ///
    /// A mirror that answers a range with 200 is not read from: it is a whole-blob cache
    /// filling itself, and reading up to the range from it would make it stream that much of the
    /// blob from upstream for this request alone (see `MirrorHealth`); the range goes upstream.
    /// `mirrors: false` asks upstream only, for a range whose bytes from a mirror failed
    /// verification.
    ///
    /// `background`: nobody waits for these bytes yet; the transfer runs on the background
    /// handles (see `DemandGate`).
    ///
    /// `deadline` (CLOCK_MONOTONIC seconds, as `monotonicNow()`) bounds the whole call: every request it makes (retries, resumptions, a mirror,
    /// a token) ends by then, and past it the call fails with `.timeout`. A FUSE read passes its
    /// own, so that a body that trickles in cannot hold the reader past its read timeout.
    public func blob(
        _ repository: String, digest: Digest, range: Range<Int64>?, mirrors: Bool = true, deadline: Double? = nil,
        background: Bool = false, sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws(FetchError) {
        if let range, range.isEmpty { return }
        var context = ErrorContext(operation: .getBlob, registry: registry, repository: repository, digest: digest, range: range)
        context.deadline = deadline
        let start = range?.lowerBound ?? 0
        let end = range?.upperBound
        var delivered: Int64 = 0

        let response: TransferResult
        do {
            response = try withoutActuallyEscaping(sink) { (sink) throws(FetchError) -> TransferResult in
                try pull(scopes: [.pull(repository)], context: context, rangeOf: range == nil ? nil : digest, mirrors: mirrors) { endpoint in
                    let first = start + delivered
                    var headers: [String] = []
                    if let end {
                        headers.append("Range: bytes=\(first)-\(end - 1)")
                    } else if first > 0 {
                        headers.append("Range: bytes=\(first)-")
                    }
                    // The absolute blob offset of the next byte of this response, known once it starts.
                    var position: Int64? = nil
                    var transfer = Transfer(method: "GET", url: endpoint.url("/v2/\(repository)/blobs/\(digest)"), headers: headers)
                    transfer.background = background
                    transfer.sink = { status, responseHeaders, buffer in
                        if position == nil {
                            if endpoint.isMirror && status == 200 && end != nil { throw MirrorServesWholeBlob() }
                            position = try Self.responseStart(status: status, headers: responseHeaders, requested: first, end: end)
                        }
                        guard let offset = position else { return false }
                        let wanted = start + delivered
                        let lo = max(offset, wanted)
                        let hi = min(offset + Int64(buffer.count), end ?? Int64.max)
                        if lo < hi {
                            try sink(UnsafeRawBufferPointer(rebasing: buffer[Int(lo - offset)..<Int(hi - offset)]))
                            delivered += hi - lo
                        }
                        position = offset + Int64(buffer.count)
                        // A 200 carries the whole blob: stop at the range end. A 206 ends there by
                        // itself, and aborting it would close a connection worth reusing.
                        guard status == 200, let end else { return true }
                        return offset + Int64(buffer.count) < end
                    }
                    return transfer
                }
            }
        } catch where error.underlying is ProtocolViolation {
            var invalid = error
            invalid.kind = .invalidResponse((error.underlying as? ProtocolViolation)?.message ?? "")
            invalid.underlying = nil
            throw invalid
        }
        guard response.status == 200 || response.status == 206 else { throw statusError(response, context) }
        if let end, start + delivered != end {
            throw context.error(.invalidResponse("blob ended after \(delivered) of \(end - start) requested bytes"), status: response.status)
        }
    }

    /// Where a 2xx blob response starts in the blob, checking Content-Range against the request.
    static func responseStart(status: Int, headers: HTTPHeaders, requested first: Int64, end: Int64?) throws -> Int64 {
        guard status == 206 else { return 0 }  // 200: the whole blob from byte 0
        guard let contentRange = headers["Content-Range"] else {
            throw ProtocolViolation(message: "206 response without Content-Range")
        }
        // "bytes a-b/total" (total may be "*").
        let spec = contentRange.trimmingSpaces()
        guard spec.hasPrefix("bytes ") else { throw ProtocolViolation(message: "unexpected Content-Range '\(contentRange)'") }
        let numbers = spec.dropFirst(6).split(whereSeparator: { $0 == "-" || $0 == "/" })
        guard numbers.count >= 2, let a = Int64(numbers[0]), let b = Int64(numbers[1]) else {
            throw ProtocolViolation(message: "unexpected Content-Range '\(contentRange)'")
        }
        guard a == first, end.map({ b == $0 - 1 }) ?? true else {
            throw ProtocolViolation(message: "asked for bytes \(first)-\(end.map { String($0 - 1) } ?? ""), got Content-Range '\(contentRange)'")
        }
        return a
    }
}

/// The registry's answer broke the protocol in a way only the body callback can see.
struct ProtocolViolation: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// `blob(_:digest:maxSize:)` stops a transfer through this once the limit is passed.
struct BlobLimitExceeded: Error {}
