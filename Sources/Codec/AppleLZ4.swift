/// Apple's framed LZ4 (`COMPRESSION_LZ4`, `NSData.compressed(using: .lz4)`), as lume's legacy
/// format and tart write their disk layers.
///
/// Not the LZ4 frame format of lz4.org: a sequence of blocks, each starting with a 4-byte
/// magic, all sizes 32-bit little-endian:
/// - `bv41` decodedSize encodedSize, then `encodedSize` bytes of one LZ4 block. The block may
///   copy from the previous block's decoded bytes (the last 64 KiB of them), as Apple's
///   encoder compresses the stream continuously.
/// - `bv4-` size, then `size` raw bytes (data that did not compress).
/// - `bv4$` ends the stream.
public enum AppleLZ4 {
    static let compressedMagic: [UInt8] = Array("bv41".utf8)
    static let rawMagic: [UInt8] = Array("bv4-".utf8)
    static let endMagic: [UInt8] = Array("bv4$".utf8)
    /// How far back an LZ4 match can reach, hence how much history a decoder keeps.
    static let windowSize = 64 * 1024
}
