import CZlib

/// Streaming gunzip with zlib, for whole layers: several concatenated members decode to the
/// concatenation of their contents, as `gunzip` does.
///
/// Feed input with `decode` as it arrives, in pieces of any size; decoded bytes go to the
/// handler through a fixed buffer, so memory stays bounded whatever the layer size. Then
/// call `finish()`, which fails if the stream stopped inside a member. Not thread-safe.
public final class GzipStreamDecoder {
    /// gzip wrapper only (16) with the largest window (15).
    static let windowBits: Int32 = 15 + 16

    private let stream = ZlibStream()
    private let buffer: UnsafeMutableRawBufferPointer
    /// Input bytes consumed over the whole stream, for error context.
    private var consumed: UInt64 = 0
    /// True from the first byte of a member to its end; what `finish()` checks.
    private var inMember = false
    /// A member ended; zlib must be reset before it reads the next one.
    private var needsReset = false
    private var membersDecoded = 0

    public init(outputBufferSize: Int = 1 << 20) throws(CodecError) {
        buffer = .allocate(byteCount: max(outputBufferSize, 4096), alignment: 16)
        let status = imgfs_inflateInit2(stream.pointer, Self.windowBits)
        guard status == Z_OK else {
            buffer.deallocate()
            throw status == Z_MEM_ERROR ? .outOfMemory("zlib inflate state") : .zlib(code: status, message: "inflateInit2 failed", inputOffset: 0)
        }
    }

    deinit {
        inflateEnd(stream.pointer)
        buffer.deallocate()
    }

    /// Decodes `input`, the next bytes of the stream, passing decoded bytes to `output`. The
    /// buffer given to `output` is only valid during the call.
    public func decode(_ input: UnsafeRawBufferPointer, output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        var rest = input
        while !rest.isEmpty {
            let slice = UnsafeRawBufferPointer(rebasing: rest.prefix(zlibMaxSlice))
            let used = try decodeSlice(slice, output: output)
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(used))
        }
    }

    public func decode(_ input: [UInt8], output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        try withTypedBytes(input) { bytes throws(CodecError) in try decode(bytes, output: output) }
    }

    /// Ends the stream: fails if it was empty or stopped inside a member.
    public func finish() throws(CodecError) {
        if inMember || membersDecoded == 0 { throw .truncatedStream(inputOffset: consumed) }
    }

    /// Returns how many bytes of `input` were consumed (all, unless an error is thrown).
    private func decodeSlice(_ input: UnsafeRawBufferPointer, output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) -> Int {
        let z = stream.pointer
        stream.setInput(input)
        while true {
            if needsReset {
                // Only reset once the next member's bytes are here, so finish() can tell a
                // clean end from a member cut short.
                guard z.pointee.avail_in > 0 else { break }
                inflateReset(z)
                needsReset = false
            }
            if z.pointee.avail_in > 0 { inMember = true }
            z.pointee.next_out = buffer.baseAddress?.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(buffer.count)
            let availableBefore = z.pointee.avail_in
            let status = inflate(z, Z_NO_FLUSH)
            consumed += UInt64(availableBefore - z.pointee.avail_in)
            let produced = buffer.count - Int(z.pointee.avail_out)
            if produced > 0 {
                try deliver(UnsafeRawBufferPointer(rebasing: buffer[0..<produced]), to: output)
            }
            switch status {
            case Z_STREAM_END:
                inMember = false
                needsReset = true
                membersDecoded += 1
            case Z_OK:
                // Stop when input is exhausted and zlib had room to spare: nothing is pending.
                if z.pointee.avail_in == 0 && z.pointee.avail_out > 0 { return input.count }
            case Z_BUF_ERROR:
                // No progress possible without more input.
                return input.count
            case Z_MEM_ERROR:
                throw .outOfMemory("zlib inflate window")
            default:
                throw .zlib(code: status, message: stream.message, inputOffset: consumed)
            }
        }
        return input.count
    }
}
