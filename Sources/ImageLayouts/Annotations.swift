import OCI
import Verity

// Strict annotation parsing shared by the format readers: a value that is present must parse,
// and the error names the layer and key.

func layerName(_ index: Int, _ layer: Descriptor) -> String { "layer \(index) (\(layer.digest))" }

func decimal(_ annotations: [String: String]?, _ key: String, where layer: String) throws(ImageLayoutError) -> UInt64? {
    guard let text = annotations?[key] else { return nil }
    guard let value = UInt64(text), text.allSatisfy(\.isASCIIDigit) else { throw .badAnnotation(layer: layer, key: key, value: text) }
    return value
}

func requiredDecimal(_ annotations: [String: String]?, _ key: String, where layer: String) throws(ImageLayoutError) -> UInt64 {
    guard let value = try decimal(annotations, key, where: layer) else { throw .missingAnnotation(layer: layer, key: key) }
    return value
}

func digestAnnotation(_ annotations: [String: String]?, _ key: String, where layer: String) throws(ImageLayoutError) -> Digest? {
    guard let text = annotations?[key] else { return nil }
    // tart writes the digest as `sha256:<hex>`; accept bare hex too, as some writers omit the prefix.
    let full = text.hasPrefix("sha256:") ? text : "sha256:" + text
    guard let digest = try? Digest(parsing: full) else { throw .badAnnotation(layer: layer, key: key, value: text) }
    return digest
}

extension MediaType {
    /// The media type without parameters (`a/b;part.number=1` → `a/b`), lowercased.
    var base: String {
        String(rawValue.prefix { $0 != ";" }).trimmingCharacters(in: " ").lowercased()
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}

func checkSmall(_ layer: Descriptor, _ name: String, limit: Int64 = FormatsLimits.maximumSmallBlobSize) throws(ImageLayoutError) {
    guard layer.size >= 0, layer.size <= limit else {
        throw .badLayer(layer: name, reason: "\(layer.size) bytes is outside the limit of \(limit) for this layer")
    }
}

/// Puts a small-file layer (nvram, a VM config) in `slot`: at most one per image, of bounded size.
func place(_ layer: Descriptor, _ name: String, what: String, in slot: inout Descriptor?) throws(ImageLayoutError) {
    guard slot == nil else { throw .badLayer(layer: name, reason: "a second \(what) layer") }
    try checkSmall(layer, name)
    slot = layer
}

/// lume legacy and tart store the disk as LZ4 pieces laid end to end in manifest order, each with
/// its uncompressed size and digest in annotations: appends the next one at `offset` and advances it.
func appendSequentialLZ4Piece(_ layer: Descriptor, position: Int, name: String, sizeKey: String, digestKey: String,
                              to segments: inout [Segment], offset: inout UInt64) throws(ImageLayoutError) {
    let size = try requiredDecimal(layer.annotations, sizeKey, where: name)
    let digest = try digestAnnotation(layer.annotations, digestKey, where: name)
    segments.append(Segment(layerIndex: position, blob: layer, codec: .appleLZ4, diskOffset: offset, length: size, uncompressedDigest: digest))
    let (next, overflow) = offset.addingReportingOverflow(size)
    guard !overflow, next <= FormatsLimits.maximumDiskSize else { throw .diskTooLarge(next) }
    offset = next
}
