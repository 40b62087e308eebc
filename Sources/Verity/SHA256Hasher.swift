import COpenSSL

/// Streaming SHA-256 over OpenSSL's EVP interface.
///
/// Not thread-safe: one hasher per stream. `finalize()` ends the stream; reuse needs `reset()`.
public final class SHA256Hasher {
    private let context: OpaquePointer

    public init() {
        // EVP_MD_CTX_new fails only when malloc does; there is nothing sensible to continue with.
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        self.context = context
        reset()
    }

    deinit { EVP_MD_CTX_free(context) }

    public func reset() {
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    public func update(_ buffer: UnsafeRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        EVP_DigestUpdate(context, base, buffer.count)
    }

    public func update(_ bytes: some ContiguousBytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Feeds `count` zero bytes without the caller allocating them (holes of sparse files).
    public func updateZeros(count: Int) {
        var remaining = count
        Self.zeroPage.withUnsafeBytes { zeros in
            while remaining > 0 {
                let n = min(remaining, zeros.count)
                update(UnsafeRawBufferPointer(rebasing: zeros[0..<n]))
                remaining -= n
            }
        }
    }

    public func finalize() -> Digest {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        return Digest(sha256Bytes: out)
    }

    /// The digest of one buffer.
    public static func digest(_ buffer: UnsafeRawBufferPointer) -> Digest {
        let hasher = SHA256Hasher()
        hasher.update(buffer)
        return hasher.finalize()
    }

    public static func digest(_ bytes: some ContiguousBytes) -> Digest {
        bytes.withUnsafeBytes { digest($0) }
    }

    private static let zeroPage = [UInt8](repeating: 0, count: 64 * 1024)
}

/// `ContiguousBytes` without Foundation: arrays and slices of bytes.
public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}
extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
extension ContiguousArray: ContiguousBytes where Element == UInt8 {}
