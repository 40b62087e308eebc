import OCI
import Verity

/// The bytes of a blob to upload.
public enum BlobBody {
    case bytes([UInt8])
    /// `size` bytes produced on demand: `read(offset, buffer)` fills `buffer` from `offset` and
    /// returns the count (> 0 until the end). It may be called again for the same offsets
    /// when a request is retried, so it must be repeatable (a file read with pread is).
    case reader(size: Int64, read: (Int64, UnsafeMutableRawBufferPointer) throws -> Int)

    var size: Int64 {
        switch self {
        case .bytes(let bytes): Int64(bytes.count)
        case .reader(let size, _): size
        }
    }

    /// The bytes from `offset` to `offset + length`, as a body of their own.
    func slice(offset: Int64, length: Int64) -> RequestBody {
        switch self {
        case .bytes(let bytes):
            if offset == 0 && length == Int64(bytes.count) { return .bytes(bytes) }
            return .bytes(Array(bytes[Int(offset)..<Int(offset + length)]))
        case .reader(_, let read):
            return RequestBody(size: length) { relative, buffer in try read(offset + relative, buffer) }
        }
    }
}

extension RegistryClient {
    /// Uploads a blob: one POST + PUT up to `chunkedUploadThreshold`, chunked PATCHes above it.
    /// The registry checks the digest when the upload is closed.
    public func uploadBlob(_ repository: String, digest: Digest, size: Int64, body: BlobBody) throws(FetchError) {
        let context = ErrorContext(operation: .uploadBlob, registry: registry, repository: repository, digest: digest)
        guard body.size == size else {
            throw context.error(.invalidRequest("body has \(body.size) bytes, but the blob is \(size) bytes"))
        }
        var location = try startUpload(repository, context: context, query: "")
        do throws(FetchError) {
            if size > options.chunkedUploadThreshold {
                var offset: Int64 = 0
                while offset < size {
                    let length = min(options.chunkSize, size - offset)
                    var chunkContext = context
                    chunkContext.range = offset..<(offset + length)
                    let chunk = body.slice(offset: offset, length: length)
                    let target = location
                    let response = try send(upstream, scopes: [.push(repository)], context: chunkContext) {
                        Transfer(
                            method: "PATCH", url: target,
                            headers: ["Content-Type: application/octet-stream", "Content-Range: \(offset)-\(offset + length - 1)"],
                            body: chunk)
                    }
                    guard response.status == 202 else { throw statusError(response, chunkContext) }
                    location = try nextLocation(response, context: chunkContext)
                    offset += length
                }
                try finishUpload(location, digest: digest, body: nil, repository: repository, context: context)
            } else {
                try finishUpload(location, digest: digest, body: body.slice(offset: 0, length: size), repository: repository, context: context)
            }
        } catch {
            cancelUpload(location, repository: repository)
            throw error
        }
        logger.debug("uploaded blob", metadata: ["repository": "\(repository)", "digest": "\(digest)", "size": "\(size)"])
    }

    /// Cross-repository mount: true when the registry linked the blob (201), false when it
    /// does not have it there or does not mount (then the caller uploads).
    public func mountBlob(_ repository: String, digest: Digest, from sourceRepository: String) throws(FetchError) -> Bool {
        let context = ErrorContext(operation: .mountBlob, registry: registry, repository: repository, digest: digest)
        let path = "/v2/\(repository)/blobs/uploads/?mount=\(percentEncode(digest.description))&from=\(percentEncode(sourceRepository))"
        let response = try send(upstream, scopes: [.push(repository), .pull(sourceRepository)], context: context) {
            Transfer(method: "POST", url: self.upstream.url(path))
        }
        switch response.status {
        case 201:
            return true
        case 202:
            // The registry opened an ordinary upload instead; close it so it does not linger.
            if let location = response.headers["Location"] { cancelUpload(upstream.resolve(location: location), repository: repository) }
            return false
        default:
            throw statusError(response, context)
        }
    }

    /// POST to open an upload session; returns its absolute URL.
    func startUpload(_ repository: String, context: ErrorContext, query: String) throws(FetchError) -> String {
        let response = try send(upstream, scopes: [.push(repository)], context: context) {
            Transfer(method: "POST", url: self.upstream.url("/v2/\(repository)/blobs/uploads/\(query)"))
        }
        guard response.status == 202 else { throw statusError(response, context) }
        return try nextLocation(response, context: context)
    }

    /// PUT `?digest=` to close an upload, with the whole body or none after PATCHes.
    func finishUpload(_ location: String, digest: Digest, body: RequestBody?, repository: String, context: ErrorContext) throws(FetchError) {
        let url = location + (location.contains("?") ? "&" : "?") + "digest=" + percentEncode(digest.description)
        let response = try send(upstream, scopes: [.push(repository)], context: context) {
            Transfer(method: "PUT", url: url, headers: ["Content-Type: application/octet-stream"], body: body)
        }
        guard response.status == 201 else { throw statusError(response, context) }
    }

    /// Best effort: DELETE an upload session that will not be finished.
    func cancelUpload(_ location: String, repository: String) {
        let context = ErrorContext(operation: .uploadBlob, registry: registry, repository: repository)
        _ = try? send(upstream, scopes: [.push(repository)], context: context) { Transfer(method: "DELETE", url: location) }
    }

    /// Each upload response names where the next request goes; it may be relative.
    func nextLocation(_ response: TransferResult, context: ErrorContext) throws(FetchError) -> String {
        guard let location = response.headers["Location"], !location.isEmpty else {
            throw context.error(.invalidResponse("upload response has no Location"), status: response.status)
        }
        let url = upstream.resolve(location: location)
        if let refusal = URLPolicy.check(url, from: upstream.url("/v2/"), what: "the upload location") {
            throw context.error(.refusedURL(refusal.description), status: response.status)
        }
        return url
    }
}
