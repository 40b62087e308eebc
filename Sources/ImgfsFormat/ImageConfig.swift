import FoundationEssentials
import Verity

/// The manifest's config blob (`application/vnd.imgfs.config.v1+json`): the format version and the
/// disk's geometry. docs/FORMAT.md, "The config blob". It holds nothing that depends on the disk's
/// contents, so an edited disk re-pushes with the same config blob.
public struct ImageConfig: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public var imgfsFormat: Int
    public var disk: Disk
    /// Files of the VM directory other than disk.img that the image carries, for display.
    public var files: [String]?

    public struct Disk: Codable, Sendable, Equatable {
        public var size: UInt64
        public var frameSize: Int
        public var chunkSize: UInt64
        public var layout: FrameIndex.Layout

        public init(size: UInt64, frameSize: Int, chunkSize: UInt64, layout: FrameIndex.Layout) {
            self.size = size
            self.frameSize = frameSize
            self.chunkSize = chunkSize
            self.layout = layout
        }
    }

    public init(disk: Disk, files: [String]? = nil) {
        self.imgfsFormat = Self.currentFormat
        self.disk = disk
        self.files = files
    }

    /// Canonical JSON (sorted keys), so the same image always yields the same config digest.
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain structs of strings and integers cannot fail.
        return (try? Array(encoder.encode(self))) ?? []
    }

    public init(decoding bytes: [UInt8]) throws(FormatError) {
        let decoded: ImageConfig
        do {
            decoded = try JSONDecoder().decode(ImageConfig.self, from: Data(bytes))
        } catch {
            throw .notAnImgfsImage(reason: "config blob is not imgfs config JSON: \(error)")
        }
        guard decoded.imgfsFormat == Self.currentFormat else {
            throw .notAnImgfsImage(reason: "format version \(decoded.imgfsFormat) is not supported (this imgfs reads version \(Self.currentFormat))")
        }
        self = decoded
    }
}
