import CFuzzer
#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer's input as an array.
public func bytes(_ data: UnsafePointer<UInt8>, _ size: Int) -> [UInt8] {
    Array(UnsafeBufferPointer(start: data, count: size))
}

/// Splits one fuzz input into up to `count` parts at NUL bytes, so one input can carry a
/// manifest and the blobs it names (JSON never contains a raw NUL). Missing parts are empty.
public func parts(_ input: [UInt8], _ count: Int) -> [[UInt8]] {
    var result = input.split(separator: 0, maxSplits: count - 1, omittingEmptySubsequences: false).map(Array.init)
    while result.count < count { result.append([]) }
    return result
}

/// Feeds `input` to a streaming decoder in pieces whose sizes cycle through `sizes` (taken from
/// the input's first bytes), so headers and magics get split across calls.
public func pieces(_ input: ArraySlice<UInt8>, sizes: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
    try input.withUnsafeBytes { all in
        var position = 0
        var turn = 0
        while position < all.count {
            let size = sizes.isEmpty ? all.count : Int(sizes[turn % sizes.count]) + 1
            turn += 1
            let end = min(all.count, position + size)
            try body(UnsafeRawBufferPointer(rebasing: all[position..<end]))
            position = end
        }
    }
}

/// Runs libFuzzer with the process's arguments on `testOneInput`, then exits with its status.
public func runLibFuzzer(_ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}
