import Codec
import FuzzSupport

/// The first byte picks the decoder. Even: `GzipFrameDecompressor` with the next two bytes as
/// the expected size (little-endian) and the rest as the member. Odd: `GzipStreamDecoder`, fed
/// the rest in pieces of (the next byte + 1).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = bytes(data, size)
    guard input.count >= 3 else { return 0 }
    if input[0] & 1 == 0 {
        let expectedSize = Int(input[1]) | Int(input[2]) << 8
        guard let decompressor = try? GzipFrameDecompressor() else { return 0 }
        if let output = try? decompressor.decompress(Array(input[3...]), expectedSize: expectedSize) {
            precondition(output.count == expectedSize, "a member decoded to \(output.count) bytes, not \(expectedSize)")
        }
    } else {
        guard let decoder = try? GzipStreamDecoder(outputBufferSize: 4096) else { return 0 }
        var decoded = 0
        do {
            try pieces(input[2...], sizes: [input[1]]) { piece in
                try decoder.decode(piece) { decoded += $0.count }
            }
            try decoder.finish()
        } catch {}
    }
    return 0
}

runLibFuzzer(fuzz)
