import CDeflate

/// Raw deflate (libdeflate) for checkpoint windows, which a span index stores compressed: a
/// 32 KiB window per 1–4 MiB span is 0.8–3% of the disk, and windows of disk data compress
/// like the disk. Decoding requires the exact declared length. Not thread-safe: one per thread.
public final class WindowCodec {
    private let compressor: OpaquePointer
    private let decompressor: OpaquePointer

    public init() throws(CodecError) {
        guard let compressor = libdeflate_alloc_compressor(6) else { throw .outOfMemory("libdeflate compressor") }
        guard let decompressor = libdeflate_alloc_decompressor() else {
            libdeflate_free_compressor(compressor)
            throw .outOfMemory("libdeflate decompressor")
        }
        self.compressor = compressor
        self.decompressor = decompressor
    }

    deinit {
        libdeflate_free_compressor(compressor)
        libdeflate_free_decompressor(decompressor)
    }

    /// Raw deflate of `window`; empty for an empty window.
    public func compress(_ window: [UInt8]) throws(CodecError) -> [UInt8] {
        guard !window.isEmpty else { return [] }
        let bound = libdeflate_deflate_compress_bound(compressor, window.count)
        var failed = false
        let out = window.withUnsafeBytes { input in
            [UInt8](unsafeUninitializedCapacity: bound) { out, initialized in
                initialized = libdeflate_deflate_compress(compressor, input.baseAddress, input.count, out.baseAddress, bound)
                failed = initialized == 0
            }
        }
        if failed { throw .compressionFailed(inputSize: window.count) }
        return out
    }

    /// The window `compressed` holds, which must be exactly `length` bytes.
    public func decompress(_ compressed: [UInt8], length: Int) throws(CodecError) -> [UInt8] {
        guard length > 0 else {
            guard compressed.isEmpty else { throw .checkpointInvalid(reason: "an empty window has \(compressed.count) compressed bytes") }
            return []
        }
        guard length <= SpanWindow.lz4Maximum else { throw .checkpointInvalid(reason: "window of \(length) bytes is above \(SpanWindow.lz4Maximum)") }
        var result = LIBDEFLATE_BAD_DATA
        let window = compressed.withUnsafeBytes { input in
            [UInt8](unsafeUninitializedCapacity: length) { out, initialized in
                var consumed = 0
                var produced = 0
                var placeholder: UInt8 = 0
                result = withUnsafeMutablePointer(to: &placeholder) { placeholder in
                    libdeflate_deflate_decompress_ex(decompressor, input.baseAddress ?? UnsafeRawPointer(placeholder), input.count,
                                                     out.baseAddress, length, &consumed, &produced)
                }
                if result == LIBDEFLATE_SUCCESS && (produced != length || consumed != input.count) { result = LIBDEFLATE_BAD_DATA }
                initialized = result == LIBDEFLATE_SUCCESS ? length : 0
            }
        }
        guard result == LIBDEFLATE_SUCCESS else {
            throw .checkpointInvalid(reason: "compressed window of \(compressed.count) bytes does not decode to its declared \(length) bytes")
        }
        return window
    }
}
