import Verity

/// Where a mount gets manifests and blob bytes: a registry in production, an in-memory fake in
/// unit tests. One instance serves one repository. Implementations must be safe to call from
/// many threads at once and must not block forever (their timeouts bound every call).
public protocol BlobSource: Sendable {
    /// The manifest (or image index) `reference` (a tag or `sha256:` digest) names, as received.
    func manifest(_ reference: String) throws(SourceError) -> SourceManifest
    /// A whole small blob. The caller checks its digest; `maxSize` bounds what is read.
    func blob(_ digest: Digest, maxSize: Int64) throws(SourceError) -> [UInt8]
    /// Exactly the bytes `range` of a blob, unverified (the caller verifies each frame).
    func blob(_ digest: Digest, range: Range<Int64>) throws(SourceError) -> [UInt8]
    /// The same, from the upstream registry only when `mirrors` is false: asked after bytes a
    /// mirror served failed verification, so a mirror with bad bytes costs one refetch, not EIO.
    func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool) throws(SourceError) -> [UInt8]
}

extension BlobSource {
    /// A source without mirrors has only one place to ask.
    public func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool) throws(SourceError) -> [UInt8] {
        try blob(digest, range: range)
    }
}

/// A manifest's bytes as the registry sent them, and the media type it declared.
public struct SourceManifest: Sendable {
    public var bytes: [UInt8]
    public var mediaType: String?

    public init(bytes: [UInt8], mediaType: String?) {
        self.bytes = bytes
        self.mediaType = mediaType
    }
}

/// A failed registry call, classified so the mount can tell "offline" (fall back to the local
/// store) from "the registry said no" (report it).
public struct SourceError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// Connection refused, DNS, timeout, 5xx: the registry could not answer now.
        case unreachable
        /// The registry does not have it (404).
        case notFound
        /// Authentication or authorisation failed.
        case denied
        /// Anything else (a malformed answer, a short body, a 4xx).
        case other
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
