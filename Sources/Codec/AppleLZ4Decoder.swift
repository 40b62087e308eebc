import CLZ4
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streaming decoder of Apple framed LZ4 (see `AppleLZ4`).
///
/// Feed input in pieces of any size (a magic may be split across pieces); each block's
/// decoded bytes go to the handler once the whole block has arrived. Memory is bounded by
/// the largest block seen (at most `maximumBlockSize` decoded, and as much encoded) plus a
/// 64 KiB window. Call `finish()` at the end: it fails unless `bv4$` was seen. Not thread-safe.
public final class AppleLZ4Decoder {
    /// Blocks declaring more are rejected rather than allocated for. Apple's encoder writes
    /// far smaller blocks; the limit only guards against a corrupt or hostile size field.
    public static let defaultMaximumBlockSize = 64 << 20

    public let maximumBlockSize: Int

    private enum State {
        /// Collecting a block header into `header` (magic, then one or two sizes).
        case header
        /// Collecting `encodedSize` bytes of a `bv41` block.
        case compressed(decodedSize: Int, encodedSize: Int)
        /// Collecting `size` raw bytes of a `bv4-` block.
        case raw(size: Int)
        case ended
    }

    private var state = State.header
    private var header: [UInt8] = []
    /// Stream offset of the current block's header, for error context.
    private var blockOffset: UInt64 = 0
    /// Stream offset of the next input byte.
    private var offset: UInt64 = 0

    /// Encoded bytes of the current `bv41` block.
    private var encoded: [UInt8] = []
    /// `window[0..<history]` is the previous output (up to 64 KiB), so LZ4 sees it as the
    /// dictionary directly before `window[history...]`, where the current block is decoded.
    private var window: [UInt8] = []
    private var history = 0
    /// Bytes of the current block already placed at `window[history...]` (raw) or `encoded`.
    private var collected = 0

    /// Uncompressed bytes passed to the handler so far.
    private(set) var produced: UInt64 = 0
    /// Called at each block's magic (not the end marker) with the block's stream offset, the
    /// bytes produced before it and the history it may copy from: what a span checkpoint records.
    var blockStart: ((_ compressedOffset: UInt64, _ uncompressedOffset: UInt64, _ history: UnsafeRawBufferPointer) throws(CodecError) -> Void)?

    public init(maximumBlockSize: Int = AppleLZ4Decoder.defaultMaximumBlockSize) {
        self.maximumBlockSize = maximumBlockSize
        header.reserveCapacity(12)
    }

    /// A decoder that starts mid-stream at a block boundary (a span checkpoint): `history` is
    /// the output before it, up to 64 KiB, and `offset` the block's stream offset.
    init(resumingAt offset: UInt64, history: [UInt8], maximumBlockSize: Int = AppleLZ4Decoder.defaultMaximumBlockSize) {
        self.maximumBlockSize = maximumBlockSize
        self.offset = offset
        header.reserveCapacity(12)
        window = history
        self.history = history.count
    }

    public var isFinished: Bool {
        if case .ended = state { return true }
        return false
    }

