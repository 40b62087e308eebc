import FuzzSupport
import ImgfsFormat

/// `FrameIndex(decoding:)`: a decoded index encodes back to the same bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = bytes(data, size)
    guard let index = try? FrameIndex(decoding: input) else { return 0 }
    let again = try? FrameIndex(decoding: index.encode())
    precondition(again == index, "a decoded frame index does not survive encoding")
    return 0
}

runLibFuzzer(fuzz)
