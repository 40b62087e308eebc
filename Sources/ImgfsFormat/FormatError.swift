import Verity

/// A malformed or unsupported imgfs image: what is wrong, and where.
public enum FormatError: Error, Equatable, CustomStringConvertible {
    case invalidFrameSize(Int)
    case diskTooLarge(UInt64)
    case indexTooLarge(Int64)
    case indexTruncated(expected: Int, actual: Int)
    case badIndexMagic
    case unsupportedIndexVersion(UInt32)
    case indexFrameCountMismatch(declared: UInt64, expected: Int)
    case frameOutOfBounds(frame: Int, layer: Int, offset: UInt64, length: UInt32, layerSize: Int64)
    case frameLayerOutOfRange(frame: Int, layer: UInt32, layerCount: Int)
    case frameTooLarge(frame: Int, compressedLength: UInt32, limit: Int)
    case frameEmpty(frame: Int)
    /// A config field whose value no image can have; `reason` says what it must be.
    case badConfig(field: String, value: String, reason: String)
    case layerMissingFromManifest(Digest)
    case missingLayer(String)
    case badAnnotation(key: String, value: String)
    case unknownMediaType(String)
    case notAnImgfsImage(reason: String)
    /// A writer's geometry whose index or manifest a reader would reject (`ImagePlan`).
    case exceedsReaderLimit(String)

    public var description: String {
        switch self {
        case .invalidFrameSize(let size): "invalid frame size \(size): must be a power of two between 64 KiB and 64 MiB"
        case .diskTooLarge(let size): "disk size \(size) exceeds the limit of \(FormatLimits.maximumDiskSize) bytes"
        case .indexTooLarge(let size): "frame index of \(size) bytes exceeds the limit of \(FormatLimits.maximumIndexSize)"
        case .indexTruncated(let expected, let actual): "frame index truncated: \(actual) bytes, expected \(expected)"
        case .badIndexMagic: "frame index does not start with the IMGFSIDX magic"
        case .unsupportedIndexVersion(let v): "frame index version \(v) is not supported (this imgfs reads version 1)"
        case .indexFrameCountMismatch(let declared, let expected): "frame index declares \(declared) frames, disk size and frame size need \(expected)"
        case .frameOutOfBounds(let frame, let layer, let offset, let length, let layerSize):
            "frame \(frame): \(length) bytes at offset \(offset) lie outside layer \(layer) of \(layerSize) bytes"
        case .frameLayerOutOfRange(let frame, let layer, let count): "frame \(frame) names layer \(layer), but the index lists \(count) layers"
        case .frameTooLarge(let frame, let length, let limit): "frame \(frame): compressed length \(length) exceeds the limit \(limit)"
        case .frameEmpty(let frame): "frame \(frame) is stored with a compressed length of 0 (a stored frame has at least one byte)"
        case .badConfig(let field, let value, let reason): "config field \(field) has an invalid value \(value): \(reason)"
        case .layerMissingFromManifest(let digest): "the frame index names layer \(digest), which the manifest does not list"
        case .missingLayer(let name): "the manifest has no \(name) layer"
        case .badAnnotation(let key, let value): "annotation \(key) has an invalid value '\(value)'"
        case .unknownMediaType(let type): "unknown media type \(type)"
        case .notAnImgfsImage(let reason): "not an imgfs image: \(reason)"
        case .exceedsReaderLimit(let message): "the image would break a limit every reader enforces: \(message)"
        }
    }
}
