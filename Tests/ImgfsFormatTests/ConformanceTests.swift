import OCI
import Testing
import Verity
@testable import ImgfsFormat

/// docs/FORMAT.md as a contract (issue 15): a small valid image, and for every reader rule the
/// doc states, a copy that breaks that rule alone and the exact error readers give. Mount, pull
/// and convert all decode through `ImgfsImage` and `FrameIndex(decoding:)`, so one corpus
/// covers them.
@Suite struct ConformanceTests {
    static let frameSize = 64 * 1024
    static let zeros = SHA256Hasher.digest([UInt8](repeating: 0, count: frameSize))
    static let shortZeros = SHA256Hasher.digest([UInt8](repeating: 0, count: 1000))

    /// 11 frames (the last 1000 bytes), chunks of 4 frames: chunk 0 stores frames 0–3 (frame 3
    /// shares frame 2's member), chunk 1 is all holes (no layer), chunk 2 stores frames 8 and 9
    /// (frame 10 is a hole).
    struct Fixture {
        var diskSize = UInt64(ConformanceTests.frameSize) * 10 + 1000
        var frameSize = ConformanceTests.frameSize
        var chunkSize = UInt64(ConformanceTests.frameSize) * 4
        var layout = FrameIndex.Layout.multiLayer
        var configMediaType = MediaType.imgfsConfig
        var configOverride: [UInt8]?
        var frames: [FrameIndex.FrameEntry]
        var layers: [FrameIndex.LayerRef]
        var chunks: [ChunkLayer]
        var editIndexBytes: (inout [UInt8]) -> Void = { _ in }
        var editManifest: (inout Manifest) -> Void = { _ in }

        init() {
            func stored(_ i: Int, layer: Int, offset: UInt64) -> FrameIndex.FrameEntry {
                .init(digest: SHA256Hasher.digest([UInt8(i)]), isHole: false, location: .init(layer: layer, compressedOffset: offset, compressedLength: 100))
            }
            let hole = FrameIndex.FrameEntry(digest: ConformanceTests.zeros, isHole: true, location: nil)
            frames = [stored(0, layer: 0, offset: 0), stored(1, layer: 0, offset: 100), stored(2, layer: 0, offset: 200)]
            frames.append(frames[2])
            frames += [hole, hole, hole, hole, stored(8, layer: 1, offset: 0), stored(9, layer: 1, offset: 100),
                       .init(digest: ConformanceTests.shortZeros, isHole: true, location: nil)]
            layers = [.init(digest: SHA256Hasher.digest([0xc0]), compressedSize: 300), .init(digest: SHA256Hasher.digest([0xc2]), compressedSize: 200)]
            let chunk = UInt64(ConformanceTests.frameSize) * 4
            chunks = [
                ChunkLayer(number: 0, digest: layers[0].digest, compressedSize: 300, diskOffset: 0, diskLength: chunk,
                           uncompressedSize: 4 * 65536, uncompressedDigest: SHA256Hasher.digest([1])),
                ChunkLayer(number: 2, digest: layers[1].digest, compressedSize: 200, diskOffset: 2 * chunk, diskLength: 2 * 65536 + 1000,
                           uncompressedSize: 2 * 65536, uncompressedDigest: SHA256Hasher.digest([2])),
            ]
        }

        /// The same disk single-layer: every frame stored, holes too, chunk size = disk size.
        static func singleLayer() -> Fixture {
            var single = Fixture()
            single.layout = .singleLayer
            single.chunkSize = single.diskSize
            single.frames = (0..<11).map { i in
                let digest = (4...7).contains(i) ? ConformanceTests.zeros : (i == 10 ? ConformanceTests.shortZeros : SHA256Hasher.digest([UInt8(i)]))
                return .init(digest: digest, isHole: (4...7).contains(i) || i == 10, location: .init(layer: 0, compressedOffset: UInt64(i * 100), compressedLength: 100))
            }
            single.layers = [.init(digest: SHA256Hasher.digest([0x51]), compressedSize: 1100)]
            single.chunks = [ChunkLayer(number: 0, digest: single.layers[0].digest, compressedSize: 1100, diskOffset: 0, diskLength: single.diskSize,
                                        uncompressedSize: single.diskSize, uncompressedDigest: SHA256Hasher.digest([3]))]
            return single
        }

