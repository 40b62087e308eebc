import Testing
@testable import ImageLayouts
import OCI
import Verity

/// `ManifestResolver`: a manifest as it is, an image index followed to the platform's entry,
/// and errors that say which platforms an index has and which call failed.
struct ManifestResolverTests {
    struct Unreachable: Error, Equatable {}

    /// A registry in memory: manifests by tag and digest, blobs by digest.
    final class MemorySource: ManifestSource {
        var manifests: [String: [UInt8]] = [:]
        var blobs: [Digest: [UInt8]] = [:]
        var asked: [String] = []

        @discardableResult
        func add<T: Encodable>(_ value: T, tag: String? = nil) -> Descriptor {
            let bytes = ManifestEncoding.encode(value)
            let digest = SHA256Hasher.digest(bytes)
            manifests[digest.description] = bytes
            if let tag { manifests[tag] = bytes }
            return Descriptor(mediaType: .ociManifest, digest: digest, size: Int64(bytes.count))
        }

        func manifest(_ reference: String) throws(Unreachable) -> (digest: Digest, bytes: [UInt8]) {
            asked.append(reference)
            guard let bytes = manifests[reference] else { throw Unreachable() }
            return (SHA256Hasher.digest(bytes), bytes)
        }

        func blob(_ descriptor: Descriptor, limit: Int64) throws(Unreachable) -> [UInt8] {
            guard let bytes = blobs[descriptor.digest] else { throw Unreachable() }
            return bytes
        }

        func blob(_ descriptor: Descriptor, range: Range<Int64>) throws(Unreachable) -> [UInt8] {
            guard let bytes = blobs[descriptor.digest], range.upperBound <= Int64(bytes.count) else { throw Unreachable() }
            return Array(bytes[Int(range.lowerBound)..<Int(range.upperBound)])
        }
    }

    /// A tart image of `size` bytes (tart's reader needs no blob).
    static func tart(size: UInt64) -> Manifest {
        let digest = SHA256Hasher.digest(Array("\(size)".utf8))
        let piece = Descriptor(mediaType: TartFormat.diskMediaType, digest: digest, size: 10,
                               annotations: [TartFormat.uncompressedSizeAnnotation: String(size), TartFormat.uncompressedDigestAnnotation: digest.description])
        return Manifest(config: Descriptor(mediaType: .ociConfig, digest: digest, size: 5), layers: [piece],
                        annotations: [TartFormat.diskSizeAnnotation: String(size)])
    }

    static func entry(_ descriptor: Descriptor, _ platform: String) throws -> Descriptor {
        var entry = descriptor
        entry.platform = try Platform(parsing: platform)
        return entry
    }

    /// An index of a 1000-byte amd64 image and a 2000-byte arm64 image, tagged `multi`.
    static func twoPlatforms(_ source: MemorySource) throws -> (amd64: Descriptor, arm64: Descriptor, index: Descriptor) {
        let amd64 = source.add(tart(size: 1000))
        let arm64 = source.add(tart(size: 2000))
        let index = source.add(ImageIndex(manifests: [try entry(arm64, "linux/arm64"), try entry(amd64, "linux/amd64")]), tag: "multi")
        return (amd64, arm64, index)
    }

    @Test func aManifestIsUsedAsItIs() throws {
        let source = MemorySource()
        let plain = source.add(Self.tart(size: 1000), tag: "v1")
        let (image, resolved) = try ManifestResolver(source: source, platform: .host).image("v1")
        #expect(resolved.digest == plain.digest && resolved.indexDigest == nil)
        #expect(image.kind == .tart && image.layout.diskSize == 1000)
    }

