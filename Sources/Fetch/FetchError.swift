import FoundationEssentials
import Verity

/// Everything that can go wrong talking to a registry, with enough context to act on it:
/// which operation, registry, repository, digest or byte range, the HTTP status and what the
/// registry said (its OCI error JSON when it sent one).
///
/// `description` is one line, fit for the command line.
public struct FetchError: Error, CustomStringConvertible {
    public enum Operation: String, Sendable {
        case ping = "ping"
        case token = "get a token"
        case getManifest = "get manifest"
        case putManifest = "put manifest"
        case headBlob = "check blob"
        case getBlob = "get blob"
        case uploadBlob = "upload blob"
        case mountBlob = "mount blob"
    }

    public enum Kind: Sendable, Equatable {
        /// The TCP/TLS connection could not be made (refused, DNS, TLS handshake).
        case connection(String)
        /// Connect timeout or a transfer slower than the low-speed limit.
        case timeout(String)
        /// Any other transport failure after the connection was up (dropped, reset, proxy).
        case transport(String)
        /// 401 although credentials were sent: the registry refused them.
        case unauthorized
        /// 401 and there are no credentials for this registry.
        case authenticationRequired
        /// 403: authenticated but not allowed.
        case forbidden
        /// 404 (or the OCI *_UNKNOWN codes).
        case notFound
        /// Any other unexpected HTTP status, including 5xx/429 after retries ran out.
        case httpStatus
        /// The bytes received do not hash to the digest they were asked for by.
        case digestMismatch(expected: Digest, actual: Digest)
        /// The registry offered more bytes than the caller allows.
        case tooLarge(limit: Int64, size: Int64?)
        /// The registry answered with something the protocol does not allow.
        case invalidResponse(String)
        /// The registry pointed imgfs to a URL it does not follow (another protocol than
        /// http/https, or a downgrade from https); the text says which, without the URL's path.
        case refusedURL(String)
        /// The caller asked for something inconsistent (e.g. a body whose size differs from the blob's).
        case invalidRequest(String)
        /// The caller's sink or body reader threw; `underlying` holds its error.
        case callback
        /// Reading credentials (config file, helper) failed.
        case credentials(String)
    }

    /// One entry of the OCI error body `{"errors":[{"code":..,"message":..}]}`.
    public struct RegistryMessage: Sendable, Equatable {
        public var code: String
        public var message: String
    }

    public var kind: Kind
    public var operation: Operation
    public var registry: String
    public var repository: String?
    public var digest: Digest?
    /// A tag or digest string, for manifest operations.
    public var reference: String?
    public var range: Range<Int64>?
    public var status: Int?
    /// The parsed OCI errors, if the body had them.
    public var registryErrors: [RegistryMessage]
    /// The start of the raw body when it was not OCI error JSON.
    public var body: String?
    /// The error the caller's callback threw, for `.callback`.
    public var underlying: (any Error)?

    public init(
        _ kind: Kind, operation: Operation, registry: String, repository: String? = nil, digest: Digest? = nil,
        reference: String? = nil, range: Range<Int64>? = nil, status: Int? = nil,
        registryErrors: [RegistryMessage] = [], body: String? = nil, underlying: (any Error)? = nil
    ) {
        self.kind = kind
        self.operation = operation
        self.registry = registry
        self.repository = repository
        self.digest = digest
        self.reference = reference
        self.range = range
        self.status = status
        self.registryErrors = registryErrors
        self.body = body
        self.underlying = underlying
    }

    /// True for failures worth another attempt later (transport and server-side trouble);
    /// callers such as a FUSE read may use it to decide between EIO now and a retry.
    public var isTransient: Bool {
        switch kind {
        case .connection, .timeout, .transport: true
        case .httpStatus: (status ?? 0) >= 500 || status == 429
        default: false
        }
    }

