import OCI

/// The media types of an imgfs image (docs/FORMAT.md, "Media types").
extension MediaType {
    /// The manifest's config blob: format version and disk geometry (`ImageConfig`).
    public static let imgfsConfig: MediaType = "application/vnd.imgfs.config.v1+json"
    /// The binary frame index (`FrameIndex`).
    public static let imgfsIndex: MediaType = "application/vnd.imgfs.disk.index.v1"
    /// A chunk layer: concatenated gzip members, one per stored frame.
    public static let imgfsChunk: MediaType = "application/vnd.imgfs.disk.chunk.v1+gzip"
    /// The VM's nvram.bin, stored as is.
    public static let imgfsNVRAM: MediaType = "application/vnd.imgfs.nvram.v1"
    /// The VM's config.json, stored as is.
    public static let imgfsVMConfig: MediaType = "application/vnd.imgfs.vm-config.v1+json"
    /// A boot profile: frame numbers in first-read order.
    public static let imgfsBootProfile: MediaType = "application/vnd.imgfs.boot-profile.v1"
}

/// Annotation keys of an imgfs image (docs/FORMAT.md, "Annotations").
public enum ImgfsAnnotation {
    public static let formatVersion = "dev.imgfs.format.version"
    public static let diskSize = "dev.imgfs.disk.size"
    public static let frameSize = "dev.imgfs.disk.frame-size"
    public static let fsverityDigest = "dev.imgfs.disk.fsverity-digest"
    public static let layout = "dev.imgfs.disk.layout"

    public static let chunkNumber = "dev.imgfs.chunk.number"
    public static let chunkOffset = "dev.imgfs.chunk.offset"
    public static let chunkLength = "dev.imgfs.chunk.length"
    public static let chunkUncompressedSize = "dev.imgfs.chunk.uncompressed-size"
    public static let chunkUncompressedDigest = "dev.imgfs.chunk.uncompressed-digest"
}
