import Codec
import Foundation
import Testing
@testable import ImageLayouts
import OCI
import Verity

/// Parsing of each peer layout, validation errors naming the layer, and writer round trips.
struct LayoutTests {
    static let digestA = SHA256Hasher.digest(Array("a".utf8))
    static let digestB = SHA256Hasher.digest(Array("b".utf8))
    static func noLoader(_: Descriptor, _: Int64) throws -> [UInt8] { throw LoaderUnused() }
    struct LoaderUnused: Error {}

    static func lumePart(_ number: Int, total: Int, offset: UInt64, size: UInt64, digest: Digest = digestA) -> Descriptor {
        Descriptor(mediaType: LumeOCIFormat.diskMediaType, digest: digest, size: 100, annotations: [
            LumeOCIFormat.partNumberAnnotation: String(number), LumeOCIFormat.partTotalAnnotation: String(total),
            LumeOCIFormat.partOffsetAnnotation: String(offset), LumeOCIFormat.uncompressedSizeAnnotation: String(size),
        ])
    }

    static func lumeManifest(_ layers: [Descriptor], total: UInt64?) -> Manifest {
        Manifest(config: Descriptor(mediaType: LumeOCIFormat.configMediaType, digest: digestB, size: 10), layers: layers,
                 annotations: total.map { [LumeOCIFormat.totalSizeAnnotation: String($0)] })
    }

    @Test func lumeChunkedPartsWithASharedDigest() throws {
        let manifest = Self.lumeManifest([Self.lumePart(1, total: 2, offset: 512, size: 512), Self.lumePart(0, total: 2, offset: 0, size: 512)], total: 1024)
        let image = try VMImageReader.read(manifest, load: Self.noLoader)
        #expect(image.kind == .lumeOCI)
        #expect(image.layout.diskSize == 1024)
        #expect(image.layout.segments.map(\.diskOffset) == [0, 512])
        #expect(image.layout.segment(containing: 700)?.layerIndex == 0)
        #expect(image.vmConfig?.digest == Self.digestB)
    }

    @Test func lumeSingleLayerAndMissingSize() throws {
        let single = Descriptor(mediaType: LumeOCIFormat.diskMediaType, digest: Self.digestA, size: 10)
        let image = try VMImageReader.read(Self.lumeManifest([single], total: 4096), load: Self.noLoader)
        #expect(image.layout.segments.count == 1 && image.layout.diskSize == 4096 && image.layout.segments[0].codec == .gzip)
        #expect(throws: ImageLayoutError.self) { try VMImageReader.read(Self.lumeManifest([single], total: nil), load: Self.noLoader) }
    }

    @Test func lumeValidationNamesTheLayer() {
        func error(_ layers: [Descriptor], total: UInt64?) -> String {
            do { _ = try VMImageReader.read(Self.lumeManifest(layers, total: total), load: Self.noLoader); return "" } catch { return error.description }
        }
        // Overlap, a gap (a lost part), a repeated number, a wrong total, a size past the disk, a bad value.
        #expect(error([Self.lumePart(0, total: 2, offset: 0, size: 600), Self.lumePart(1, total: 2, offset: 512, size: 512)], total: 1112).contains("overlaps"))
        #expect(error([Self.lumePart(0, total: 2, offset: 0, size: 512), Self.lumePart(1, total: 2, offset: 1024, size: 512)], total: 1536).contains("in no disk part"))
        #expect(error([Self.lumePart(0, total: 2, offset: 0, size: 512), Self.lumePart(0, total: 2, offset: 512, size: 512)], total: 1024).contains("repeated"))
        #expect(error([Self.lumePart(0, total: 3, offset: 0, size: 512)], total: 512).contains(LumeOCIFormat.partTotalAnnotation))
        #expect(error([Self.lumePart(0, total: 1, offset: 0, size: 2048)], total: 1024).contains("past the disk size"))
        var bad = Self.lumePart(0, total: 1, offset: 0, size: 512)
        bad.annotations?[LumeOCIFormat.partOffsetAnnotation] = "-1"
        #expect(error([bad], total: 512).contains("layer 0 (\(Self.digestA))"))
        let unknown = Descriptor(mediaType: "application/x-what", digest: Self.digestA, size: 1)
        #expect(error([Self.lumePart(0, total: 1, offset: 0, size: 512), unknown], total: 512).contains("unknown media type"))
    }

