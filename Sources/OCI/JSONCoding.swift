import FoundationEssentials

/// The one JSON encoding imgfs writes for manifests: sorted keys and no escaped slashes,
/// so the same manifest always has the same bytes and so the same digest.
public enum ManifestEncoding {
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Manifests are plain structs of strings and integers; encoding them cannot fail.
        return (try? Array(encoder.encode(value))) ?? []
    }

    /// Decodes manifest-shaped JSON, with the decoding error's path in the message.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws(ManifestDecodingError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch let DecodingError.dataCorrupted(context) {
            throw ManifestDecodingError(message: "invalid JSON at \(context.codingPath.pathString): \(context.debugDescription)")
        } catch let DecodingError.keyNotFound(key, context) {
            throw ManifestDecodingError(message: "missing field \((context.codingPath + [key]).pathString)")
        } catch let DecodingError.typeMismatch(_, context) {
            throw ManifestDecodingError(message: "wrong type at \(context.codingPath.pathString): \(context.debugDescription)")
        } catch let DecodingError.valueNotFound(_, context) {
            throw ManifestDecodingError(message: "null value at \(context.codingPath.pathString)")
        } catch {
            throw ManifestDecodingError(message: "\(error)")
        }
    }
}

public struct ManifestDecodingError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

extension [any CodingKey] {
    var pathString: String {
        isEmpty ? "top level" : map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingPrefix(".").description
    }
}