    public var description: String {
        let what = subject
        let detail = statusDetail
        switch kind {
        case .connection(let message):
            return "cannot connect to registry \(registry): \(message)"
        case .timeout(let message):
            return "registry \(registry) timed out while trying to \(operation.rawValue)\(what): \(message)"
        case .transport(let message):
            return "transfer from registry \(registry) failed while trying to \(operation.rawValue)\(what): \(message)"
        case .unauthorized:
            return "registry \(registry) refused credentials for \(repository ?? "its API")\(detail)"
        case .authenticationRequired:
            return "registry \(registry) requires credentials for \(repository ?? "its API")\(detail); run `imgfs login \(registry)`"
        case .forbidden:
            return "registry \(registry) denied access to \(repository ?? "its API")\(detail)"
        case .notFound:
            return "registry \(registry) has no \(notFoundSubject)\(detail)"
        case .httpStatus:
            return "registry \(registry) failed to \(operation.rawValue)\(what)\(detail)"
        case .digestMismatch(let expected, let actual):
            return "registry \(registry) sent bytes for\(what) that hash to \(actual), not \(expected)"
        case .tooLarge(let limit, let size):
            let sizeText = size.map { " is \($0) bytes," } ?? ""
            return "registry \(registry):\(what)\(sizeText) larger than the \(limit)-byte limit for \(operation.rawValue)"
        case .invalidResponse(let message):
            return "registry \(registry) sent an invalid response to \(operation.rawValue)\(what): \(message)"
        case .refusedURL(let message):
            return "registry \(registry) sent imgfs elsewhere while trying to \(operation.rawValue)\(what): \(message)"
        case .invalidRequest(let message):
            return "cannot \(operation.rawValue)\(what) on registry \(registry): \(message)"
        case .callback:
            return "\(operation.rawValue)\(what) from registry \(registry) stopped: \(underlying.map { "\($0)" } ?? "callback failed")"
        case .credentials(let message):
            return "cannot read credentials for registry \(registry): \(message)"
        }
    }

    /// " vm/disk@sha256:… bytes 0-99" — what the operation was about.
    private var subject: String {
        var parts: [String] = []
        if let repository {
            var s = repository
            if let digest { s += "@" + digest.description } else if let reference { s += (reference.hasPrefix("sha256:") ? "@" : ":") + reference }
            parts.append(s)
        }
        if let range { parts.append("bytes \(range.lowerBound)-\(range.upperBound - 1)") }
        return parts.isEmpty ? "" : " " + parts.joined(separator: " ")
    }

    private var notFoundSubject: String {
        let repo = repository ?? "?"
        switch operation {
        case .getManifest, .putManifest: return "manifest \(repo)\(reference.map { ($0.hasPrefix("sha256:") ? "@" : ":") + $0 } ?? "")"
        case .headBlob, .getBlob, .mountBlob, .uploadBlob: return "blob \(repo)\(digest.map { "@" + $0.description } ?? "")"
        default: return repo
        }
    }

    /// " (HTTP 401 UNAUTHORIZED: authentication required)"
    private var statusDetail: String {
        guard let status else { return "" }
        if let first = registryErrors.first {
            let more = registryErrors.count > 1 ? " (+\(registryErrors.count - 1) more)" : ""
            return " (HTTP \(status) \(first.code): \(first.message)\(more))"
        }
        if let body, !body.isEmpty { return " (HTTP \(status): \(body))" }
        return " (HTTP \(status))"
    }
}

extension FetchError {
    /// Parses an OCI error body; falls back to the first line of the raw text.
    static func parseBody(_ bytes: [UInt8]) -> (errors: [RegistryMessage], raw: String?) {
        guard !bytes.isEmpty else { return ([], nil) }
        struct Body: Decodable {
            struct Entry: Decodable { var code: String?; var message: String? }
            var errors: [Entry]?
            // Token servers answer in OAuth style.
            var error: String?
            var error_description: String?
            var details: String?
        }
        if let body = try? JSONDecoder().decode(Body.self, from: Data(bytes)) {
            if let errors = body.errors, !errors.isEmpty {
                return (errors.map { RegistryMessage(code: $0.code ?? "UNKNOWN", message: $0.message ?? "") }, nil)
            }
            if let error = body.error {
                return ([RegistryMessage(code: error, message: body.error_description ?? body.details ?? "")], nil)
            }
        }
        let text = String(decoding: bytes.prefix(300), as: UTF8.self)
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return ([], line)
    }
}
