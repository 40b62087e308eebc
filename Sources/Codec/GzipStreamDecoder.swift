import CZlib

/// Streaming gunzip with zlib, for whole layers: several concatenated members decode to the
/// concatenation of their contents, as `gunzip` does.
///
/// Feed input with `decode` as it arrives, in pieces of any size; decoded bytes go to the
/// handler through a fixed buffer, so memory stays bounded whatever the layer size. Then
/// call `finish()`, which fails if the stream stopped inside a member. Not thread-safe.
public final class GzipStreamDecoder {
    private let members: GzipMemberInflater

    public init(outputBufferSize: Int = 1 << 20) throws(CodecError) {
        members = try GzipMemberInflater(outputBufferSize: outputBufferSize)
    }

    /// Decodes `input`, the next bytes of the stream, passing decoded bytes to `output`. The
    /// buffer given to `output` is only valid during the call.
    public func decode(_ input: UnsafeRawBufferPointer, output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        try members.decode(input, flush: Z_NO_FLUSH, output: output)
    }

    public func decode(_ input: [UInt8], output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
        try withTypedBytes(input) { bytes throws(CodecError) in try decode(bytes, output: output) }
    }

    /// Ends the stream: fails if it was empty or stopped inside a member.
    public func finish() throws(CodecError) {
        try members.finish()
    }
}
