import CDeflate

/// Decodes one gzip member that must hold exactly one frame, with libdeflate.
///
/// Strict by design: a member that decodes to a different size, leaves bytes unread, is
/// truncated or fails its CRC is an error, never a partial result. Not thread-safe: one per
/// worker thread.
public final class GzipFrameDecompressor {
    private let decompressor: OpaquePointer

    public init() throws(CodecError) {
        guard let decompressor = libdeflate_alloc_decompressor() else {
            throw .outOfMemory("libdeflate decompressor")
        }
        self.decompressor = decompressor
    }

    deinit { libdeflate_free_decompressor(decompressor) }

    /// Decodes `member` into `output`, which it must fill exactly; returns `output.count`.
    /// On error the contents of `output` are unspecified and must not be used.
    @discardableResult
    public func decompress(_ member: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(CodecError) -> Int {
        var consumed = 0
        var produced = 0
        // libdeflate wants non-null pointers even for empty buffers.
        var empty: UInt8 = 0
        let result = withUnsafeMutablePointer(to: &empty) { placeholder in
            libdeflate_gzip_decompress_ex(
                decompressor,
                member.baseAddress ?? UnsafeRawPointer(placeholder), member.count,
                output.baseAddress ?? UnsafeMutableRawPointer(placeholder), output.count,
                &consumed, &produced)
        }
        switch result {
        case LIBDEFLATE_SUCCESS:
            break
        case LIBDEFLATE_INSUFFICIENT_SPACE:
            throw .memberSizeMismatch(memberSize: member.count, expectedSize: output.count, actualSize: nil)
        default:
            throw .corruptMember(memberSize: member.count, expectedSize: output.count)
        }
        guard produced == output.count else {
            throw .memberSizeMismatch(memberSize: member.count, expectedSize: output.count, actualSize: produced)
        }
        guard consumed == member.count else {
            throw .trailingData(memberSize: member.count, memberEnd: consumed)
        }
        return produced
    }

    /// Decodes `member` into a new array of exactly `expectedSize` bytes.
    public func decompress(_ member: UnsafeRawBufferPointer, expectedSize: Int) throws(CodecError) -> [UInt8] {
        var failure: CodecError?
        let output = [UInt8](unsafeUninitializedCapacity: expectedSize) { out, initialized in
            do throws(CodecError) {
                initialized = try decompress(member, into: UnsafeMutableRawBufferPointer(out))
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return output
    }

    public func decompress(_ member: [UInt8], expectedSize: Int) throws(CodecError) -> [UInt8] {
        try withTypedBytes(member) { buffer throws(CodecError) in try decompress(buffer, expectedSize: expectedSize) }
    }
}
