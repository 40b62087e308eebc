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
    ///
    /// `mirrors` false asks the upstream registry only: asked after bytes a mirror served failed
    /// verification, so a mirror with bad bytes costs one refetch, not EIO.
    ///
    /// `deadline` (CLOCK_MONOTONIC seconds, as `monotonicNow()`) bounds the whole call, its
    /// retries included: a reader passes the moment it must answer the kernel by, and the call
    /// has failed by then however slowly the registry sends.
    ///
    /// `priority` says who waits for the bytes: a source whose transfers share a link sends
    /// `.demand` ones first (`DemandGate`). It has no default, so that work nobody waits for
    /// cannot hold readers back by leaving it out.
    func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool, deadline: Double, priority: FetchPriority) throws(SourceError) -> [UInt8]
    /// The same bytes handed to `sink` as they arrive, in order and never more than `range`
    /// holds, so that the caller decodes while the rest of the range crosses the link; bytes
    /// already handed over stay valid if the call then fails.
    func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool, deadline: Double, priority: FetchPriority,
              sink: (UnsafeRawBufferPointer) -> Void) throws(SourceError)
    /// The span index (docs/FORMAT.md, "Span indexes") of the image manifest `subject`: the
    /// artifact `pinned` names, else the newest one the registry lists for it; nil when there is
    /// none. The source checks that the artifact names `subject` and that the blob matches its
    /// descriptor; the caller decodes it.
    func spanIndex(of subject: Digest, pinned: Digest?) throws(SourceError) -> SpanIndexBlob?
}

extension BlobSource {
    /// Sources without a shared link to arbitrate (test fakes) hand the whole range over at once.
    public func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool, deadline: Double, priority: FetchPriority,
                     sink: (UnsafeRawBufferPointer) -> Void) throws(SourceError) {
        try blob(digest, range: range, mirrors: mirrors, deadline: deadline, priority: priority).withUnsafeBytes { sink($0) }
    }

    /// Sources without referrers (test fakes) have no span indexes.
    public func spanIndex(of subject: Digest, pinned: Digest?) throws(SourceError) -> SpanIndexBlob? { nil }
}

/// Who waits for a range request's bytes.
public enum FetchPriority: Sendable {
    /// A reader, blocked until they arrive.
    case demand
    /// Nobody yet: fetched ahead of readers, for the reason `FetchClass` says (not `.demand`);
    /// `urgent` says whether a reader has meanwhile come to wait for them, after which the
    /// transfer no longer holds still for others.
    case background(FetchClass, urgent: @Sendable () -> Bool)
}

/// A span index blob as found for an image: its bytes, unverified beyond their digest.
public struct SpanIndexBlob: Sendable {
    /// The artifact manifest's digest (what `--index` pins).
    public var artifact: Digest
    public var blob: Digest
    public var bytes: [UInt8]

    public init(artifact: Digest, blob: Digest, bytes: [UInt8]) {
        self.artifact = artifact
        self.blob = blob
        self.bytes = bytes
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
    /// What went wrong, when no underlying error says it.
    public var message: String
    /// The source's own error (a `FetchError` from the registry client), kept whole: its
    /// operation, status and the registry's answer reach the log as the client described them.
    public var cause: (any Error)?

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
        self.cause = nil
    }

    public init(_ kind: Kind, cause: any Error) {
        self.kind = kind
        self.message = ""
        self.cause = cause
    }

    public var description: String { cause.map { "\($0)" } ?? message }
}
