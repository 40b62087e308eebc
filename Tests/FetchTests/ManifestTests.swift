import Testing
import OCI
import Verity
@testable import Fetch

@Suite struct ManifestTests {
    @Test func putAndGetByTagAndByDigest() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = try pushImage(c, repository: repository, tag: "v1", layer: randomBytes(1000))
            let digest = SHA256Hasher.digest(bytes)

            let byTag = try c.manifest(repository, reference: "v1")
            #expect(byTag.bytes == bytes)
            #expect(byTag.digest == digest)
            #expect(byTag.mediaType == .ociManifest)

            let byDigest = try c.manifest(repository, reference: digest.description)
            #expect(byDigest == byTag)
        }
    }

    @Test func missingManifestIsTypedNotFound() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            _ = try pushImage(c, repository: repository, tag: "v1", layer: [1])
            do throws(FetchError) {
                _ = try c.manifest(repository, reference: "nope")
                Issue.record("expected 404")
            } catch {
                #expect(error.kind == .notFound)
                #expect(error.status == 404)
                #expect(error.registryErrors.first?.code == "MANIFEST_UNKNOWN")
                #expect(error.description.hasPrefix("registry \(registry.host) has no manifest \(repository):nope (HTTP 404 MANIFEST_UNKNOWN"))
            }
        }
    }

    @Test func manifestReferringToMissingBlobIsRejected() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let missing = SHA256Hasher.digest([42])
            let manifest = Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",\
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(missing)","size":1},"layers":[]}
            """.utf8)
            do throws(FetchError) {
                try c.putManifest(uniqueRepository(), reference: "v1", bytes: manifest, mediaType: .ociManifest)
                Issue.record("expected an error")
            } catch {
                #expect(error.status == 400)
                #expect(error.operation == .putManifest)
                #expect(error.registryErrors.contains { $0.code == "MANIFEST_BLOB_UNKNOWN" })
            }
        }
    }
}
