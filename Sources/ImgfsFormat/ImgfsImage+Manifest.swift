import OCI
import Verity

/// One chunk layer as the push pipeline produced it, before it becomes a manifest descriptor.
public struct ChunkLayer: Sendable, Hashable {
    public var number: Int
    public var digest: Digest
    public var compressedSize: Int64
    /// Disk bytes the chunk covers: `diskOffset ..< diskOffset + diskLength`.
    public var diskOffset: UInt64
    public var diskLength: UInt64
    /// What the blob gunzips to (its stored frames, in order).
    public var uncompressedSize: UInt64
    public var uncompressedDigest: Digest

    public init(number: Int, digest: Digest, compressedSize: Int64, diskOffset: UInt64, diskLength: UInt64, uncompressedSize: UInt64, uncompressedDigest: Digest) {
        self.number = number
        self.digest = digest
        self.compressedSize = compressedSize
        self.diskOffset = diskOffset
        self.diskLength = diskLength
        self.uncompressedSize = uncompressedSize
        self.uncompressedDigest = uncompressedDigest
    }

    public var descriptor: Descriptor {
        Descriptor(mediaType: .imgfsChunk, digest: digest, size: compressedSize, annotations: [
            ImgfsAnnotation.chunkNumber: String(number),
            ImgfsAnnotation.chunkOffset: String(diskOffset),
            ImgfsAnnotation.chunkLength: String(diskLength),
            ImgfsAnnotation.chunkUncompressedSize: String(uncompressedSize),
            ImgfsAnnotation.chunkUncompressedDigest: uncompressedDigest.description,
            AnnotationKey.title: "disk.img.\(String(number).leftPadded(to: 4)).gz",
        ])
    }
}

extension ImgfsImage {
    /// The manifest of an imgfs image, layers in the order docs/FORMAT.md gives:
    /// index, chunks by number, then nvram, config.json and boot profile when present.
    public static func makeManifest(config: ImageConfig, fsverityDigest: Digest, configDescriptor: Descriptor, index: Descriptor, chunks: [ChunkLayer], nvram: Descriptor?, vmConfig: Descriptor?, bootProfile: Descriptor?) -> Manifest {
        var layers = [index]
        layers += chunks.sorted { $0.number < $1.number }.map(\.descriptor)
        layers += [nvram, vmConfig, bootProfile].compactMap { $0 }
        return Manifest(config: configDescriptor, layers: layers, annotations: [
            ImgfsAnnotation.formatVersion: String(ImageConfig.currentFormat),
            ImgfsAnnotation.diskSize: String(config.disk.size),
            ImgfsAnnotation.frameSize: String(config.disk.frameSize),
            ImgfsAnnotation.layout: config.disk.layout.rawValue,
            ImgfsAnnotation.fsverityDigest: fsverityDigest.description,
        ])
    }

    /// Descriptor annotations for the small layers, so that `oras pull` names the files right.
    public static func titled(_ mediaType: MediaType, digest: Digest, size: Int64, title: String) -> Descriptor {
        Descriptor(mediaType: mediaType, digest: digest, size: size, annotations: [AnnotationKey.title: title])
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