        /// What a reader does: manifest and config, then the index, then the two together.
        func read() throws {
            let config = ImageConfig(disk: .init(size: diskSize, frameSize: frameSize, chunkSize: chunkSize, layout: layout))
            let configBytes = configOverride ?? config.encoded()
            var indexBytes = FrameIndex(geometry: try DiskGeometry(diskSize: diskSize, frameSize: frameSize), layout: layout,
                                        layers: layers, frames: frames).encode()
            editIndexBytes(&indexBytes)
            var manifest = ImgfsImage.makeManifest(
                config: config, fsverityDigest: SHA256Hasher.digest([7]),
                configDescriptor: Descriptor(mediaType: configMediaType, digest: SHA256Hasher.digest(configBytes), size: Int64(configBytes.count)),
                index: Descriptor(mediaType: .imgfsIndex, digest: SHA256Hasher.digest(indexBytes), size: Int64(indexBytes.count)),
                chunks: chunks, nvram: nil, vmConfig: nil, bootProfile: nil)
            editManifest(&manifest)
            let image = try ImgfsImage(manifest: manifest, configBytes: configBytes)
            let index = try FrameIndex(decoding: indexBytes)
            try image.validate(index)
        }
    }

    @Test func theFixturesAreValid() throws {
        try Fixture().read()
        try Fixture.singleLayer().read()
    }

    struct Violation: CustomStringConvertible, Sendable {
        var rule: String
        var expected: String
        var apply: @Sendable (inout Fixture) -> Void
        var description: String { rule }
    }

