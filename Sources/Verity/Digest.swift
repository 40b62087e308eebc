/// A SHA-256 content digest, as OCI writes it: `sha256:` followed by 64 lowercase hex digits.
///
/// Parsed once at the edge (`init(parsing:)`); everywhere inside imgfs a digest is this type,
/// never a bare string, so a malformed digest cannot travel far.
public struct Digest: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 32 raw bytes of the SHA-256 value.
    public let bytes: [UInt8]

    public init(sha256Bytes: some Sequence<UInt8>) {
        let bytes = Array(sha256Bytes)
        precondition(bytes.count == 32, "a SHA-256 digest has 32 bytes")
        self.bytes = bytes
    }

    /// Parses `sha256:<64 hex>`; any other algorithm or length is an error.
    public init(parsing text: String) throws(DigestError) {
        guard text.hasPrefix("sha256:") else {
            if let colon = text.firstIndex(of: ":") {
                throw .unsupportedAlgorithm(String(text[..<colon]), text: text)
            }
            throw .malformed(text)
        }
        let hex = text.utf8.dropFirst(7)
        guard hex.count == 64 else { throw .malformed(text) }
        var bytes = [UInt8]()
        bytes.reserveCapacity(32)
        var high: UInt8? = nil
        for c in hex {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            default: throw .malformed(text)
            }
            if let h = high { bytes.append(h << 4 | v); high = nil } else { high = v }
        }
        self.bytes = bytes
    }

    /// The 64 lowercase hex digits, without the algorithm prefix.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `sha256:<hex>`, the form OCI uses in manifests and URLs.
    public var description: String { "sha256:" + hex }

    /// A short form for logs and progress lines: the first 12 hex digits.
    public var short: String { String(hex.prefix(12)) }

    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }
}

extension Digest: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        self = try Digest(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Why a digest string was rejected.
public enum DigestError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case unsupportedAlgorithm(String, text: String)

    public var description: String {
        switch self {
        case .malformed(let text): "malformed digest '\(text)': expected sha256: and 64 lowercase hex digits"
        case .unsupportedAlgorithm(let algorithm, let text): "unsupported digest algorithm '\(algorithm)' in '\(text)': imgfs reads sha256 only"
        }
    }
}