    @Test func anIndexIsFollowedToTheEntryForThePlatform() throws {
        let source = MemorySource()
        let (amd64, arm64, index) = try Self.twoPlatforms(source)
        let (image, resolved) = try ManifestResolver(source: source, platform: try Platform(parsing: "linux/amd64")).image("multi")
        #expect(resolved.digest == amd64.digest && resolved.indexDigest == index.digest)
        #expect(image.layout.diskSize == 1000)
        #expect(source.asked == ["multi", amd64.digest.description])

        let other = try ManifestResolver(source: source, platform: try Platform(parsing: "linux/arm64")).image(index.digest.description)
        #expect(other.manifest.digest == arm64.digest && other.image.layout.diskSize == 2000)
    }

    @Test func anIndexWithoutTheEntryListsItsPlatforms() throws {
        let source = MemorySource()
        let (_, _, index) = try Self.twoPlatforms(source)
        let wanted = try Platform(parsing: "linux/s390x")
        #expect(throws: ResolveError<Unreachable>.self) { try ManifestResolver(source: source, platform: wanted).manifest("multi") }
        do {
            _ = try ManifestResolver(source: source, platform: wanted).manifest("multi")
        } catch {
            guard case .manifest(let error) = error else { Issue.record("\(error)"); return }
            #expect(error == .noMatchingPlatform(index: index.digest, wanted: wanted, available: ["linux/arm64", "linux/amd64"]))
            #expect(error.description.contains("no entry for linux/s390x; it has linux/arm64, linux/amd64"))
        }
    }

    @Test func aDockerManifestListAndAnIndexWithoutAMediaTypeAreIndexesToo() throws {
        let source = MemorySource()
        let amd64 = source.add(Self.tart(size: 1000))
        source.add(ImageIndex(mediaType: .dockerManifestList, manifests: [try Self.entry(amd64, "linux/amd64")]), tag: "docker")
        source.add(ImageIndex(mediaType: nil, manifests: [try Self.entry(amd64, "linux/amd64")]), tag: "bare")
        let resolver = ManifestResolver(source: source, platform: try Platform(parsing: "linux/amd64"))
        #expect(try resolver.manifest("docker").digest == amd64.digest)
        #expect(try resolver.manifest("bare").digest == amd64.digest)
    }

    @Test func anIndexInsideAnIndexIsRefused() throws {
        let source = MemorySource()
        let (_, _, inner) = try Self.twoPlatforms(source)
        source.add(ImageIndex(manifests: [try Self.entry(inner, "linux/amd64")]), tag: "nested")
        let resolver = ManifestResolver(source: source, platform: try Platform(parsing: "linux/amd64"))
        do {
            _ = try resolver.manifest("nested")
            Issue.record("a nested index resolved")
        } catch {
            guard case .manifest(.badManifest(let digest, let reason)) = error else { Issue.record("\(error)"); return }
            #expect(digest == inner.digest && reason.contains("image index inside image index"))
        }
    }

    @Test func aFailedBlobIsTheSourcesErrorNotALayoutError() throws {
        let source = MemorySource()
        // An imgfs manifest: its reader loads the config, which this source does not have.
        let config = Descriptor(mediaType: "application/vnd.imgfs.config.v1+json", digest: SHA256Hasher.digest([1]), size: 1)
        source.add(Manifest(config: config, layers: []), tag: "v1")
        do {
            _ = try ManifestResolver(source: source, platform: .host).image("v1")
            Issue.record("resolved without its config")
        } catch {
            guard case .source(let failure) = error else { Issue.record("\(error)"); return }
            #expect(failure == Unreachable())
        }
    }

    @Test func bytesThatAreNoManifestNameTheirDigest() throws {
        let source = MemorySource()
        source.manifests["junk"] = Array("{not json".utf8)
        do {
            _ = try ManifestResolver(source: source, platform: .host).manifest("junk")
            Issue.record("junk resolved")
        } catch {
            guard case .manifest(.badManifest(let digest, _)) = error else { Issue.record("\(error)"); return }
            #expect(digest == SHA256Hasher.digest(Array("{not json".utf8)))
        }
    }
}
