import Codec
import FuzzSupport

/// `AppleLZ4Decoder` fed in pieces: the first input byte chooses the piece size.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    // Blocks up to 1 MiB: the default 64 MiB lets most inputs allocate (and ASan fill) 64 MiB
    // windows, a hundred times fewer runs a second, without reaching other code.
    let decoder = AppleLZ4Decoder(maximumBlockSize: 1 << 20)
    var decoded = 0
    do {
        try pieces(input.dropFirst(), sizes: [first]) { piece in
            try decoder.decode(piece) { decoded += $0.count }
        }
        try decoder.finish()
    } catch {}
    return 0
}

runLibFuzzer(fuzz)