    static func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
    }
    static let frameTable = 64 + 40 * 2

    static let violations: [Violation] = [
        // The manifest and config.
        Violation(rule: "config media type", expected: "not an imgfs image: config media type is application/vnd.oci.image.config.v1+json") { $0.configMediaType = .ociConfig },
        Violation(rule: "config blob at most 1 MiB", expected: "config blob of 1048577 bytes is outside the 1048576-byte limit") { f in
            f.editManifest = { $0.config.size = 1024 * 1024 + 1 }
        },
        Violation(rule: "imgfsFormat 1", expected: "format version 2 is not supported") {
            $0.configOverride = Array(#"{"disk":{"chunkSize":262144,"frameSize":65536,"layout":"multi-layer","size":656360},"imgfsFormat":2}"#.utf8)
        },
        Violation(rule: "config is JSON of the right types", expected: "config blob is not imgfs config JSON") {
            $0.configOverride = Array(#"{"disk":{"chunkSize":"262144","frameSize":65536,"layout":"multi-layer","size":656360},"imgfsFormat":1}"#.utf8)
        },
        Violation(rule: "frame size a power of two", expected: "invalid frame size 100000") { $0.frameSize = 100_000 },
        Violation(rule: "frame size at least 64 KiB", expected: "invalid frame size 32768") { $0.frameSize = 32768 },
        Violation(rule: "disk size at most 16 TiB", expected: "disk size 17592186044417 exceeds the limit") { $0.diskSize = (1 << 44) + 1 },
        Violation(rule: "chunk size positive", expected: "config field disk.chunkSize has an invalid value 0: a disk of 656360 bytes needs a positive chunk size") { $0.chunkSize = 0 },
        Violation(rule: "multi-layer chunk size a multiple of the frame size", expected: "disk.chunkSize has an invalid value 262145: it must be a multiple of the frame size 65536") { $0.chunkSize = 262_145 },
        Violation(rule: "single-layer chunk size is the disk size", expected: "disk.chunkSize has an invalid value 262144: a single-layer image has one chunk of the disk size 656360") {
            $0.layout = .singleLayer
        },
        Violation(rule: "one index layer", expected: "the manifest has no application/vnd.imgfs.disk.index.v1 layer") { f in
            f.editManifest = { $0.layers.removeAll { $0.mediaType == .imgfsIndex } }
        },
        Violation(rule: "not two index layers", expected: "the manifest has two frame index layers") { f in
            f.editManifest = { $0.layers.append($0.layers[0]) }
        },
        Violation(rule: "index at most 256 MiB", expected: "frame index of 268435457 bytes exceeds the limit") { f in
            f.editManifest = { $0.layers[0].size = 256 * 1024 * 1024 + 1 }
        },
        Violation(rule: "at most one nvram layer", expected: "the manifest has two nvram layers") { f in
            f.editManifest = { m in for _ in 0..<2 { m.layers.append(Descriptor(mediaType: .imgfsNVRAM, digest: SHA256Hasher.digest([9]), size: 10)) } }
        },
        Violation(rule: "at most one config.json layer", expected: "the manifest has two config.json layers") { f in
            f.editManifest = { m in for _ in 0..<2 { m.layers.append(Descriptor(mediaType: .imgfsVMConfig, digest: SHA256Hasher.digest([9]), size: 10)) } }
        },
        Violation(rule: "at most one boot profile", expected: "the manifest has two boot profile layers") { f in
            f.editManifest = { m in for _ in 0..<2 { m.layers.append(Descriptor(mediaType: .imgfsBootProfile, digest: SHA256Hasher.digest([9]), size: 20)) } }
        },
        Violation(rule: "small layers at most 64 MiB", expected: "nvram layer of 67108865 bytes is larger than the 67108864-byte limit") { f in
            f.editManifest = { $0.layers.append(Descriptor(mediaType: .imgfsNVRAM, digest: SHA256Hasher.digest([9]), size: 64 * 1024 * 1024 + 1)) }
        },
        Violation(rule: "no negative sizes", expected: "has a negative size -1") { f in f.editManifest = { $0.layers[1].size = -1 } },
        Violation(rule: "fs-verity annotation required", expected: "the manifest has no dev.imgfs.disk.fsverity-digest annotation") { f in
            f.editManifest = { $0.annotations?[ImgfsAnnotation.fsverityDigest] = nil }
        },
        Violation(rule: "fs-verity annotation is a digest", expected: "annotation dev.imgfs.disk.fsverity-digest has an invalid value 'sha256:XYZ'") { f in
            f.editManifest = { $0.annotations?[ImgfsAnnotation.fsverityDigest] = "sha256:XYZ" }
        },
        Violation(rule: "chunk number present", expected: "has no dev.imgfs.chunk.number annotation") { f in
            f.editManifest = { $0.layers[1].annotations?[ImgfsAnnotation.chunkNumber] = nil }
        },
        Violation(rule: "chunk number canonical", expected: "annotation dev.imgfs.chunk.number has an invalid value '02'") { f in
            f.editManifest = { $0.layers[2].annotations?[ImgfsAnnotation.chunkNumber] = "02" }
        },
        Violation(rule: "chunk number not repeated", expected: "annotation dev.imgfs.chunk.number has an invalid value '0 (used by two layers)'") { f in
            f.editManifest = { m in
                m.layers[2].annotations?[ImgfsAnnotation.chunkNumber] = "0"
                m.layers[2].annotations?[ImgfsAnnotation.chunkOffset] = "0"
                m.layers[2].annotations?[ImgfsAnnotation.chunkLength] = "262144"
            }
        },
        Violation(rule: "chunk number below the chunk count", expected: "annotation dev.imgfs.chunk.number has an invalid value '3 (the disk has 3 chunks)'") { f in
            f.editManifest = { $0.layers[2].annotations?[ImgfsAnnotation.chunkNumber] = "3" }
        },
        Violation(rule: "chunk offset agrees with its number", expected: "annotation dev.imgfs.chunk.offset has an invalid value '1 (chunk 2 of this geometry has 524288)'") { f in
            f.editManifest = { $0.layers[2].annotations?[ImgfsAnnotation.chunkOffset] = "1" }
        },
        Violation(rule: "chunk length agrees with its number", expected: "annotation dev.imgfs.chunk.length has an invalid value '262144 (chunk 2 of this geometry has 132072)'") { f in
            f.editManifest = { $0.layers[2].annotations?[ImgfsAnnotation.chunkLength] = "262144" }
        },
        // The frame index on its own.
        Violation(rule: "index magic", expected: "frame index does not start with the IMGFSIDX magic") { f in f.editIndexBytes = { $0[0] = 0x58 } },
        Violation(rule: "index version 1", expected: "frame index version 2 is not supported") { f in f.editIndexBytes = { put(UInt32(2), at: 8, in: &$0) } },
        Violation(rule: "index size exact", expected: "frame index truncated: 759 bytes, expected 760") { f in f.editIndexBytes = { $0.removeLast() } },
        Violation(rule: "frame count from the geometry", expected: "frame index declares 12 frames, disk size and frame size need 11") { f in
            f.editIndexBytes = { put(UInt64(12), at: 32, in: &$0) }
        },
        Violation(rule: "layer count at most the frame count", expected: "frame index lists 12 layers for 11 frames") { f in
            f.editIndexBytes = { put(UInt32(12), at: 20, in: &$0) }
        },
        Violation(rule: "frame layer in range", expected: "frame 8 names layer 5, but the index lists 2 layers") { f in f.frames[8].location?.layer = 5 },
        Violation(rule: "stored member not empty", expected: "frame 0 is stored with a compressed length of 0") { f in f.frames[0].location?.compressedLength = 0 },
        Violation(rule: "member within the gzip bound", expected: "frame 0: compressed length 70000 exceeds the limit 66570") { f in f.frames[0].location?.compressedLength = 70000 },
        Violation(rule: "member inside its layer", expected: "frame 9: 100 bytes at offset 150 lie outside layer 1 of 200 bytes") { f in f.frames[9].location?.compressedOffset = 150 },
        Violation(rule: "stored or a hole", expected: "frame 1 is neither a hole nor stored in a layer") { f in f.frames[1].location = nil },
        Violation(rule: "hole digest is zeros", expected: "frame 5 is flagged as a hole but its digest") { f in f.frames[5].digest = SHA256Hasher.digest([5]) },
        Violation(rule: "short hole digest is zeros", expected: "frame 10 is flagged as a hole but its digest") { f in f.frames[10].digest = ConformanceTests.zeros },
        Violation(rule: "single-layer stores every frame", expected: "a single-layer index must store every frame") { f in
            f = Fixture.singleLayer()
            f.frames[5].location = nil
        },
        Violation(rule: "layers in order of first use", expected: "frame 0 is the first to use layer 1, but layer 0 is not used before it") { f in
            f.layers.swapAt(0, 1)
            for i in f.frames.indices { if let layer = f.frames[i].location?.layer { f.frames[i].location?.layer = 1 - layer } }
        },
        Violation(rule: "every layer used", expected: "frame index layer 1 is used by no frame") { f in
            f.frames[8] = .init(digest: ConformanceTests.zeros, isHole: true, location: nil)
            f.frames[9] = .init(digest: ConformanceTests.zeros, isHole: true, location: nil)
        },
        Violation(rule: "members tile: no gap", expected: "bytes 100..<150 of layer 1 are in no frame's member") { f in
            f.frames[9].location?.compressedOffset = 150
            f.frames[9].location?.compressedLength = 50
        },
        Violation(rule: "members tile: no tail", expected: "bytes 200..<250 of layer 1 are in no frame's member") { f in
            f.layers[1].compressedSize = 250
            f.chunks[1].compressedSize = 250
        },
        Violation(rule: "members do not overlap", expected: "frames 8 and 9 overlap in layer 1") { f in f.frames[9].location?.compressedOffset = 50 },
        Violation(rule: "shared members share a digest", expected: "frames 2 and 3 share a stored member but not a digest") { f in f.frames[3].digest = SHA256Hasher.digest([3]) },
        // The index against the manifest and config.
        Violation(rule: "index geometry is the config's", expected: "frame index geometry (656360 bytes, 65536-byte frames) differs from the config's (656360, 131072)") { f in
            f.configOverride = Array(#"{"disk":{"chunkSize":262144,"frameSize":131072,"layout":"multi-layer","size":656360},"imgfsFormat":1}"#.utf8)
        },
        Violation(rule: "index layout is the config's", expected: "frame index layout multi-layer differs from the config's single-layer") { f in
            f = Fixture.singleLayer()
            f.editIndexBytes = { put(UInt32(0), at: 12, in: &$0) }
        },
        Violation(rule: "index layers are manifest chunk layers", expected: "the frame index names layer \(SHA256Hasher.digest([0xee])), which the manifest does not list") { f in
            f.layers[1].digest = SHA256Hasher.digest([0xee])
        },
        Violation(rule: "index layer sizes are the manifest's", expected: "is 200 bytes in the manifest but 300 in the frame index") { f in
            f.chunks[1].compressedSize = 200
            f.layers[1].compressedSize = 300
            f.frames[9].location?.compressedLength = 200
        },
        Violation(rule: "a frame of chunk c is in chunk c's layer", expected: "frame 9 of chunk 2 is stored in \(SHA256Hasher.digest([0xc0])), not in chunk 2's layer") { f in
            f.frames[9] = f.frames[0]
            f.layers[1].compressedSize = 100
            f.chunks[1].compressedSize = 100
        },
        Violation(rule: "a stored frame's chunk has a layer", expected: "frame 8 is stored, but chunk 2 has no layer in the manifest") { f in
            f.chunks[1].number = 1
            f.chunks[1].diskOffset = 262_144
            f.chunks[1].diskLength = 262_144
        },
        Violation(rule: "a chunk layer stores a frame", expected: "chunk 1 has a layer in the manifest but stores no frame") { f in
            f.chunks.append(ChunkLayer(number: 1, digest: SHA256Hasher.digest([0xc1]), compressedSize: 10, diskOffset: 262_144, diskLength: 262_144,
                                       uncompressedSize: 0, uncompressedDigest: SHA256Hasher.digest([0xc1])))
        },
    ]

    @Test(arguments: violations)
    func eachBrokenRuleIsRefusedWithItsError(_ violation: Violation) {
        var fixture = Fixture()
        violation.apply(&fixture)
        do {
            try fixture.read()
            Issue.record("\(violation.rule): the image was accepted")
        } catch {
            #expect("\(error)".contains(violation.expected), "\(violation.rule): \(error)")
        }
    }

    /// What readers must ignore: reserved fields and undefined flag bits of the index, unknown
    /// config keys and unknown layer media types.
    @Test func reservedFieldsAndUnknownAdditionsAreIgnored() throws {
        var fixture = Fixture()
        fixture.editIndexBytes = { bytes in
            Self.put(UInt32(0xFFFF_FFFE), at: 12, in: &bytes)  // header flags other than bit 0 (multi-layer kept)
            for i in 40..<64 { bytes[i] = 0xAA }           // header reserved
            Self.put(UInt32(0xFFFF_FFFE), at: Self.frameTable + 56 * 0 + 16, in: &bytes)  // frame flags other than bit 0
            Self.put(UInt32(0x1234_5678), at: Self.frameTable + 56 * 0 + 20, in: &bytes)  // frame reserved
            Self.put(UInt64(99), at: Self.frameTable + 56 * 4, in: &bytes)                // offset of an unstored hole
        }
        fixture.configOverride = Array(#"{"disk":{"chunkSize":262144,"frameSize":65536,"future":1,"layout":"multi-layer","size":656360},"files":[],"imgfsFormat":1,"later":{"x":[1]}}"#.utf8)
        fixture.editManifest = { $0.layers.append(Descriptor(mediaType: "application/vnd.imgfs.something-new.v1", digest: SHA256Hasher.digest([1]), size: 1 << 40)) }
        try fixture.read()
    }
}
