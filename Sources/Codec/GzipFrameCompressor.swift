import CDeflate

/// Compresses one frame into one complete gzip member (RFC 1952) with libdeflate.
///
/// libdeflate compresses a whole buffer at once, which is what frames are (their size is
/// known up front), and is markedly faster than zlib at equal ratio. Holds the compressor's
/// state (hundreds of KiB at high levels), so keep one per worker thread: not thread-safe.
public final class GzipFrameCompressor {
    public static let levels = 1...12
    public static let defaultLevel = 6

    public let level: Int
    private let compressor: OpaquePointer

    public init(level: Int = GzipFrameCompressor.defaultLevel) throws(CodecError) {
        guard Self.levels.contains(level) else { throw .invalidLevel(level, allowed: Self.levels) }
        guard let compressor = libdeflate_alloc_compressor(Int32(level)) else {
            throw .outOfMemory("libdeflate compressor at level \(level)")
        }
        self.level = level
        self.compressor = compressor
    }

    deinit { libdeflate_free_compressor(compressor) }

    /// One gzip member holding `input`; `gunzip` and any concatenation of members decode it.
    public func compress(_ input: UnsafeRawBufferPointer) throws(CodecError) -> [UInt8] {
        let bound = libdeflate_gzip_compress_bound(compressor, input.count)
        var failed = false
        let member = [UInt8](unsafeUninitializedCapacity: bound) { out, initialized in
            initialized = libdeflate_gzip_compress(compressor, input.baseAddress, input.count, out.baseAddress, bound)
            failed = initialized == 0
        }
        if failed { throw .compressionFailed(inputSize: input.count) }
        return member
    }

    public func compress(_ input: [UInt8]) throws(CodecError) -> [UInt8] {
        try withTypedBytes(input) { buffer throws(CodecError) in try compress(buffer) }
    }
}

/// `Array.withUnsafeBytes` rethrows untyped; this keeps `CodecError` typed through it.
func withTypedBytes<R>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(CodecError) -> R) throws(CodecError) -> R {
    let result: Result<R, CodecError> = array.withUnsafeBytes { buffer in
        do throws(CodecError) { return .success(try body(buffer)) } catch { return .failure(error) }
    }
    return try result.get()
}
