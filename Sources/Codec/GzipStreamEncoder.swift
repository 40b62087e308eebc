import CZlib

/// Streaming gzip with zlib: one member for input of unknown length (single-layer
/// compatibility and tests). Frames use `GzipFrameCompressor`, which is faster.
///
/// Feed input with `encode`, then call `finish` once to flush the member's trailer. Encoded
/// bytes go to the handler through a fixed buffer. Not thread-safe.
public final class GzipStreamEncoder {
    public static let levels = 1...9
    static let windowBits: Int32 = 15 + 16

    public let level: Int
    private let stream = ZlibStream()
    private let buffer: UnsafeMutableRawBufferPointer
    private var finished = false

    public init(level: Int = 6, outputBufferSize: Int = 1 << 20) throws(CodecError) {
        guard Self.levels.contains(level) else { throw .invalidLevel(level, allowed: Self.levels) }
        self.level = level
        buffer = .allocate(byteCount: max(outputBufferSize, 4096), alignment: 16)
        let status = imgfs_deflateInit2(stream.pointer, Int32(level), Self.windowBits)
        guard status == Z_OK else {
            buffer.deallocate()
            throw status == Z_MEM_ERROR ? .outOfMemory("zlib deflate state") : .zlib(code: status, message: "deflateInit2 failed", inputOffset: 0)
        }
    }

    deinit {
        deflateEnd(stream.pointer)
        buffer.deallocate()
    }

    public func encode(_ input: UnsafeRawBufferPointer, output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        var rest = input
        while !rest.isEmpty {
            let slice = UnsafeRawBufferPointer(rebasing: rest.prefix(zlibMaxSlice))
            stream.setInput(slice)
            try run(flush: Z_NO_FLUSH, output: output)
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(slice.count))
        }
    }

    public func encode(_ input: [UInt8], output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        try withTypedBytes(input) { bytes throws(CodecError) in try encode(bytes, output: output) }
    }

    /// Writes the rest of the member and its trailer.
    public func finish(output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        guard !finished else { return }
        stream.setInput(UnsafeRawBufferPointer(start: nil, count: 0))
        try run(flush: Z_FINISH, output: output)
        finished = true
    }

    /// Starts a new member with the same settings, reusing the allocated state.
    public func reset() {
        deflateReset(stream.pointer)
        finished = false
    }

    /// A whole buffer as one member; convenient for tests and measurements.
    public func encodeMember(_ input: UnsafeRawBufferPointer) throws(CodecError) -> [UInt8] {
        reset()
        var member = [UInt8]()
        let append: (UnsafeRawBufferPointer) -> Void = { member.append(contentsOf: $0) }
        try encode(input, output: append)
        try finish(output: append)
        return member
    }

    private func run(flush: Int32, output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        let z = stream.pointer
        while true {
            z.pointee.next_out = buffer.baseAddress?.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(buffer.count)
            let status = deflate(z, flush)
            let produced = buffer.count - Int(z.pointee.avail_out)
            if produced > 0 {
                try deliver(UnsafeRawBufferPointer(rebasing: buffer[0..<produced]), to: output)
            }
            switch status {
            case Z_STREAM_END:
                return
            case Z_OK, Z_BUF_ERROR:
                // Done with this input once zlib left output room unused.
                if flush != Z_FINISH && z.pointee.avail_in == 0 && z.pointee.avail_out > 0 { return }
                if status == Z_BUF_ERROR && produced == 0 { return }
            default:
                throw .zlib(code: status, message: stream.message, inputOffset: UInt64(z.pointee.total_in))
            }
        }
    }
}
