import CZlib

/// zlib inflating a stream of concatenated gzip members into a fixed buffer: the walk over the
/// members that `GzipStreamDecoder` and `GzipCheckpointBuilder` share. zlib is reset between
/// members only once the next member's bytes are here, so that `finish()` can tell a clean end
/// from a member cut short. Not thread-safe.
final class GzipMemberInflater {
    /// gzip wrapper only (16) with the largest window (15).
    static let windowBits: Int32 = 15 + 16

    let stream = ZlibStream()
    private let buffer: UnsafeMutableRawBufferPointer
    /// Input bytes consumed over the whole stream.
    private(set) var consumed: UInt64 = 0
    /// Bytes decoded over the whole stream.
    private(set) var produced: UInt64 = 0
    /// True from the first byte of a member to its end; what `finish()` checks.
    private var inMember = false
    /// A member ended; zlib must be reset before it reads the next one.
    private var needsReset = false
    private var membersDecoded = 0

    init(outputBufferSize: Int) throws(CodecError) {
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

    /// Ends the stream: fails if it was empty or stopped inside a member.
    func finish() throws(CodecError) {
        if inMember || membersDecoded == 0 { throw .truncatedStream(inputOffset: consumed) }
    }

    /// Inflates all of `input`, the next bytes of the stream, with `flush`, passing decoded bytes
    /// to `output` (valid only during the call). `memberStarts` runs before the first byte of each
    /// member is read; `stepped` after each `inflate` that returned `Z_OK`, with the stream's
    /// `data_type` (under `Z_BLOCK`, whether it stopped at a deflate block boundary).
    func decode(
        _ input: UnsafeRawBufferPointer, flush: Int32,
        output: (UnsafeRawBufferPointer) throws -> Void,
        memberStarts: () throws(CodecError) -> Void = {},
        stepped: (_ dataType: Int32) throws(CodecError) -> Void = { _ in }
    ) throws(CodecError) {
        var rest = input
        while !rest.isEmpty {
            let slice = UnsafeRawBufferPointer(rebasing: rest.prefix(zlibMaxSlice))
            try decodeSlice(slice, flush: flush, output: output, memberStarts: memberStarts, stepped: stepped)
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(slice.count))
        }
    }

    private func decodeSlice(
        _ input: UnsafeRawBufferPointer, flush: Int32,
        output: (UnsafeRawBufferPointer) throws -> Void,
        memberStarts: () throws(CodecError) -> Void,
        stepped: (_ dataType: Int32) throws(CodecError) -> Void
    ) throws(CodecError) {
        let z = stream.pointer
        stream.setInput(input)
        while true {
            if needsReset {
                guard z.pointee.avail_in > 0 else { return }
                inflateReset(z)
                needsReset = false
            }
            if !inMember && z.pointee.avail_in > 0 {
                inMember = true
                try memberStarts()
            }
            z.pointee.next_out = buffer.baseAddress?.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(buffer.count)
            let availableBefore = z.pointee.avail_in
            let status = inflate(z, flush)
            consumed += UInt64(availableBefore - z.pointee.avail_in)
            let count = buffer.count - Int(z.pointee.avail_out)
            if count > 0 {
                produced += UInt64(count)
                try deliver(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), to: output)
            }
            switch status {
            case Z_STREAM_END:
                inMember = false
                needsReset = true
                membersDecoded += 1
            case Z_OK:
                try stepped(z.pointee.data_type)
                // Stop when input is exhausted and zlib had room to spare: nothing is pending.
                if z.pointee.avail_in == 0 && z.pointee.avail_out > 0 { return }
            case Z_BUF_ERROR:
                // No progress possible without more input.
                return
            case Z_MEM_ERROR:
                throw .outOfMemory("zlib inflate window")
            default:
                throw .zlib(code: status, message: stream.message, inputOffset: consumed)
            }
        }
    }
}
