import Verity

// The binary layout of docs/FORMAT.md, "The frame index". All integers little-endian.
//
//   header   64 bytes: magic "IMGFSIDX", version u32, flags u32, frame size u32,
//                      layer count u32, disk size u64, frame count u64, 24 zero bytes
//   layers   40 bytes each: digest [32], compressed size u64
//   frames   56 bytes each: compressed offset u64, compressed length u32, layer u32,
//                      flags u32, reserved u32, digest [32]
extension FrameIndex {
    static let magic: [UInt8] = Array("IMGFSIDX".utf8)
    static let headerSize = 64
    static let layerRecordSize = 40
    static let frameRecordSize = 56
    static let noLayer: UInt32 = 0xFFFF_FFFF
    static let flagSingleLayer: UInt32 = 1
    static let frameFlagHole: UInt32 = 1

    public func encode() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.headerSize + layers.count * Self.layerRecordSize + frames.count * Self.frameRecordSize)
        out += Self.magic
        out.appendLE(Self.currentVersion)
        out.appendLE(layout == .singleLayer ? Self.flagSingleLayer : 0)
        out.appendLE(UInt32(geometry.frameSize))
        out.appendLE(UInt32(layers.count))
        out.appendLE(geometry.diskSize)
        out.appendLE(UInt64(frames.count))
        out += [UInt8](repeating: 0, count: 24)
        for layer in layers {
            out += layer.digest.bytes
            out.appendLE(UInt64(layer.compressedSize))
        }
        for frame in frames {
            out.appendLE(frame.location?.compressedOffset ?? 0)
            out.appendLE(frame.location?.compressedLength ?? 0)
            out.appendLE(frame.location.map { UInt32($0.layer) } ?? Self.noLayer)
            out.appendLE(frame.isHole ? Self.frameFlagHole : 0)
            out.appendLE(UInt32(0))
            out += frame.digest.bytes
        }
        return out
    }

    /// Decodes and validates an index blob. Every size, offset and cross-reference is checked
    /// here, so the rest of imgfs may trust a decoded index (its digests are still checked
    /// against every frame's bytes).
    public init(decoding bytes: [UInt8]) throws(FormatError) {
        guard Int64(bytes.count) <= FormatLimits.maximumIndexSize else { throw .indexTooLarge(Int64(bytes.count)) }
        guard bytes.count >= Self.headerSize else { throw .indexTruncated(expected: Self.headerSize, actual: bytes.count) }
        guard Array(bytes[0..<8]) == Self.magic else { throw .badIndexMagic }
        var reader = LEReader(bytes: bytes, position: 8)
        let version = reader.u32()
        guard version == Self.currentVersion else { throw .unsupportedIndexVersion(version) }
        let flags = reader.u32()
        let frameSize = Int(reader.u32())
        let layerCount = Int(reader.u32())
        let diskSize = reader.u64()
        let declaredFrames = reader.u64()
        let geometry = try DiskGeometry(diskSize: diskSize, frameSize: frameSize)
        guard declaredFrames == UInt64(geometry.frameCount) else {
            throw .indexFrameCountMismatch(declared: declaredFrames, expected: geometry.frameCount)
        }
        // Every layer stores at least one frame (checked below), so there cannot be more.
        guard layerCount <= geometry.frameCount else {
            throw .notAnImgfsImage(reason: "frame index lists \(layerCount) layers for \(geometry.frameCount) frames")
        }
        let expectedSize = Self.headerSize + layerCount * Self.layerRecordSize + geometry.frameCount * Self.frameRecordSize
        guard bytes.count == expectedSize else { throw .indexTruncated(expected: expectedSize, actual: bytes.count) }

        reader.position = Self.headerSize
        var layers = [LayerRef]()
        layers.reserveCapacity(layerCount)
        for layerNumber in 0..<layerCount {
            let digest = Digest(sha256Bytes: reader.bytes(32))
            let size = reader.u64()
            guard size <= UInt64(Int64.max) else {
                throw .notAnImgfsImage(reason: "frame index layer \(layerNumber) has a size of \(size) bytes, more than any blob can have")
            }
            layers.append(LayerRef(digest: digest, compressedSize: Int64(size)))
        }

        // Other flag bits, the reserved frame field and the header's last 24 bytes are ignored
        // (docs/FORMAT.md, "Versioning"): a later writer may use them for what old readers can skip.
        let layout: Layout = flags & Self.flagSingleLayer != 0 ? .singleLayer : .multiLayer
        // Hashed at the first hole only: a 64-byte header must not cost a 64 MiB hash.
        var zeroDigests: ZeroDigests?
        var frames = [FrameEntry]()
        frames.reserveCapacity(geometry.frameCount)
        for index in 0..<geometry.frameCount {
            let offset = reader.u64()
            let length = reader.u32()
            let layer = reader.u32()
            let frameFlags = reader.u32()
            _ = reader.u32()
            let digest = Digest(sha256Bytes: reader.bytes(32))
            let isHole = frameFlags & Self.frameFlagHole != 0
            // A hole is served as zeros without a fetch, so its digest must say zeros.
            if isHole {
                let zeros = zeroDigests ?? ZeroDigests(geometry)
                zeroDigests = zeros
                guard digest == zeros.digest(ofFrame: index) else {
                    throw .notAnImgfsImage(reason: "frame \(index) is flagged as a hole but its digest \(digest) is not that of \(geometry.length(ofFrame: index)) zero bytes")
                }
            }
            var location: Location? = nil
            if layer != Self.noLayer {
                guard Int(layer) < layers.count else {
                    throw .frameLayerOutOfRange(frame: index, layer: layer, layerCount: layers.count)
                }
                let limit = Self.maximumCompressedLength(forFrameLength: geometry.length(ofFrame: index))
                guard length > 0 else { throw .frameEmpty(frame: index) }
                guard Int(length) <= limit else {
                    throw .frameTooLarge(frame: index, compressedLength: length, limit: limit)
                }
                let layerSize = layers[Int(layer)].compressedSize
                let (end, overflow) = offset.addingReportingOverflow(UInt64(length))
                guard !overflow, end <= UInt64(layerSize) else {
                    throw .frameOutOfBounds(frame: index, layer: Int(layer), offset: offset, length: length, layerSize: layerSize)
                }
                location = Location(layer: Int(layer), compressedOffset: offset, compressedLength: length)
            } else if !isHole {
                throw .notAnImgfsImage(reason: "frame \(index) is neither a hole nor stored in a layer")
            }
            frames.append(FrameEntry(digest: digest, isHole: isHole, location: location))
        }
        if layout == .singleLayer, frames.contains(where: { $0.location == nil }) {
            throw .notAnImgfsImage(reason: "a single-layer index must store every frame")
        }
        try Self.checkLayerOrder(frames, layerCount: layers.count)
        try Self.checkMembers(frames, layers: layers)
        self.init(geometry: geometry, layout: layout, layers: layers, frames: frames)
    }

    /// The layer table lists layers in the order frames first use them, and lists none that no
    /// frame uses: so one disk has exactly one index, and a layer cannot hide in the table.
    private static func checkLayerOrder(_ frames: [FrameEntry], layerCount: Int) throws(FormatError) {
        var next = 0
        for (i, frame) in frames.enumerated() {
            guard let layer = frame.location?.layer, layer >= next else { continue }
            guard layer == next else {
                throw .notAnImgfsImage(reason: "frame \(i) is the first to use layer \(layer), but layer \(next) is not used before it (layers are listed in order of first use)")
            }
            next += 1
        }
        guard next == layerCount else {
            throw .notAnImgfsImage(reason: "frame index layer \(next) is used by no frame")
        }
    }

    /// The members of a layer tile it: sorted by offset they start at 0, follow each other
    /// without gaps and end at the layer's size. So every byte of a chunk blob is in a member
    /// that some frame names, and a reader that verifies frames has verified the whole blob's
    /// content. Two frames may share one member (identical frames are stored once), but two
    /// members may not partly overlap: that would mean a corrupt or hostile index.
    private static func checkMembers(_ frames: [FrameEntry], layers: [LayerRef]) throws(FormatError) {
        var members = [(location: Location, frame: Int)]()
        members.reserveCapacity(frames.count)
        for (i, frame) in frames.enumerated() {
            if let location = frame.location { members.append((location, i)) }
        }
        members.sort { a, b in
            (a.location.layer, a.location.compressedOffset, a.location.compressedLength)
                < (b.location.layer, b.location.compressedOffset, b.location.compressedLength)
        }
        var covered = [UInt64](repeating: 0, count: layers.count)  // end of the members so far, per layer
        var previous: (location: Location, frame: Int)?
        for member in members {
            let layer = member.location.layer
            if let previous, previous.location == member.location {
                guard frames[previous.frame].digest == frames[member.frame].digest else {
                    throw .notAnImgfsImage(reason: "frames \(previous.frame) and \(member.frame) share a stored member but not a digest")
                }
                continue
            }
            if member.location.compressedOffset < covered[layer] {
                throw .notAnImgfsImage(reason: "frames \(previous?.frame ?? 0) and \(member.frame) overlap in layer \(layer)")
            }
            if member.location.compressedOffset > covered[layer] {
                throw .notAnImgfsImage(reason: "bytes \(covered[layer])..<\(member.location.compressedOffset) of layer \(layer) are in no frame's member (members must tile their layer)")
            }
            covered[layer] = member.location.compressedOffset + UInt64(member.location.compressedLength)
            previous = member
        }
        for (layer, end) in covered.enumerated() where end != UInt64(layers[layer].compressedSize) {
            throw .notAnImgfsImage(reason: "bytes \(end)..<\(layers[layer].compressedSize) of layer \(layer) are in no frame's member (members must tile their layer)")
        }
    }
}

