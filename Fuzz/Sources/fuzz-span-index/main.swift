import FuzzSupport
import SpanIndex

/// `SpanIndex(decoding:)`: a decoded index survives encoding; then each span whose ranges are
/// small is decoded from zeros of its compressed range, which runs the window inflate and the
/// gzip or LZ4 span decoder on hostile checkpoints: a typed error, never a trap or a wrong length.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = bytes(data, size)
    guard let index = try? SpanIndex(decoding: input) else { return 0 }
    let again = try? SpanIndex(decoding: index.encoded())
    precondition(again == index, "a decoded span index does not survive encoding")
    for layer in index.layers {
        for span in 0..<min(layer.spanCount, 4) {
            let compressed = layer.compressedRange(ofSpan: span)
            guard compressed.count <= 1 << 16, layer.uncompressedRange(ofSpan: span).count <= 1 << 20 else { continue }
            if let verified = try? layer.decodeSpan(span, compressed: [UInt8](repeating: 0, count: Int(compressed.count))) {
                precondition(verified.bytes.count == layer.uncompressedRange(ofSpan: span).count, "a verified span of the wrong length")
            }
        }
    }
    return 0
}

runLibFuzzer(fuzz)
