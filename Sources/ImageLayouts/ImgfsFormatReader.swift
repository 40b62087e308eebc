import ImgfsFormat
import OCI
import Verity

/// Reads imgfs images (docs/FORMAT.md) into the format-neutral `VMImage`: one segment per chunk
/// layer with codec `.imgfsFrames`; readers that want frames use `VMImage.imgfs.index`.
public enum ImgfsFormatReader {
    public static func read(_ manifest: Manifest, load: BlobLoader) throws(ImageLayoutError) -> VMImage {
        let configBytes = try loadBlob(load, manifest.config, limit: FormatLimits.maximumConfigSize, what: "imgfs config")
        let image: ImgfsImage
        let index: FrameIndex
        do {
            image = try ImgfsImage(manifest: manifest, configBytes: configBytes)
            let indexBytes = try loadBlob(load, image.indexDescriptor, limit: FormatLimits.maximumIndexSize, what: "frame index")
            index = try FrameIndex(decoding: indexBytes)
            try image.validate(index)
        } catch let error as ImageLayoutError {
            throw error
        } catch let error as FormatError {
            throw .imgfs(error)
        } catch {
            throw .unrecognised(reason: "\(error)")
        }
        var segments = [Segment]()
        for (position, layer) in manifest.layers.enumerated() where layer.mediaType == .imgfsChunk {
            let name = layerName(position, layer)
            let offset = try requiredDecimal(layer.annotations, ImgfsAnnotation.chunkOffset, where: name)
            let length = try requiredDecimal(layer.annotations, ImgfsAnnotation.chunkLength, where: name)
            segments.append(Segment(layerIndex: position, blob: layer, codec: .imgfsFrames, diskOffset: offset, length: length, uncompressedDigest: nil))
        }
        let layout = try DiskLayout(diskSize: image.geometry.diskSize, segments: segments)
        return VMImage(kind: .imgfs, manifest: manifest, layout: layout, nvram: image.nvram, vmConfig: image.vmConfig,
                       imgfs: .init(image: image, index: index))
    }
}
