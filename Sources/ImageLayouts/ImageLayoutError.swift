import ImgfsFormat
import Verity

/// A manifest that imgfs cannot read as a VM image, naming the layer and annotation at fault.
public enum ImageLayoutError: Error, Equatable, CustomStringConvertible {
    case unrecognised(reason: String)
    case missingAnnotation(layer: String, key: String)
    case badAnnotation(layer: String, key: String, value: String)
    case badLayer(layer: String, reason: String)
    case overlap(layer: String, other: String, offset: UInt64)
    case missingLayer(String)
    case unknownMediaType(layer: String, mediaType: String)
    case diskTooLarge(UInt64)
    case tooManyLayers(Int)
    case imgfs(FormatError)

    public var description: String {
        switch self {
        case .unrecognised(let reason): "not a VM image imgfs can read: \(reason)"
        case .missingAnnotation(let layer, let key): "\(layer) has no \(key) annotation"
        case .badAnnotation(let layer, let key, let value): "\(layer): annotation \(key) has an invalid value '\(value)'"
        case .badLayer(let layer, let reason): "\(layer): \(reason)"
        case .overlap(let layer, let other, let offset): "\(layer) overlaps \(other) at disk offset \(offset)"
        case .missingLayer(let what): "the manifest has no \(what)"
        case .unknownMediaType(let layer, let type): "\(layer) has unknown media type \(type)"
        case .diskTooLarge(let size): "disk size \(size) exceeds the limit of \(FormatsLimits.maximumDiskSize) bytes"
        case .tooManyLayers(let count): "the manifest lists \(count) layers, more than the limit of \(FormatsLimits.maximumLayers)"
        case .imgfs(let error): "\(error)"
        }
    }
}
