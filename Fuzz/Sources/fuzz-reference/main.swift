import FuzzSupport
import OCI

/// `Reference(parsing:)`: any text either parses or throws `ReferenceError`; what parses prints
/// as text that parses back to the same reference.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let reference = try? Reference(parsing: text) else { return 0 }
    _ = (reference.apiHost, reference.isLoopback, reference.manifestReference, Reference.hostPart(of: reference.registry))
    let printed = reference.description
    let again = try? Reference(parsing: printed)
    precondition(again == reference, "\(text) parses to \(reference), printed as \(printed), which parses to \(String(describing: again))")
    return 0
}

runLibFuzzer(fuzz)
