import Testing
import ImgfsFormat
import OCI
import Verity

@Suite struct FrameIndexTests {
    static let frameSize = 64 * 1024

    /// A 3-layer index over 10 frames of 64 KiB with a short last frame, holes and a shared member.
    static func sample() throws -> FrameIndex {
        let geometry = try DiskGeometry(diskSize: UInt64(frameSize) * 9 + 1000, frameSize: frameSize)
        var frames = [FrameIndex.FrameEntry]()
        var layerEnds: [UInt64] = [0, 0]  // members tile their layer: each starts where the last ended
        for i in 0..<geometry.frameCount {
            let digest = SHA256Hasher.digest([UInt8(i), 1])
            switch i {
            case 2, 5: frames.append(.init(digest: SHA256Hasher.digest([UInt8](repeating: 0, count: frameSize)), isHole: true, location: nil))
            case 7: frames.append(.init(digest: frames[6].digest, isHole: false, location: frames[6].location))
            default:
                frames.append(.init(digest: digest, isHole: false, location: .init(layer: i % 2, compressedOffset: layerEnds[i % 2], compressedLength: 400)))
                layerEnds[i % 2] += 400
            }
        }
        let layers = (0..<2).map { i in FrameIndex.LayerRef(digest: SHA256Hasher.digest([UInt8(i)]), compressedSize: Int64(layerEnds[i])) }
        return FrameIndex(geometry: geometry, layout: .multiLayer, layers: layers, frames: frames)
    }

    @Test func roundTripsThroughTheBinaryLayout() throws {
        let index = try Self.sample()
        let bytes = index.encode()
        #expect(bytes.count == 64 + 40 * 2 + 56 * 10)
        #expect(Array(bytes[0..<8]) == Array("IMGFSIDX".utf8))
        #expect(try FrameIndex(decoding: bytes) == index)
    }

    @Test func geometryCutsTheLastFrameShort() throws {
        let geometry = try DiskGeometry(diskSize: 3 * 65536 + 5, frameSize: 65536)
        #expect(geometry.frameCount == 4)
        #expect(geometry.length(ofFrame: 3) == 5)
        #expect(geometry.frames(covering: 65535, length: 2) == 0..<2)
        #expect(geometry.frames(covering: geometry.diskSize, length: 10).isEmpty)
        #expect(throws: FormatError.invalidFrameSize(3000)) { try DiskGeometry(diskSize: 1, frameSize: 3000) }
        #expect(throws: FormatError.invalidFrameSize(32768)) { try DiskGeometry(diskSize: 1, frameSize: 32768) }
    }

    /// Patches bytes of an encoded sample and expects decoding to fail.
    func rejects(_ patch: (inout [UInt8]) -> Void, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var bytes = try Self.sample().encode()
        patch(&bytes)
        #expect(throws: FormatError.self, sourceLocation: sourceLocation) { try FrameIndex(decoding: bytes) }
    }

    func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
    }

    static let framesStart = 64 + 40 * 2

    @Test func rejectsMalformedHeaders() throws {
        try rejects { $0 = Array($0[0..<40]) }                               // truncated header
        try rejects { $0.removeLast() }                                      // truncated frame table
        try rejects { $0.append(0) }                                         // trailing byte
        try rejects { $0[0] = UInt8(ascii: "X") }                             // magic
        try rejects { put(UInt32(2), at: 8, in: &$0) }                       // version
        try rejects { put(UInt32(4096), at: 16, in: &$0) }                   // frame size below the minimum
        try rejects { put(UInt32(3 * 65536), at: 16, in: &$0) }              // not a power of two
        try rejects { put(UInt64(1) << 50, at: 24, in: &$0) }                // disk size past the limit
        try rejects { put(UInt64(11), at: 32, in: &$0) }                     // frame count disagrees with the geometry
        try rejects { put(UInt32(1_000_000), at: 20, in: &$0) }              // layer count
    }

    @Test func rejectsFramesThatPointOutsideTheirLayer() throws {
        let frame0 = Self.framesStart
        try rejects { put(UInt64(9_900), at: frame0, in: &$0) }              // member runs past the layer's 10 000 bytes
        try rejects { put(UInt64.max - 10, at: frame0, in: &$0) }            // offset overflow
        try rejects { put(UInt32(0), at: frame0 + 8, in: &$0) }              // empty member
        try rejects { put(UInt32(70_000), at: frame0 + 8, in: &$0) }         // longer than any 64 KiB frame compresses to
        try rejects { put(UInt32(7), at: frame0 + 12, in: &$0) }             // layer out of range
        try rejects { put(UInt32(0), at: frame0 + 16 + 56 * 2, in: &$0) }    // frame 2: neither stored nor a hole
    }

    @Test func rejectsPartlyOverlappingMembers() throws {
        // Frame 0 at layer 0 offset 0..<400; move frame 2... use frame 4 (layer 0, offset 2000) to 200.
        try rejects { put(UInt64(200), at: Self.framesStart + 56 * 4, in: &$0) }
        // Two frames sharing one member must share its digest.
        try rejects { $0[Self.framesStart + 56 * 7 + 24] ^= 0xFF }
    }

    @Test func singleLayerIndexesStoreEveryFrame() throws {
        var index = try Self.sample()
        index.layout = .singleLayer
        #expect(throws: FormatError.self) { try FrameIndex(decoding: index.encode()) }
    }
}

