import Fetch
import OCI
import SpanIndexing
import Threading
import Verity

/// The registry as the mount's `BlobSource`: one repository of one `RegistryClient`, with
/// `FetchError`s classified so the mount can tell "offline" from "refused".
public struct RegistryBlobSource: BlobSource {
    public let client: RegistryClient
    public let repository: String

    public init(client: RegistryClient, repository: String) {
        self.client = client
        self.repository = repository
    }

    public func manifest(_ reference: String) throws(SourceError) -> SourceManifest {
        do {
            let fetched = try client.manifest(repository, reference: reference, accept: MediaType.acceptedManifests)
            return SourceManifest(bytes: fetched.bytes, mediaType: fetched.mediaType.rawValue)
        } catch {
            throw Self.classify(error)
        }
    }

    public func blob(_ digest: Digest, maxSize: Int64) throws(SourceError) -> [UInt8] {
        do { return try client.blob(repository, digest: digest, maxSize: maxSize) } catch { throw Self.classify(error) }
    }

    public func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool, deadline: Double, priority: FetchPriority) throws(SourceError) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(range.count))
        try blob(digest, range: range, mirrors: mirrors, deadline: deadline, priority: priority) { bytes.append(contentsOf: $0) }
        return bytes
    }

    public func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool, deadline: Double, priority: FetchPriority,
                     sink: (UnsafeRawBufferPointer) -> Void) throws(SourceError) {
        var left = Int(range.count)
        let gate = client.demandGate
        let (transferClass, urgent): (TransferClass, @Sendable () -> Bool) = switch priority {
        case .demand: (.demand, { true })
        case .background(let fetchClass, let urgent): (fetchClass.transferClass, urgent)
        }
        let yields = transferClass.yields
        do throws(FetchError) {
            try gate.run(transferClass) { () throws(FetchError) in
                // A request that yields does not start while one it yields to runs: its first
                // window of bytes would cross the link ahead of that one's. Bounded, so that
                // background work under a long run of reads still moves.
                if yields { gate.waitToStart(transferClass, urgent: urgent, upTo: min(DemandGate.maxStartDelay, deadline - monotonicNow() - 1)) }
                try client.blob(repository, digest: digest, range: range, mirrors: mirrors, deadline: deadline, background: yields) { chunk in
                    // Between chunks, in libcurl's write callback: holding still here stops
                    // reading the socket, which is what makes room on the link for the others.
                    if yields { gate.yield(transferClass, urgent: urgent) }
                    // Never more than asked for, whatever the server sends.
                    let part = UnsafeRawBufferPointer(rebasing: chunk.prefix(left))
                    left -= part.count
                    if !part.isEmpty { sink(part) }
                }
            }
        } catch {
            throw Self.classify(error)
        }
    }

    public func spanIndex(of subject: Digest, pinned: Digest?) throws(SourceError) -> SpanIndexBlob? {
        do {
            guard let found = try SpanIndexArtifact.findBlob(client: client, repository: repository, subject: subject, pinned: pinned) else { return nil }
            return SpanIndexBlob(artifact: found.manifestDigest, blob: found.blob.digest, bytes: found.bytes)
        } catch {
            if case .registry(let error) = error { throw Self.classify(error) }
            throw SourceError(.other, cause: error)
        }
    }

    public static func classify(_ error: FetchError) -> SourceError {
        let kind: SourceError.Kind = switch error.kind {
        case .connection, .timeout, .transport: .unreachable
        case .httpStatus: (error.status ?? 0) >= 500 || error.status == 429 ? .unreachable : .other
        case .notFound: .notFound
        case .unauthorized, .authenticationRequired, .forbidden, .credentials: .denied
        default: .other
        }
        return SourceError(kind, cause: error)
    }
}

extension FetchClass {
    var transferClass: TransferClass {
        switch self {
        case .demand: .demand
        case .readahead: .readahead
        case .profile: .profile
        case .prefetch: .prefetch
        }
    }
}
