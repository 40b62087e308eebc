import Codec
import Foundation
import Testing
@testable import ImageLayouts
import OCI
import Verity

/// Issue 13: KubeVirt containerDisks, found by reading the start of their layers and decoded by
/// `SegmentDecoder`'s tar stage; everything wrong with one is named by layer and member.
struct ContainerDiskTests {
    static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let encoder = try GzipStreamEncoder(level: 1)
        var out = [UInt8]()
        try encoder.encode(bytes) { out += $0 }
        try encoder.finish { out += $0 }
        return out
    }

    static func layer(_ members: [(String, [UInt8])], gzip compress: Bool = true) throws -> [UInt8] {
        var tar = [UInt8]()
        for (path, data) in members {
            tar += TarStreamTests.member(path, data, type: path.hasSuffix("/") ? .directory : .regular)
        }
        tar += TarWriter.endOfArchive
        return compress ? try gzip(tar) : tar
    }

    /// A manifest over `layers`, and a range loader serving them.
    static func image(_ layers: [[UInt8]], gzip: Bool = true) -> (Manifest, BlobRangeLoader, [Digest: [UInt8]]) {
        var blobs = [Digest: [UInt8]]()
        let descriptors = layers.map { bytes in
            let digest = SHA256Hasher.digest(bytes)
            blobs[digest] = bytes
            return Descriptor(mediaType: gzip ? .ociLayerGzip : "application/vnd.oci.image.layer.v1.tar", digest: digest, size: Int64(bytes.count))
        }
        let config = Descriptor(mediaType: .ociConfig, digest: SHA256Hasher.digest(Array("{}".utf8)), size: 2)
        let served = blobs
        let load: BlobRangeLoader = { descriptor, range in
            guard let bytes = served[descriptor.digest] else { throw LayoutTests.LoaderUnused() }
            return Array(bytes[Int(range.lowerBound)..<Int(range.upperBound)])
        }
        return (Manifest(config: config, layers: descriptors), load, blobs)
    }

    static func decode(_ segment: Segment, blob: [UInt8], piece: Int = 1000) throws -> [UInt8] {
        var disk = [UInt8](repeating: 0xEE, count: Int(segment.length))
        var written = [Bool](repeating: false, count: Int(segment.length))
        let decoder = try SegmentDecoder(segment: segment)
        var start = 0
        while start < blob.count {
            let end = min(blob.count, start + piece)
            try blob[start..<end].withUnsafeBytes { raw in
                try decoder.feed(raw) { offset, bytes in
                    for (i, byte) in bytes.enumerated() {
                        disk[Int(offset) + i] = byte
                        written[Int(offset) + i] = true
                    }
                }
            }
            start = end
        }
        try decoder.finish()
        // Bytes never written are holes: zeros.
        for i in disk.indices where !written[i] { disk[i] = 0 }
        return disk
    }

    @Test func aRawDiskIsFoundReadAndDecodedToItsBytes() throws {
        let disk = TarStreamTests.pattern(300_000)
        let blob = try Self.layer([("disk/", []), ("disk/disk.img", disk)])
        let (manifest, load, _) = Self.image([blob])
        let image = try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load)
        #expect(image.kind == .containerDisk)
        #expect(image.diskFormat == .raw)
        #expect(image.layout.diskSize == UInt64(disk.count))
        let segment = try #require(image.layout.segments.first)
        #expect(segment.codec == .gzipTar && segment.tarMember == "disk/disk.img")
        #expect(try Self.decode(segment, blob: blob) == disk)
    }

    @Test func aQcow2DiskIsKnownByItsMagicAndAnUncompressedLayerReadsToo() throws {
        let disk = DiskFileFormat.qcow2Magic + TarStreamTests.pattern(4000)
        let blob = try Self.layer([("./disk/fedora.qcow2", disk)], gzip: false)
        let (manifest, load, _) = Self.image([blob], gzip: false)
        let image = try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load)
        #expect(image.diskFormat == .qcow2)
        #expect(image.diskFormat.fileName == "disk.qcow2")
        let segment = try #require(image.layout.segments.first)
        #expect(segment.codec == .tar)
        #expect(try Self.decode(segment, blob: blob, piece: 333) == disk)
        // The containerdisks project names its qcow2 disks disk.img: the magic decides.
        let named = try Self.layer([("disk/", []), ("disk/disk.img", disk)])
        let (asImg, asImgLoad, _) = Self.image([named])
        #expect(try VMImageReader.read(asImg, load: LayoutTests.noLoader, loadRange: asImgLoad).diskFormat == .qcow2)
        // A file named .qcow2 that is not one is served raw.
        let misnamed = try Self.layer([("disk/x.qcow2", TarStreamTests.pattern(100))])
        let (other, otherLoad, _) = Self.image([misnamed])
        #expect(try VMImageReader.read(other, load: LayoutTests.noLoader, loadRange: otherLoad).diskFormat == .raw)
    }

    @Test func theDiskMayBeInAnyLayerButOnlyOneFileUnderDiskIsTheDisk() throws {
        let base = try Self.layer([("etc/", []), ("etc/motd", Array("hi\n".utf8))])
        let diskLayer = try Self.layer([("disk/disk.img", TarStreamTests.pattern(1000))])
        let (manifest, load, _) = Self.image([base, diskLayer])
        let image = try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load)
        #expect(image.layout.segments.first?.layerIndex == 1)

        let second = try Self.layer([("disk/other.img", TarStreamTests.pattern(10))])
        let (twoLayers, twoLoad, _) = Self.image([diskLayer, second])
        #expect(throws: ImageLayoutError.badLayer(layer: "layer 1 (\(SHA256Hasher.digest(second)))",
                                                  reason: "holds disk/other.img, and layer 0 (\(SHA256Hasher.digest(diskLayer))) holds disk/disk.img: "
                                                    + "exactly one file under /disk/ must be the disk")) {
            try VMImageReader.read(twoLayers, load: LayoutTests.noLoader, loadRange: twoLoad)
        }
    }

    @Test func aSecondDiskInTheSameLayerFailsTheVerifiedDecode() throws {
        let blob = try Self.layer([("disk/disk.img", TarStreamTests.pattern(1000)), ("disk/shadow.img", TarStreamTests.pattern(1000, seed: 3))])
        let (manifest, load, _) = Self.image([blob])
        let image = try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load)
        let segment = try #require(image.layout.segments.first)
        do {
            _ = try Self.decode(segment, blob: blob)
            Issue.record("decoded a layer with two disks")
        } catch {
            #expect("\(error)".contains("disk/shadow.img") && "\(error)".contains(segment.blob.digest.description), "\(error)")
        }
    }

    @Test func aContainerImageWithoutADiskIsNamedAsOne() throws {
        let blob = try Self.layer([("etc/motd", Array("hi\n".utf8))])
        let (manifest, load, _) = Self.image([blob])
        #expect(throws: ImageLayoutError.unrecognised(reason:
            "it is a container image without a disk file under /disk/ (config application/vnd.oci.image.config.v1+json, 1 layer of "
            + "application/vnd.oci.image.layer.v1.tar+gzip); " + ForeignArtifact.whatImgfsReads)) {
            try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load)
        }
    }

    @Test func linksWhiteoutsAndNestedFilesUnderDiskAreNotTakenForTheDisk() throws {
        var link = TarStreamTests.header("disk/disk.img", size: 0) { $0[156] = UInt8(ascii: "1") }
        link += TarWriter.endOfArchive
        let (manifest, load, _) = Self.image([try Self.gzip(link)])
        #expect(throws: ImageLayoutError.self) { try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load) }

        let whiteout = try Self.layer([("disk/.wh.disk.img", [])])
        let (w, wLoad, _) = Self.image([whiteout])
        do {
            _ = try VMImageReader.read(w, load: LayoutTests.noLoader, loadRange: wLoad)
            Issue.record("read a whiteout")
        } catch { #expect("\(error)".contains("whiteout")) }

        let nested = try Self.layer([("disk/sub/disk.img", [1, 2, 3])])
        let (n, nLoad, _) = Self.image([nested])
        #expect(throws: ImageLayoutError.self) { try VMImageReader.read(n, load: LayoutTests.noLoader, loadRange: nLoad) }
    }

    @Test func aTamperedOrTruncatedLayerNeverDecodesToADisk() throws {
        let disk = TarStreamTests.pattern(50_000)
        let blob = try Self.layer([("disk/disk.img", disk)])
        let (manifest, load, _) = Self.image([blob])
        let segment = try #require(try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load).layout.segments.first)
        // Truncated: the compressed size check (and the gzip and tar ends) fail.
        #expect(throws: SegmentError.self) { try Self.decode(segment, blob: Array(blob.dropLast(40))) }
        // Another layer of the same size under this digest: the digest check fails.
        var tampered = blob
        tampered[tampered.count / 2] ^= 1
        #expect(throws: SegmentError.self) { try Self.decode(segment, blob: tampered) }
        // First bytes other than those that named the file (disk.img or disk.qcow2) when the image was opened.
        #expect(segment.tarMemberHead == Array(disk.prefix(4)))
        var otherHead = segment
        otherHead.tarMemberHead = DiskFileFormat.qcow2Magic
        do {
            _ = try Self.decode(otherHead, blob: blob)
            Issue.record("decoded a disk whose first bytes changed")
        } catch {
            #expect("\(error)".contains("starts with bytes"), "\(error)")
        }
        // A header that said another size when the image was opened.
        var wrongSize = segment
        wrongSize.length += 1
        do {
            _ = try Self.decode(wrongSize, blob: blob)
            Issue.record("decoded a member of another size")
        } catch {
            #expect("\(error)".contains("50000 bytes"), "\(error)")
        }
    }

    @Test func aLayerWhoseStartIsNotATarOrGzipIsRefusedNamingTheLayer() throws {
        let (manifest, load, _) = Self.image([Array("definitely not gzip".utf8)])
        do {
            _ = try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load)
            Issue.record("read garbage")
        } catch {
            #expect("\(error)".contains("layer 0 (sha256:"), "\(error)")
        }
    }
}