/// SHA-256 of a whole frame of zeros and of the short last frame, computed once per index.
struct ZeroDigests {
    let full: Digest
    let last: Digest
    let lastFrame: Int

    init(_ geometry: DiskGeometry) {
        lastFrame = geometry.frameCount - 1
        full = Self.zeros(geometry.frameSize)
        let lastLength = geometry.frameCount > 0 ? geometry.length(ofFrame: lastFrame) : geometry.frameSize
        last = lastLength == geometry.frameSize ? full : Self.zeros(lastLength)
    }

    func digest(ofFrame index: Int) -> Digest { index == lastFrame ? last : full }

    private static func zeros(_ count: Int) -> Digest {
        let hasher = SHA256Hasher()
        hasher.updateZeros(count: count)
        return hasher.finalize()
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }
}

/// A cursor over bytes whose length was already checked by the caller.
struct LEReader {
    let bytes: [UInt8]
    var position: Int

    mutating func u32() -> UInt32 { integer() }
    mutating func u64() -> UInt64 { integer() }

    mutating func bytes(_ count: Int) -> ArraySlice<UInt8> {
        defer { position += count }
        return bytes[position..<position + count]
    }

    private mutating func integer<T: FixedWidthInteger>() -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size {
            value |= T(bytes[position + i]) << (8 * i)
        }
        position += MemoryLayout<T>.size
        return value
    }
}
