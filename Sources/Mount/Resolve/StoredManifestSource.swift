import Cache
import ImageLayouts
import ImgfsFormat
import OCI
import Threading
import Verity

/// The registry as `ManifestResolver` reads it for a mount: through the metadata store, so that
/// what one mount resolved the next finds offline. A manifest asked by digest comes from the
/// store when it is there; a tag is asked of the registry and, when that cannot be reached,
/// resolves to the manifest it named at the last mount. One resolution's worth: not shared.
final class StoredManifestSource: ManifestSource {
    let resolver: ImageResolver
    let locator: Reference
    /// True once a tag resolved from the store because the registry could not be reached.
    private(set) var offline = false
    /// The frame index's transfer, when it came from the registry: the mount's first figure
    /// for the link (`LinkEstimate.seed`).
    private(set) var indexTransfer: TransferSample?

    init(resolver: ImageResolver, locator: Reference) {
        self.resolver = resolver
        self.locator = locator
    }

    static let manifestLimit: Int64 = 4 * 1024 * 1024

    func manifest(_ reference: String) throws(MountError) -> (digest: Digest, bytes: [UInt8]) {
        if let digest = try? Digest(parsing: reference) { return (digest, try manifest(digest)) }
        let store = resolver.store
        let fetched: SourceManifest
        do { fetched = try resolver.source.manifest(reference) } catch {
            guard error.kind == .unreachable else { throw .source(operation: "fetching manifest \(locator)", error) }
            guard let digest = store.reference(registry: locator.registry, repository: locator.repository, tag: reference),
                  let bytes = store.blob(digest, limit: Self.manifestLimit) else {
                throw .offline(reference: locator.description, cause: error)
            }
            resolver.logger.warning("registry unreachable; using the manifest this tag named when it was last mounted", metadata: [
                "reference": "\(locator)", "manifest": "\(digest)", "error": "\(error)"])
            offline = true
            return (digest, bytes)
        }
        try checkSize(fetched.bytes)
        let digest = SHA256Hasher.digest(fetched.bytes)
        do {
            try store.store(fetched.bytes, digest: digest)
            try store.setReference(registry: locator.registry, repository: locator.repository, tag: reference, to: digest)
        } catch { throw .cache(error) }
        return (digest, fetched.bytes)
    }

    /// A manifest by digest: content-addressed, so a stored copy is as good as the registry's.
    func manifest(_ digest: Digest) throws(MountError) -> [UInt8] {
        if let bytes = resolver.store.blob(digest, limit: Self.manifestLimit) { return bytes }
        let fetched: SourceManifest
        do { fetched = try resolver.source.manifest(digest.description) } catch {
            if error.kind == .unreachable { throw .offline(reference: locator.description, cause: error) }
            throw .source(operation: "fetching manifest \(digest)", error)
        }
        try checkSize(fetched.bytes)
        let actual = SHA256Hasher.digest(fetched.bytes)
        guard actual == digest else { throw .manifestDigestMismatch(expected: digest, actual: actual) }
        do { try resolver.store.store(fetched.bytes, digest: digest) } catch { throw .cache(error) }
        return fetched.bytes
    }

    func blob(_ descriptor: Descriptor, limit: Int64) throws(MountError) -> [UInt8] {
        let isIndex = descriptor.mediaType == .imgfsIndex
        let (bytes, transfer) = try resolver.storedOrFetchedBlob(descriptor, limit: limit, what: isIndex ? "frame index" : "config", locator: locator)
        if isIndex, let transfer { indexTransfer = transfer }
        return bytes
    }

    /// The start of a containerDisk layer, where its disk's tar header is. Kept in the store as
    /// well (by content, named by a reference per layer and range), so that a containerDisk
    /// remounts offline like every other format. Demand: the mount waits for it.
    func blob(_ descriptor: Descriptor, range: Range<Int64>) throws(MountError) -> [UInt8] {
        let store = resolver.store
        let name = "layer-range-\(descriptor.digest.hex)-\(range.lowerBound)-\(range.upperBound)"
        let bytes: [UInt8]
        do {
            bytes = try resolver.source.blob(descriptor.digest, range: range, mirrors: true, deadline: monotonicNow() + 60, priority: .demand)
        } catch {
            guard error.kind == .unreachable else { throw .source(operation: "reading the start of layer \(descriptor.digest)", error) }
            if let digest = store.reference(registry: locator.registry, repository: locator.repository, tag: name),
               let bytes = store.blob(digest, limit: Int64(range.count)), bytes.count == range.count {
                return bytes
            }
            throw .offline(reference: locator.description, cause: error)
        }
        let digest = SHA256Hasher.digest(bytes)
        do {
            try store.store(bytes, digest: digest)
            try store.setReference(registry: locator.registry, repository: locator.repository, tag: name, to: digest)
        } catch { throw .cache(error) }
        return bytes
    }

    private func checkSize(_ bytes: [UInt8]) throws(MountError) {
        guard Int64(bytes.count) <= Self.manifestLimit else {
            throw .source(operation: "fetching manifest", SourceError(.other, "manifest of \(bytes.count) bytes exceeds the limit of \(Self.manifestLimit)"))
        }
    }
}
