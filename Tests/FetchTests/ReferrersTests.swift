import Testing
import OCI
import Verity
@testable import Fetch

/// Referrers against the test registry, which has no referrers API: pushing keeps the
/// `sha256-<hex>` tag's index current, and listing reads it back, filtered by artifact type.
@Suite struct ReferrersTests {
    static let type: MediaType = "application/vnd.imgfs.span-index.v1"

    func pushReferrer(_ c: RegistryClient, _ repository: String, subject: Descriptor, type: MediaType, payload: [UInt8]) throws -> Descriptor {
        let config = Referrers.emptyConfigDescriptor
        try c.uploadBlob(repository, digest: config.digest, size: config.size, body: .bytes(Referrers.emptyConfig))
        let blob = Descriptor(mediaType: "application/octet-stream", digest: SHA256Hasher.digest(payload), size: Int64(payload.count))
        try c.uploadBlob(repository, digest: blob.digest, size: blob.size, body: .bytes(payload))
        let manifest = Manifest(artifactType: type, config: config, layers: [blob], subject: subject)
        let (descriptor, source) = try c.pushReferrer(repository, manifest: manifest)
        #expect(source == .fallbackTag)
        #expect(descriptor.artifactType == type)
        return descriptor
    }

    @Test func pushedReferrersAreFoundThroughTheFallbackTag() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = try pushImage(c, repository: repository, tag: "v1", layer: randomBytes(1000))
            let subject = Descriptor(mediaType: .ociManifest, digest: SHA256Hasher.digest(bytes), size: Int64(bytes.count))

            let none = try c.referrers(repository, subject: subject.digest, artifactType: Self.type)
            #expect(none.descriptors.isEmpty && none.source == .fallbackTag)

            let first = try pushReferrer(c, repository, subject: subject, type: Self.type, payload: [1, 2, 3])
            let other = try pushReferrer(c, repository, subject: subject, type: "application/vnd.example.other", payload: [4])
            let second = try pushReferrer(c, repository, subject: subject, type: Self.type, payload: [5, 6])
            let found = try c.referrers(repository, subject: subject.digest, artifactType: Self.type)
            #expect(found.descriptors.map(\.digest) == [first.digest, second.digest])
            let tagged = try c.manifest(repository, reference: Referrers.fallbackTag(for: subject.digest), accept: [.ociIndex])
            let index = try ManifestEncoding.decode(ImageIndex.self, from: tagged.bytes)
            #expect(Set(index.manifests.map(\.digest)) == [first.digest, other.digest, second.digest])

            // A referrer pushed again moves to the end: the newest is the one readers take.
            let again = try pushReferrer(c, repository, subject: subject, type: Self.type, payload: [1, 2, 3])
            #expect(again.digest == first.digest)
            #expect(try c.referrers(repository, subject: subject.digest, artifactType: Self.type).descriptors.map(\.digest) == [second.digest, first.digest])
        }
    }
}
