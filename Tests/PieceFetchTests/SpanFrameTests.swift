import Codec
import ImageLayouts
import ImgfsFormat
import OCI
import PieceFetch
import Testing
import Verity

/// A lume-like disk in gzip parts, indexed by checkpoints and aligned frame digests
/// (`SpanIndexedLayout`), read back frame by frame through `RangeRequest`: the same plan and
/// decode path as imgfs frames.
@Suite struct SpanFrameTests {
    static let frameSize = 64 * 1024

    /// Compressible, not repetitive bytes, with a zero stretch so that some frames are holes.
    static func diskBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count where !(count / 3..<count / 3 + 3 * frameSize).contains(i) {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            out[i] = UInt8(truncatingIfNeeded: (state >> 59) &+ UInt64(i / 4096))
        }
        return out
    }

    /// One part: gzip in `members` members (lume writes several), checkpoints every `span` bytes.
    static func part(_ bytes: [UInt8], members: Int, span: Int) throws -> (blob: [UInt8], spans: SpanIndexedLayout.LayerSpans) {
        let encoder = try GzipStreamEncoder(level: 6)
        var blob: [UInt8] = []
        let step = (bytes.count + members - 1) / members
        for start in stride(from: 0, to: bytes.count, by: step) {
            let member = Array(bytes[start..<min(bytes.count, start + step)])
            blob += try member.withUnsafeBytes { (raw) throws(CodecError) in try encoder.encodeMember(raw) }
        }
        let builder = try GzipCheckpointBuilder(spanSize: span)
        var points: [PackedCheckpoint] = []
        let windows = try WindowCodec()
        try blob.withUnsafeBytes { raw in
            try builder.decode(raw, output: { _ in }, checkpoint: { point in
                points.append(PackedCheckpoint(stream: .gzip, uncompressedOffset: point.uncompressedOffset, compressedOffset: point.compressedOffset,
                                               bitCount: point.bitCount, isMemberStart: point.isMemberStart, windowLength: point.window.count,
                                               compressedWindow: try windows.compress(point.window)))
            })
        }
        try builder.finish()
        let digests = stride(from: 0, to: bytes.count, by: frameSize).map { SHA256Hasher.digest(Array(bytes[$0..<min(bytes.count, $0 + frameSize)])) }
        return (blob, .init(blob: SHA256Hasher.digest(blob), checkpoints: points, frameDigests: digests))
    }

    @Test(arguments: [1, 3])
    func everyFrameOfAnIndexedGzipLayoutDecodesAndVerifies(members: Int) throws {
        let partSize = 40 * Self.frameSize
        let disk = Self.diskBytes(2 * partSize + 7 * Self.frameSize + 1000, seed: UInt64(members))
        var segments: [Segment] = [], spans: [SpanIndexedLayout.LayerSpans] = [], blobs: [Digest: [UInt8]] = [:]
        for (n, start) in stride(from: 0, to: disk.count, by: partSize).enumerated() {
            let bytes = Array(disk[start..<min(disk.count, start + partSize)])
            let (blob, layer) = try Self.part(bytes, members: members, span: 3 * Self.frameSize / 2)
            blobs[layer.blob] = blob
            spans.append(layer)
            segments.append(Segment(layerIndex: n, blob: Descriptor(mediaType: LumeOCIFormat.diskMediaType, digest: layer.blob, size: Int64(blob.count)),
                                    codec: .gzip, diskOffset: UInt64(start), length: UInt64(bytes.count), uncompressedDigest: nil))
        }
        let layout = try DiskLayout(diskSize: UInt64(disk.count), segments: segments)
        let index = try SpanIndexedLayout.frameIndex(layout, frameSize: Self.frameSize, spans: spans)
        #expect(index.frames.count == (disk.count + Self.frameSize - 1) / Self.frameSize)
        #expect(index.frames.contains { $0.isHole })

        var served = [UInt8](repeating: 0, count: disk.count)
        for request in RangeRequest.plan(index.frames.indices, index: index, maxBytes: 1 << 20) {
            let bytes = Array(blobs[request.blob]![Int(request.range.lowerBound)..<Int(request.range.upperBound)])
            request.decode(bytes, index: index) { frame, result in
                switch result {
                case .success(let verified):
                    let at = Int(index.geometry.offset(ofFrame: frame))
                    served.replaceSubrange(at..<at + verified.bytes.count, with: verified.bytes)
                case .failure(let error): Issue.record("frame \(frame): \(error)")
                }
            }
        }
        #expect(served == disk)

        // Each frame alone moves at most two checkpoint intervals of compressed bytes (plus the
        // partial byte before a checkpoint).
        for (frame, entry) in index.frames.enumerated() {
            guard let location = entry.location, case .checkpoint(let c, _) = location.start else { continue }
            let points = index.checkpoints
            let twoIntervals = (c + 2 < points.count && points[c + 2].uncompressedOffset > points[c].uncompressedOffset
                                ? points[c + 2].compressedOffset : UInt64(index.layers[location.layer].compressedSize)) - points[c].compressedStart
            #expect(UInt64(location.compressedLength) <= twoIntervals, "frame \(frame)")
        }
    }

    @Test func aWrongSpanDigestFailsVerificationNotTheRead() throws {
        let disk = Self.diskBytes(12 * Self.frameSize, seed: 9)
        var (blob, layer) = try Self.part(disk, members: 1, span: Self.frameSize)
        layer.frameDigests[5] = SHA256Hasher.digest([1, 2, 3])
        let segment = Segment(layerIndex: 0, blob: Descriptor(mediaType: LumeOCIFormat.diskMediaType, digest: layer.blob, size: Int64(blob.count)),
                              codec: .gzip, diskOffset: 0, length: UInt64(disk.count), uncompressedDigest: nil)
        let index = try SpanIndexedLayout.frameIndex(try DiskLayout(diskSize: UInt64(disk.count), segments: [segment]), frameSize: Self.frameSize, spans: [layer])
        var failed: [Int] = [], good: [Int] = []
        for request in RangeRequest.plan(index.frames.indices, index: index, maxBytes: 1 << 20) {
            request.decode(Array(blob[Int(request.range.lowerBound)..<Int(request.range.upperBound)]), index: index) { frame, result in
                if case .failure(.verification) = result { failed.append(frame) } else if case .success = result { good.append(frame) }
            }
        }
        #expect(failed == [5])
        #expect(good.count == index.frames.filter { !$0.isHole }.count - 1)
        // A byte changed in the blob: the frames whose piece holds it fail, the others decode.
        blob[blob.count / 2] ^= 0x40
        var broken = 0, fine = 0
        for request in RangeRequest.plan(index.frames.indices, index: index, maxBytes: 1 << 20) {
            request.decode(Array(blob[Int(request.range.lowerBound)..<Int(request.range.upperBound)]), index: index) { frame, result in
                if case .success = result { fine += 1 } else if frame != 5 { broken += 1 }
            }
        }
        #expect(broken >= 1)
        #expect(fine >= 3)
    }

    @Test func aLayoutNotAlignedToFramesIsRefused() throws {
        let disk = Self.diskBytes(4 * Self.frameSize, seed: 3)
        let (blob, layer) = try Self.part(disk, members: 1, span: Self.frameSize)
        let segment = Segment(layerIndex: 0, blob: Descriptor(mediaType: LumeOCIFormat.diskMediaType, digest: layer.blob, size: Int64(blob.count)),
                              codec: .gzip, diskOffset: 4096, length: UInt64(disk.count), uncompressedDigest: nil)
        let layout = try DiskLayout(diskSize: UInt64(disk.count) + 4096, segments: [segment])
        #expect(throws: SpanIndexedLayout.Unsuitable.self) { try SpanIndexedLayout.frameIndex(layout, frameSize: Self.frameSize, spans: [layer]) }
    }
}
