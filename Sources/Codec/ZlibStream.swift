import CZlib

/// A `z_stream` at a fixed address, as zlib requires (it keeps a back-pointer to it), with
/// the helpers both streaming gzip codecs share.
final class ZlibStream {
    let pointer: UnsafeMutablePointer<z_stream>

    init() {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: z_stream())
    }

    deinit {
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }

    var message: String {
        guard let text = pointer.pointee.msg else { return "no message" }
        return String(cString: text)
    }

    /// zlib's `next_in` is non-const for historical reasons; it never writes through it.
    func setInput(_ input: UnsafeRawBufferPointer) {
        pointer.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        pointer.pointee.avail_in = uInt(input.count)
    }
}

/// zlib counts in 32-bit `uInt`; larger inputs are fed in slices of this size.
let zlibMaxSlice = 1 << 30

/// Calls the consumer, turning whatever it throws into `CodecError.consumer`.
func deliver(_ bytes: UnsafeRawBufferPointer, to output: (UnsafeRawBufferPointer) throws -> Void) throws(CodecError) {
    do { try output(bytes) } catch { throw .consumer(error) }
}
