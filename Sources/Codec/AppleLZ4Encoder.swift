import CLZ4

/// Encodes a buffer as Apple framed LZ4 (see `AppleLZ4`), readable by
/// `NSData.decompressed(using: .lz4)`, tart and lume.
///
/// Blocks that LZ4 cannot shrink are stored raw (`bv4-`). By default every block is
/// compressed independently; `chained: true` lets a block copy from the one before, as
/// Apple's own encoder does, which compresses a little better and gives tests streams that
/// need the decoder's dictionary.
public struct AppleLZ4Encoder: Sendable {
    public static let blockSizes = 256...(64 << 20)
    public static let defaultBlockSize = 1 << 20

    public let blockSize: Int
    public let chained: Bool

    public init(blockSize: Int = AppleLZ4Encoder.defaultBlockSize, chained: Bool = false) throws(CodecError) {
        guard Self.blockSizes.contains(blockSize) else { throw .invalidBlockSize(blockSize, allowed: Self.blockSizes) }
        self.blockSize = blockSize
        self.chained = chained
    }

    /// The whole stream for `input`, ending with `bv4$`.
    public func encode(_ input: UnsafeRawBufferPointer) throws(CodecError) -> [UInt8] {
        guard let stream = LZ4_createStream() else { throw .outOfMemory("LZ4 stream state") }
        defer { LZ4_freeStream(stream) }

        var out = [UInt8]()
        out.reserveCapacity(input.count + input.count / 64 + 64)
        let bound = Int(LZ4_compressBound(Int32(blockSize)))
        var scratch = [UInt8](repeating: 0, count: bound)
        var start = 0
        while start < input.count {
            let size = min(blockSize, input.count - start)
            let block = UnsafeRawBufferPointer(rebasing: input[start..<start + size])
            if !chained { LZ4_resetStream_fast(stream) }
            // The previous block stays in `input` at its address, which is what
            // LZ4_compress_fast_continue needs to match into it.
            let encodedSize = scratch.withUnsafeMutableBytes { scratch in
                LZ4_compress_fast_continue(
                    stream,
                    block.baseAddress?.assumingMemoryBound(to: CChar.self),
                    scratch.baseAddress?.assumingMemoryBound(to: CChar.self),
                    Int32(size), Int32(bound), 1)
            }
            if encodedSize > 0 && Int(encodedSize) < size {
                out.append(contentsOf: AppleLZ4.compressedMagic)
                Self.appendLE32(size, to: &out)
                Self.appendLE32(Int(encodedSize), to: &out)
                out.append(contentsOf: scratch[0..<Int(encodedSize)])
            } else {
                out.append(contentsOf: AppleLZ4.rawMagic)
                Self.appendLE32(size, to: &out)
                out.append(contentsOf: block)
            }
            start += size
        }
        out.append(contentsOf: AppleLZ4.endMagic)
        return out
    }

    public func encode(_ input: [UInt8]) throws(CodecError) -> [UInt8] {
        try withTypedBytes(input) { bytes throws(CodecError) in try encode(bytes) }
    }

    private static func appendLE32(_ value: Int, to out: inout [UInt8]) {
        for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }
}
