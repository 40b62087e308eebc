import Verity

/// The on-disk bitmap of verified frames.
///
/// A 4096-byte header, then one bit per frame (frame i: byte 4096 + i / 8, bit i % 8, least
/// significant first). The header fills a whole page so that the header and a bitmap byte never
/// share a sector: a torn header write cannot damage bits, and a bit write cannot damage the header.
///
///     offset  size  field
///          0     8  magic "IMGFSBMP"
///          8     4  version (1), little-endian
///         12     4  flags: bit 0 = every frame present
///         16     8  frame size
///         24     8  disk size
///         32     8  frame count
///         40    32  cache key (SHA-256 of the frame index blob)
///         72    32  SHA-256 of bytes 0..<72
///        104  3992  zero
enum BitmapFormat {
    static let magic = Array("IMGFSBMP".utf8)
    static let version: UInt32 = 1
    static let headerSize = 4096
    static let checkedLength = 72
    static let allPresentFlag: UInt32 = 1

    struct Header: Equatable {
        var flags: UInt32
        var frameSize: UInt64
        var diskSize: UInt64
        var frameCount: UInt64
        var key: [UInt8]

        var allPresent: Bool {
            get { flags & BitmapFormat.allPresentFlag != 0 }
            set { flags = newValue ? flags | BitmapFormat.allPresentFlag : flags & ~BitmapFormat.allPresentFlag }
        }

        func encoded() -> [UInt8] {
            var out = BitmapFormat.magic
            out.reserveCapacity(BitmapFormat.headerSize)
            append(BitmapFormat.version, to: &out)
            append(flags, to: &out)
            append(frameSize, to: &out)
            append(diskSize, to: &out)
            append(frameCount, to: &out)
            out += key
            out += SHA256Hasher.digest(out).bytes
            out += [UInt8](repeating: 0, count: BitmapFormat.headerSize - out.count)
            return out
        }

        /// Parses a header, or says why it cannot be trusted.
        static func decode(_ bytes: [UInt8]) -> Result<Header, HeaderProblem> {
            guard bytes.count >= BitmapFormat.headerSize else { return .failure(.truncated(bytes.count)) }
            guard Array(bytes[0..<8]) == BitmapFormat.magic else { return .failure(.badMagic) }
            let checksum = SHA256Hasher.digest(bytes[0..<BitmapFormat.checkedLength]).bytes
            guard Array(bytes[BitmapFormat.checkedLength..<BitmapFormat.checkedLength + 32]) == checksum else {
                return .failure(.badChecksum)
            }
            let version: UInt32 = load(bytes, 8)
            guard version == BitmapFormat.version else { return .failure(.unsupportedVersion(version)) }
            return .success(Header(flags: load(bytes, 12), frameSize: load(bytes, 16), diskSize: load(bytes, 24),
                                   frameCount: load(bytes, 32), key: Array(bytes[40..<72])))
        }
    }

    enum HeaderProblem: Error, CustomStringConvertible {
        case truncated(Int)
        case badMagic
        case badChecksum
        case unsupportedVersion(UInt32)

        var description: String {
            switch self {
            case .truncated(let n): "bitmap header truncated to \(n) bytes"
            case .badMagic: "bitmap does not start with IMGFSBMP"
            case .badChecksum: "bitmap header checksum mismatch"
            case .unsupportedVersion(let v): "bitmap version \(v) is not supported"
            }
        }
    }

    static func byteCount(frames: Int) -> Int { (frames + 7) / 8 }
    static func fileSize(frames: Int) -> UInt64 { UInt64(headerSize + byteCount(frames: frames)) }
    static func byteOffset(ofFrame frame: Int) -> UInt64 { UInt64(headerSize + frame / 8) }

    /// Clears the bits past the last frame, which no frame owns.
    static func maskTail(_ bits: inout [UInt8], frames: Int) {
        guard frames % 8 != 0, let last = bits.indices.last else { return }
        bits[last] &= UInt8((1 << (frames % 8)) - 1)
    }

    static func isSet(_ bits: [UInt8], _ frame: Int) -> Bool { bits[frame >> 3] & (1 << (frame & 7)) != 0 }

    /// Sets frame `frame`'s bit; returns false if it was set already.
    static func set(_ bits: inout [UInt8], _ frame: Int) -> Bool {
        let mask: UInt8 = 1 << (frame & 7)
        guard bits[frame >> 3] & mask == 0 else { return false }
        bits[frame >> 3] |= mask
        return true
    }

    static func clear(_ bits: inout [UInt8], _ frame: Int) {
        bits[frame >> 3] &= ~(1 << (frame & 7))
    }

    static func popcount(_ bits: [UInt8]) -> Int { bits.reduce(0) { $0 + $1.nonzeroBitCount } }

    private static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }

    private static func load<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int) -> T {
        var value: T = 0
        for i in (0..<MemoryLayout<T>.size).reversed() { value = value << 8 | T(bytes[offset + i]) }
        return value
    }
}
