import ImageLayouts
import FuzzSupport
import ImgfsFormat
import OCI

struct TooLarge: Error {}

/// The format readers (imgfs, lume OCI, lume legacy, tart, containerDisk) behind
/// `VMImageReader.read`, and `ForeignArtifact`'s classification. The input is `manifest NUL
/// config NUL other blob`: the loader serves the config blob for the manifest's config and the
/// other blob (a frame index, a containerDisk's tar+gzip layer: it may hold NULs) for anything
/// else, and the range loader ranges of the other blob.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let split = parts(bytes(data, size), 3)
    guard let manifest = try? ManifestEncoding.decode(Manifest.self, from: split[0]) else { return 0 }
    _ = ForeignArtifact.classify(manifest)
    _ = ForeignArtifact.describe(manifest)
    let load: BlobLoader = { descriptor, limit in
        let blob = descriptor == manifest.config ? split[1] : split[2]
        guard blob.count <= limit else { throw TooLarge() }
        return blob
    }
    let loadRange: BlobRangeLoader = { _, range in
        guard range.lowerBound >= 0, range.upperBound <= Int64(split[2].count) else { throw TooLarge() }
        return Array(split[2][Int(range.lowerBound)..<Int(range.upperBound)])
    }
    guard let image = try? VMImageReader.read(manifest, load: load, loadRange: loadRange) else { return 0 }
    let layout = image.layout
    for offset in [0, layout.diskSize / 2, layout.diskSize &- 1, layout.diskSize] {
        _ = layout.segment(containing: offset)
    }
    _ = layout.segments(overlapping: 0..<layout.diskSize).count
    _ = (layout.storedBytes, image.metadataAnnotations.count, image.fsverityDigest)
    return 0
}

runLibFuzzer(fuzz)
