import Cache
import Foundation
import ImageLayouts
import Mount
import OCI
import Testing
import Verity

/// A mount of an image index: the entry for the platform asked for, through the metadata store,
/// so that the index remounts offline too.
struct ImageIndexTests {
    @Test func anIndexMountsThePlatformsEntryAndRemountsOffline() throws {
        let amd64 = try TestImage.make(frames: 4, seed: 1)
        let arm64 = try TestImage.make(frames: 6, seed: 2)
        let registry = FakeRegistry()
        registry.add(amd64, tag: "amd64")
        registry.add(arm64, tag: "arm64")
        func entry(_ image: TestImage, _ platform: String) throws -> Descriptor {
            Descriptor(mediaType: .ociManifest, digest: SHA256Hasher.digest(image.manifestBytes), size: Int64(image.manifestBytes.count),
                       platform: try Platform(parsing: platform))
        }
        let indexBytes = ManifestEncoding.encode(ImageIndex(manifests: [try entry(amd64, "linux/amd64"), try entry(arm64, "linux/arm64")]))
        registry.addManifest(indexBytes, tag: "multi")
        let directory = TemporaryDirectory()
        let store = MetadataStore(root: directory.path, logger: testLogger)
        let locator = Reference(registry: "fake:5000", repository: "vm/test", tag: "multi", digest: nil)
        func resolver(_ platform: String) throws -> ImageResolver {
            ImageResolver(source: registry, store: store, platform: try Platform(parsing: platform), logger: testLogger)
        }

        let arm = try resolver("linux/arm64").resolve(locator)
        #expect(arm.manifestDigest == SHA256Hasher.digest(arm64.manifestBytes))
        #expect(arm.index == arm64.index && !arm.offline)
        let amd = try resolver("linux/amd64").resolve(locator)
        #expect(amd.manifestDigest == SHA256Hasher.digest(amd64.manifestBytes) && amd.index == amd64.index)

        #expect {
            try resolver("linux/s390x").resolve(locator)
        } throws: { error in
            guard case .manifest(.noMatchingPlatform(let index, _, let available)) = error as? MountError else { return false }
            return index == SHA256Hasher.digest(indexBytes) && available == ["linux/amd64", "linux/arm64"]
                && "\(error)".contains("linux/amd64, linux/arm64")
        }

        registry.setOffline(true)
        let offline = try resolver("linux/arm64").resolve(locator)
        #expect(offline.offline && offline.manifestDigest == arm.manifestDigest && offline.index == arm64.index)
    }
}
