import Verity

/// The uncompressed bytes of one frame whose SHA-256 matched the frame index.
///
/// The only way to make one is `VerifiedFrame.verify`, so code that takes a `VerifiedFrame`
/// (the cache writer, the FUSE reply path) cannot be handed unverified bytes.
public struct VerifiedFrame: Sendable {
    /// Position of the frame in the disk.
    public let index: Int
    /// SHA-256 of `bytes`, equal to the index entry's digest.
    public let digest: Digest
    /// Exactly the frame's uncompressed length.
    public let bytes: [UInt8]

    private init(index: Int, digest: Digest, bytes: [UInt8]) {
        self.index = index
        self.digest = digest
        self.bytes = bytes
    }

    /// Hashes `bytes` and returns a `VerifiedFrame` only if length and digest both match.
    public static func verify(frame index: Int, bytes: [UInt8], expectedLength: Int, expectedDigest: Digest) throws(FrameVerificationError) -> VerifiedFrame {
        guard bytes.count == expectedLength else {
            throw FrameVerificationError(frame: index, expected: expectedDigest, actual: nil, expectedLength: expectedLength, actualLength: bytes.count)
        }
        let actual = SHA256Hasher.digest(bytes)
        guard actual == expectedDigest else {
            throw FrameVerificationError(frame: index, expected: expectedDigest, actual: actual, expectedLength: expectedLength, actualLength: bytes.count)
        }
        return VerifiedFrame(index: index, digest: actual, bytes: bytes)
    }
}

/// A frame's bytes did not match its index entry.
public struct FrameVerificationError: Error, Equatable, CustomStringConvertible {
    public let frame: Int
    public let expected: Digest
    /// nil when the length was already wrong and the bytes were not hashed.
    public let actual: Digest?
    public let expectedLength: Int
    public let actualLength: Int

    public var description: String {
        if let actual {
            return "frame \(frame): digest mismatch: expected \(expected), got \(actual)"
        }
        return "frame \(frame): decompressed to \(actualLength) bytes, expected \(expectedLength) (digest \(expected))"
    }
}
