import OCI
import Testing
import Verity
@testable import ImgfsFormat

/// `imgfs push` refuses, before reading a disk, a geometry whose index or manifest readers would
/// reject, or re-cuts it when the user left the sizes to it (issue 15).
@Suite struct ImagePlanTests {
    static let gib: UInt64 = 1 << 30

    @Test func a300GiBDiskAt64KiBFramesIsRefusedWithTheSizeThatWorks() {
        #expect {
            _ = try ImagePlan(diskSize: 300 * Self.gib, frameSize: 64 << 10, chunkSize: 512 << 20, layout: .multiLayer,
                              adjustFrameSize: false, adjustChunkSize: false)
        } throws: { error in
            let text = "\(error)"
            return text.contains("frame index of a 322122547200-byte disk at 65536-byte frames") && text.contains("use --frame-size 128K or larger")
        }
    }

    @Test func a300GiBDiskWithTheDefaultFrameSizeLeftToThePlanGetsLargerFrames() throws {
        let plan = try ImagePlan(diskSize: 300 * Self.gib, frameSize: 64 << 10, chunkSize: 512 << 20, layout: .multiLayer,
                                 adjustFrameSize: true, adjustChunkSize: true)
        #expect(plan.geometry.frameSize == 128 << 10)
        #expect(plan.largestIndexSize <= FormatLimits.maximumIndexSize)
        #expect(plan.adjustments.count == 1)
        #expect(plan.adjustments.first?.contains("frame size 128K instead of 64K") == true)
    }

    @Test func a16TiBDiskNeeds4MiBFramesAndLargerChunks() throws {
        let plan = try ImagePlan(diskSize: FormatLimits.maximumDiskSize, frameSize: 1 << 20, chunkSize: 512 << 20, layout: .multiLayer,
                                 adjustFrameSize: true, adjustChunkSize: true)
        #expect(plan.geometry.frameSize == 4 << 20)
        #expect(plan.chunkSize > 512 << 20)
        #expect(plan.largestIndexSize <= FormatLimits.maximumIndexSize)
        #expect(plan.largestManifestSize <= FormatLimits.maximumManifestSize)
        #expect {
            _ = try ImagePlan(diskSize: FormatLimits.maximumDiskSize, frameSize: 4 << 20, chunkSize: 512 << 20, layout: .multiLayer,
                              adjustFrameSize: false, adjustChunkSize: false)
        } throws: { error in
            "\(error)".contains("the manifest of a 17592186044416-byte disk in 536870912-byte chunks") && "\(error)".contains("use --chunk-size \(ImagePlan.sizeText(plan.chunkSize)) or larger")
        }
    }

    @Test func ordinaryDisksAreLeftAlone() throws {
        for (size, layout) in [(UInt64(0), FrameIndex.Layout.multiLayer), (0, .singleLayer), (1000, .multiLayer), (1000, .singleLayer),
                               (40 * Self.gib, .multiLayer), (40 * Self.gib, .singleLayer)] {
            let plan = try ImagePlan(diskSize: size, frameSize: 1 << 20, chunkSize: 512 << 20, layout: layout, adjustFrameSize: true, adjustChunkSize: true)
            #expect(plan.adjustments.isEmpty)
            #expect(plan.geometry.frameSize == 1 << 20)
            #expect(plan.chunkSize == (layout == .singleLayer ? size : 512 << 20))
        }
    }

    /// The default frame size is small where its index is cheap and 1 MiB once the index a mount
    /// fetches first would pass 4 MiB at 512 KiB (issue 20, BENCHMARKS.md "Slow link: frame size").
    @Test func theDefaultFrameSizeGrowsWithTheDiskUntil1MiB() throws {
        let expected: [(UInt64, Int)] = [(0, 256 << 10), (1000, 256 << 10), (4 * Self.gib, 256 << 10), (18 * Self.gib, 256 << 10),
                                         (19 * Self.gib, 512 << 10), (36 * Self.gib, 512 << 10), (37 * Self.gib, 1 << 20),
                                         (300 * Self.gib, 1 << 20), (FormatLimits.maximumDiskSize, 1 << 20)]
        for (size, frame) in expected {
            #expect(DiskGeometry.defaultFrameSize(diskSize: size) == frame, "disk of \(size) bytes")
            if frame < 1 << 20 {
                let index = ImagePlan.largestIndexSize(try DiskGeometry(diskSize: size, frameSize: frame), chunkSize: 512 << 20, layout: .multiLayer)
                #expect(index <= Int64(DiskGeometry.defaultIndexBudget) + 64 + 40 * 64, "disk of \(size) bytes")
            }
        }
    }

    @Test func aChunkSmallerThanARaisedFrameIsAnErrorWhenTheUserChoseIt() {
        #expect(throws: FormatError.self) {
            _ = try ImagePlan(diskSize: 300 * Self.gib, frameSize: 64 << 10, chunkSize: 64 << 10, layout: .multiLayer,
                              adjustFrameSize: true, adjustChunkSize: false)
        }
    }

    /// The bounds are bounds: a real index and manifest of the geometry are no larger.
    @Test func theLargestSizesBoundRealImages() throws {
        let plan = try ImagePlan(diskSize: 10 << 20, frameSize: 64 << 10, chunkSize: 1 << 20, layout: .multiLayer, adjustFrameSize: false, adjustChunkSize: false)
        let digest = SHA256Hasher.digest([UInt8](repeating: 1, count: 3))
        let layers = (0..<10).map { FrameIndex.LayerRef(digest: SHA256Hasher.digest([UInt8($0)]), compressedSize: 1 << 21) }
        let frames = (0..<plan.geometry.frameCount).map { i in
            FrameIndex.FrameEntry(digest: digest, isHole: false, location: .init(layer: i / 16, compressedOffset: UInt64(i % 16) * 70_000, compressedLength: 70_000))
        }
        let index = FrameIndex(geometry: plan.geometry, layout: .multiLayer, layers: layers, frames: frames)
        #expect(Int64(index.encode().count) <= plan.largestIndexSize)
        let chunks = (0..<10).map { ChunkLayer(number: $0, digest: layers[$0].digest, compressedSize: 1 << 21, diskOffset: UInt64($0) << 20,
                                               diskLength: 1 << 20, uncompressedSize: 1 << 20, uncompressedDigest: digest) }
        let small = Descriptor(mediaType: .imgfsNVRAM, digest: digest, size: 1000)
        let config = ImageConfig(disk: .init(size: 10 << 20, frameSize: 64 << 10, chunkSize: 1 << 20, layout: .multiLayer))
        let manifest = ImgfsImage.makeManifest(config: config, fsverityDigest: digest, configDescriptor: small, index: small, chunks: chunks,
                                               nvram: small, vmConfig: small, bootProfile: small)
        #expect(Int64(ManifestEncoding.encode(manifest).count) <= plan.largestManifestSize)
    }
}
