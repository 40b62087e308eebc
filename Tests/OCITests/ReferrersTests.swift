import Testing
import Verity
@testable import OCI

@Suite struct ReferrersTests {
    let subject = SHA256Hasher.digest(Array("image".utf8))

    func referrer(_ name: String) -> Descriptor {
        Descriptor(mediaType: .ociManifest, digest: SHA256Hasher.digest(Array(name.utf8)), size: 100, artifactType: "application/vnd.imgfs.span-index.v1")
    }

    @Test func fallbackTagIsTheSpecsSchema() {
        #expect(Referrers.fallbackTag(for: subject) == "sha256-" + subject.hex)
        #expect(Referrers.fallbackTag(for: subject).count == 71)
    }

    @Test func addingKeepsOthersAndMovesARepushToTheEnd() {
        let a = referrer("a"), b = referrer("b")
        var index = Referrers.adding(a, to: nil)
        #expect(index.manifests == [a])
        #expect(index.mediaType == .ociIndex)
        index = Referrers.adding(b, to: index)
        index = Referrers.adding(a, to: index)
        #expect(index.manifests == [b, a])
    }

    @Test func subjectAndArtifactTypeSurviveEncoding() throws {
        let manifest = Manifest(artifactType: "application/vnd.imgfs.span-index.v1", config: Referrers.emptyConfigDescriptor,
                                layers: [referrer("blob")], subject: Descriptor(mediaType: .ociManifest, digest: subject, size: 1234))
        let bytes = ManifestEncoding.encode(manifest)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"subject\""))
        #expect(try ManifestEncoding.decode(Manifest.self, from: bytes) == manifest)
        // Manifests without a subject encode as before: no `subject` key.
        let plain = Manifest(config: Referrers.emptyConfigDescriptor, layers: [])
        #expect(!String(decoding: ManifestEncoding.encode(plain), as: UTF8.self).contains("subject"))
        #expect(Referrers.emptyConfigDescriptor.digest.description == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
    }
}