    @Test func tartPiecesAreConsecutive() throws {
        func piece(_ size: UInt64) -> Descriptor {
            Descriptor(mediaType: TartFormat.diskMediaType, digest: Self.digestA, size: 10, annotations: [TartFormat.uncompressedSizeAnnotation: String(size),
                       TartFormat.uncompressedDigestAnnotation: Self.digestB.description])
        }
        let config = Descriptor(mediaType: TartFormat.configMediaType, digest: Self.digestB, size: 5)
        let manifest = Manifest(config: Descriptor(mediaType: .ociConfig, digest: Self.digestB, size: 5), layers: [config, piece(100), piece(50)],
                                annotations: [TartFormat.diskSizeAnnotation: "200"])
        let image = try VMImageReader.read(manifest, load: Self.noLoader)
        #expect(image.kind == .tart)
        #expect(image.layout.segments.map(\.diskRange) == [0..<100, 100..<150])
        #expect(image.layout.diskSize == 200)
        #expect(image.layout.segments[0].uncompressedDigest == Self.digestB)
        var missing = piece(10)
        missing.annotations = [:]
        let bad = Manifest(config: manifest.config, layers: [missing], annotations: nil)
        #expect(throws: ImageLayoutError.missingAnnotation(layer: "layer 0 (\(Self.digestA))", key: TartFormat.uncompressedSizeAnnotation)) {
            try VMImageReader.read(bad, load: Self.noLoader)
        }
    }

    @Test func lumeLegacyReadsTheDiskSizeFromTheConfigBlob() throws {
        let part = Descriptor(mediaType: "application/octet-stream+lz4;part.number=1;part.total=1", digest: Self.digestA, size: 10,
                              annotations: [LumeLegacyFormat.uncompressedSizeAnnotation: "300"])
        let configBlob = Array(#"{"annotations":{"com.trycua.lume.disk.uncompressed_size":"4096"}}"#.utf8)
        let manifest = Manifest(config: Descriptor(mediaType: .ociConfig, digest: SHA256Hasher.digest(configBlob), size: Int64(configBlob.count)),
                                layers: [part, Descriptor(mediaType: .octetStream, digest: Self.digestB, size: 3)])
        let image = try VMImageReader.read(manifest) { _, _ in configBlob }
        #expect(image.kind == .lumeLegacy)
        #expect(image.layout.diskSize == 4096)
        #expect(image.layout.segments[0].codec == .appleLZ4)
        #expect(image.nvram?.digest == Self.digestB)
    }

    @Test func unrecognisedManifestsAreRejected() {
        let manifest = Manifest(config: Descriptor(mediaType: .ociConfig, digest: Self.digestA, size: 1),
                                layers: [Descriptor(mediaType: .ociLayerGzip, digest: Self.digestA, size: 1)])
        #expect(throws: ImageLayoutError.self) { try VMImageReader.read(manifest, load: Self.noLoader) }
    }

    @Test func writersRoundTripThroughTheReaders() throws {
        let lume = LumeOCIFormat.manifest(config: Descriptor(mediaType: .octetStream, digest: Self.digestB, size: 2), parts: [
            .init(number: 0, blob: Self.digestA, compressedSize: 9, diskOffset: 0, uncompressedSize: 512, uncompressedDigest: Self.digestB),
            .init(number: 1, blob: Self.digestA, compressedSize: 9, diskOffset: 512, uncompressedSize: 512, uncompressedDigest: Self.digestB),
        ], nvram: Descriptor(mediaType: .octetStream, digest: Self.digestB, size: 4), diskSize: 1024, annotations: ["org.trycua.lume.cpu-count": "4"])
        let lumeImage = try VMImageReader.read(lume, load: Self.noLoader)
        #expect(lumeImage.layout.segments.count == 2 && lumeImage.nvram != nil)
        #expect(lumeImage.metadataAnnotations == ["org.trycua.lume.cpu-count": "4"])

        let tart = TartFormat.manifest(ociConfig: Descriptor(mediaType: .octetStream, digest: Self.digestA, size: 3),
                                       vmConfig: Descriptor(mediaType: .octetStream, digest: Self.digestB, size: 3),
                                       pieces: [.init(blob: Self.digestA, compressedSize: 5, uncompressedSize: 64, uncompressedDigest: Self.digestB)],
                                       nvram: nil, diskSize: 64, annotations: [:])
        let tartImage = try VMImageReader.read(tart, load: Self.noLoader)
        #expect(tartImage.kind == .tart && tartImage.layout.diskSize == 64 && tartImage.vmConfig?.digest == Self.digestB)
        #expect(TartFormat.ociConfigBlob(vmConfig: Array(#"{"arch":"amd64","os":"linux"}"#.utf8)) == Array(#"{"architecture":"amd64","os":"linux"}"#.utf8))
    }

    @Test func segmentDecoderChecksDigestsAndLengths() throws {
        let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 / 7) }
        let blob = try AppleLZ4Encoder(blockSize: 65536, chained: true).encode(data)
        func segment(length: UInt64, digest: Digest?) -> Segment {
            Segment(layerIndex: 2, blob: Descriptor(mediaType: TartFormat.diskMediaType, digest: SHA256Hasher.digest(blob), size: Int64(blob.count)),
                    codec: .appleLZ4, diskOffset: 4096, length: length, uncompressedDigest: digest)
        }
        func decode(_ segment: Segment) throws -> [UInt8] {
            let decoder = try SegmentDecoder(segment: segment)
            var out = [UInt8]()
            try blob.withUnsafeBytes { raw in
                // Odd-sized pieces: a block header may be split anywhere.
                var start = 0
                while start < raw.count {
                    let end = min(raw.count, start + 7777)
                    try decoder.feed(UnsafeRawBufferPointer(rebasing: raw[start..<end])) { offset, bytes in
                        #expect(offset == 4096 + UInt64(out.count))
                        out.append(contentsOf: bytes)
                    }
                    start = end
                }
            }
            try decoder.finish()
            return out
        }
        #expect(try decode(segment(length: 300_000, digest: SHA256Hasher.digest(data))) == data)
        #expect(throws: SegmentError.self) { try decode(segment(length: 300_000, digest: Self.digestA)) }
        #expect(throws: SegmentError.self) { try decode(segment(length: 1000, digest: nil)) }
        #expect(throws: SegmentError.self) { try decode(segment(length: 400_000, digest: nil)) }
    }
}