@Suite struct ImgfsImageTests {
    func manifest(chunkNumbers: [Int], annotations: [String: String]? = nil, configType: MediaType = .imgfsConfig) throws -> (Manifest, [UInt8]) {
        let config = ImageConfig(disk: .init(size: 4 << 30, frameSize: 1 << 20, chunkSize: 512 << 20, layout: .multiLayer))
        let configBytes = config.encoded()
        let chunks = chunkNumbers.map { n in
            ChunkLayer(number: n, digest: SHA256Hasher.digest([UInt8(n)]), compressedSize: 100, diskOffset: UInt64(n) << 29,
                       diskLength: 512 << 20, uncompressedSize: 100, uncompressedDigest: SHA256Hasher.digest([UInt8(n), 9]))
        }
        var manifest = ImgfsImage.makeManifest(
            config: config, fsverityDigest: SHA256Hasher.digest([7]),
            configDescriptor: Descriptor(mediaType: configType, digest: SHA256Hasher.digest(configBytes), size: Int64(configBytes.count)),
            index: Descriptor(mediaType: .imgfsIndex, digest: SHA256Hasher.digest([1]), size: 100),
            chunks: chunks, nvram: nil, vmConfig: nil, bootProfile: nil)
        if let annotations { manifest.annotations = annotations }
        return (manifest, configBytes)
    }

    @Test func acceptsChunkNumbersWithGapsForHoleChunks() throws {
        let (manifest, config) = try manifest(chunkNumbers: [0, 3, 7])
        let image = try ImgfsImage(manifest: manifest, configBytes: config)
        #expect(image.chunkDescriptors.count == 3)
        #expect(image.fsverityDigest == SHA256Hasher.digest([7]))
        #expect(image.geometry.frameCount == 4096)
    }

    @Test func rejectsInconsistentManifests() throws {
        let (repeated, config) = try manifest(chunkNumbers: [0, 0])
        #expect(throws: FormatError.self) { try ImgfsImage(manifest: repeated, configBytes: config) }
        let (beyond, _) = try manifest(chunkNumbers: [8])
        #expect(throws: FormatError.self) { try ImgfsImage(manifest: beyond, configBytes: config) }
        let (noVerity, _) = try manifest(chunkNumbers: [0], annotations: [:])
        #expect(throws: FormatError.self) { try ImgfsImage(manifest: noVerity, configBytes: config) }
        let (foreign, _) = try manifest(chunkNumbers: [0], configType: .ociConfig)
        #expect(throws: FormatError.self) { try ImgfsImage(manifest: foreign, configBytes: config) }
        let (ok, _) = try manifest(chunkNumbers: [0])
        #expect(throws: FormatError.self) { try ImgfsImage(manifest: ok, configBytes: Array("{\"imgfsFormat\": 2}".utf8)) }
        #expect(throws: FormatError.self) { try ImgfsImage(manifest: ok, configBytes: Array("not json".utf8)) }
    }

    @Test func validateRejectsAnIndexFromAnotherImage() throws {
        let (manifest, config) = try manifest(chunkNumbers: [0])
        let image = try ImgfsImage(manifest: manifest, configBytes: config)
        let geometry = try DiskGeometry(diskSize: 4 << 30, frameSize: 1 << 20)
        let hole = FrameIndex.FrameEntry(digest: SHA256Hasher.digest([0]), isHole: true, location: nil)
        let foreignLayer = FrameIndex(geometry: geometry, layout: .multiLayer,
                                      layers: [.init(digest: SHA256Hasher.digest([42]), compressedSize: 100)],
                                      frames: Array(repeating: hole, count: geometry.frameCount))
        #expect(throws: FormatError.layerMissingFromManifest(SHA256Hasher.digest([42]))) { try image.validate(foreignLayer) }
        let wrongSize = FrameIndex(geometry: geometry, layout: .multiLayer,
                                   layers: [.init(digest: SHA256Hasher.digest([0]), compressedSize: 99)],
                                   frames: Array(repeating: hole, count: geometry.frameCount))
        #expect(throws: FormatError.self) { try image.validate(wrongSize) }
        let stored = FrameIndex.FrameEntry(digest: SHA256Hasher.digest([5]), isHole: false, location: .init(layer: 0, compressedOffset: 0, compressedLength: 100))
        let matching = FrameIndex(geometry: geometry, layout: .multiLayer,
                                  layers: [.init(digest: SHA256Hasher.digest([0]), compressedSize: 100)],
                                  frames: [stored] + Array(repeating: hole, count: geometry.frameCount - 1))
        try image.validate(matching)
    }
}
