import FuzzSupport
import ImageLayouts

/// `TarStreamReader`, the tar parser under KubeVirt containerDisks. The first byte is the piece
/// size − 1; the rest, an uncompressed tar stream, is fed in pieces of that size, then
/// `finish()`. Whatever the headers say, data must come in order and inside its member's size.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let reader = TarStreamReader()
    var member: TarMember?
    var next: UInt64 = 0
    do {
        try pieces(input.dropFirst(), sizes: [first]) { piece in
            try reader.feed(piece) { event in
                switch event {
                case .member(let m):
                    precondition(member == nil, "a member began inside another")
                    member = m
                    next = 0
                case .data(let offset, let bytes):
                    guard let m = member else { preconditionFailure("data outside a member") }
                    precondition(offset >= next && offset + UInt64(bytes.count) <= m.size, "data at \(offset)+\(bytes.count) in a \(m.size)-byte member")
                    next = offset + UInt64(bytes.count)
                case .memberEnd:
                    precondition(member != nil, "an end without a member")
                    member = nil
                }
            }
        }
        try reader.finish()
    } catch {}
    return 0
}

runLibFuzzer(fuzz)