    public func decode(_ input: UnsafeRawBufferPointer, output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        var rest = input
        while !rest.isEmpty {
            switch state {
            case .ended:
                throw .lz4DataAfterEnd(offset: offset)
            case .header:
                let used = try readHeader(rest)
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(used))
                offset += UInt64(used)
                if case .ended = state, !rest.isEmpty { throw .lz4DataAfterEnd(offset: offset) }
            case .compressed(let decodedSize, let encodedSize):
                let n = min(rest.count, encodedSize - collected)
                let position = collected
                encoded.withUnsafeMutableBytes { target in
                    UnsafeMutableRawBufferPointer(rebasing: target[position..<position + n])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: rest.prefix(n)))
                }
                collected += n
                offset += UInt64(n)
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(n))
                if collected == encodedSize {
                    try decodeBlock(decodedSize: decodedSize, encodedSize: encodedSize)
                    try emitBlock(size: decodedSize, output: output)
                }
            case .raw(let size):
                let n = min(rest.count, size - collected)
                copyIntoWindow(rest.prefix(n), at: history + collected)
                collected += n
                offset += UInt64(n)
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(n))
                if collected == size { try emitBlock(size: size, output: output) }
            }
        }
    }

    public func decode(_ input: [UInt8], output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        try withTypedBytes(input) { bytes throws(CodecError) in try decode(bytes, output: output) }
    }

    /// Ends the stream: fails unless it ended with `bv4$`.
    public func finish() throws(CodecError) {
        guard isFinished else { throw .lz4Truncated(offset: offset) }
    }

    // MARK: - Blocks

    /// Consumes header bytes; returns how many of `input` it used.
    private func readHeader(_ input: UnsafeRawBufferPointer) throws(CodecError) -> Int {
        if header.isEmpty { blockOffset = offset }
        var used = 0
        while used < input.count {
            header.append(input[used])
            used += 1
            if header.count == 4 {
                let magic = Array(header)
                if magic == AppleLZ4.endMagic {
                    header.removeAll(keepingCapacity: true)
                    state = .ended
                    return used
                }
                guard magic == AppleLZ4.compressedMagic || magic == AppleLZ4.rawMagic else {
                    throw .lz4BadMagic(offset: blockOffset, magic: magic)
                }
                if let blockStart {
                    let (history, offset, produced) = (self.history, blockOffset, self.produced)
                    let outcome: Result<Void, CodecError> = window.withUnsafeBytes { window in
                        do throws(CodecError) {
                            try blockStart(offset, produced, UnsafeRawBufferPointer(rebasing: window[0..<history]))
                            return .success(())
                        } catch { return .failure(error) }
                    }
                    try outcome.get()
                }
            }
            if header.count == 8 && Array(header[0..<4]) == AppleLZ4.rawMagic {
                let size = Self.le32(header, at: 4)
                try startBlock(decodedSize: size)
                state = .raw(size: size)
                header.removeAll(keepingCapacity: true)
                return used
            }
            if header.count == 12 {
                let decodedSize = Self.le32(header, at: 4)
                let encodedSize = Self.le32(header, at: 8)
                try startBlock(decodedSize: decodedSize)
                // LZ4's worst case for incompressible input bounds any honest encoded size.
                guard encodedSize <= Int(LZ4_compressBound(Int32(clamping: decodedSize))) + 16 else {
                    throw .lz4CorruptBlock(offset: blockOffset, encodedSize: encodedSize, decodedSize: decodedSize)
                }
                if encoded.count < encodedSize { encoded = [UInt8](repeating: 0, count: encodedSize) }
                state = .compressed(decodedSize: decodedSize, encodedSize: encodedSize)
                header.removeAll(keepingCapacity: true)
                return used
            }
        }
        return used
    }

    private func startBlock(decodedSize: Int) throws(CodecError) {
        guard decodedSize <= maximumBlockSize else {
            throw .lz4BlockTooLarge(offset: blockOffset, decodedSize: decodedSize, limit: maximumBlockSize)
        }
        let needed = history + decodedSize
        if window.count < needed { window.append(contentsOf: repeatElement(0, count: needed - window.count)) }
        collected = 0
    }

    private func decodeBlock(decodedSize: Int, encodedSize: Int) throws(CodecError) {
        let result = window.withUnsafeMutableBytes { window in
            encoded.withUnsafeBytes { encoded in
                guard let base = window.baseAddress, let source = encoded.baseAddress else { return Int32(-1) }
                let dictionary = base.assumingMemoryBound(to: CChar.self)
                return LZ4_decompress_safe_usingDict(
                    source.assumingMemoryBound(to: CChar.self),
                    dictionary + history,
                    Int32(encodedSize), Int32(decodedSize),
                    dictionary, Int32(history))
            }
        }
        guard result == decodedSize else {
            throw .lz4CorruptBlock(offset: blockOffset, encodedSize: encodedSize, decodedSize: decodedSize)
        }
    }

    /// Passes the block on, then keeps its last 64 KiB (with older history if the block was
    /// shorter) at the front of the window for the next block.
    private func emitBlock(size: Int, output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        let history = self.history
        let outcome: Result<Void, CodecError> = window.withUnsafeBytes { window in
            do throws(CodecError) {
                try deliver(UnsafeRawBufferPointer(rebasing: window[history..<history + size]), to: output)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try outcome.get()
        produced += UInt64(size)
        let end = history + size
        let keep = min(end, AppleLZ4.windowSize)
        if end > keep {
            window.withUnsafeMutableBytes { window in
                guard let base = window.baseAddress else { return }
                // The regions overlap when the block was shorter than the window: memmove.
                memmove(base, base + (end - keep), keep)
            }
        }
        self.history = keep
        state = .header
    }

    private func copyIntoWindow(_ bytes: UnsafeRawBufferPointer.SubSequence, at position: Int) {
        window.withUnsafeMutableBytes { window in
            UnsafeMutableRawBufferPointer(rebasing: window[position..<position + bytes.count]).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes))
        }
    }

    private static func le32(_ bytes: [UInt8], at index: Int) -> Int {
        Int(bytes[index]) | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2]) << 16 | Int(bytes[index + 3]) << 24
    }
}
