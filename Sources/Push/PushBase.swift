import Fetch
import ImgfsFormat
import OCI
import Verity

/// The image a written disk was derived from (`imgfs push` of a `--writable` mount): a chunk
/// whose every frame still has the base's digest is not uploaded again; the new manifest lists the
/// base's chunk layer and the new index points its frames at the base's members. Chunking is
/// deterministic (docs/FORMAT.md, "Deduplication"), so the result is the same as a full push.
public struct PushBase: Sendable {
    public var repository: String
    public var image: ImgfsImage
    public var index: FrameIndex
    /// The base's chunk layers by chunk number.
    let chunks: [Int: ChunkLayer]

    /// Fetches and validates the base image's manifest, config and index (a few small blobs; no
    /// chunk layer is read).
    public static func fetch(client: RegistryClient, repository: String, manifestDigest: Digest) throws(PushError) -> PushBase {
        do {
            let fetched = try client.manifest(repository, reference: manifestDigest.description)
            guard fetched.digest == manifestDigest else {
                throw PushError.source("base manifest \(manifestDigest) came back as \(fetched.digest)")
            }
            let manifest: Manifest
            do { manifest = try ManifestEncoding.decode(Manifest.self, from: fetched.bytes) } catch {
                throw PushError.source("base manifest \(manifestDigest): \(error)")
            }
            let configBytes = try client.blob(repository, digest: manifest.config.digest, maxSize: FormatLimits.maximumConfigSize)
            let image = try ImgfsImage(manifest: manifest, configBytes: configBytes)
            let indexBytes = try client.blob(repository, digest: image.indexDescriptor.digest, maxSize: FormatLimits.maximumIndexSize)
            let index = try FrameIndex(decoding: indexBytes)
            try image.validate(index)
            return try PushBase(repository: repository, image: image, index: index)
        } catch let error as PushError {
            throw error
        } catch let error as FetchError {
            throw .registry(error)
        } catch let error as FormatError {
            throw .format(error)
        } catch {
            throw .source("base image \(manifestDigest): \(error)")
        }
    }

    public init(repository: String, image: ImgfsImage, index: FrameIndex) throws(PushError) {
        self.repository = repository
        self.image = image
        self.index = index
        var chunks: [Int: ChunkLayer] = [:]
        for descriptor in image.chunkDescriptors {
            let a = descriptor.annotations ?? [:]
            guard let number = a[ImgfsAnnotation.chunkNumber].flatMap(Int.init),
                  let offset = a[ImgfsAnnotation.chunkOffset].flatMap(UInt64.init),
                  let length = a[ImgfsAnnotation.chunkLength].flatMap(UInt64.init),
                  let size = a[ImgfsAnnotation.chunkUncompressedSize].flatMap(UInt64.init),
                  let digestText = a[ImgfsAnnotation.chunkUncompressedDigest],
                  let digest = try? Digest(parsing: digestText) else {
                throw .source("base chunk layer \(descriptor.digest) lacks the chunk annotations docs/FORMAT.md requires")
            }
            chunks[number] = ChunkLayer(number: number, digest: descriptor.digest, compressedSize: descriptor.size,
                                        diskOffset: offset, diskLength: length, uncompressedSize: size, uncompressedDigest: digest)
        }
        self.chunks = chunks
    }

    /// Push options that cut the disk exactly as the base was cut.
    public func options(from options: PushOptions) -> PushOptions {
        var options = options
        options.frameSize = image.config.disk.frameSize
        options.chunkSize = image.config.disk.chunkSize
        options.frameSizeIsAutomatic = false
        options.chunkSizeIsAutomatic = false
        options.singleLayer = image.config.disk.layout == .singleLayer
        return options
    }

    /// The base's layer for `chunk` if every frame in `frames` has the base's digest and hole flag.
    func reusableLayer(chunk: Int, frames: Range<Int>, digest: (Int) -> Digest, isHole: (Int) -> Bool) -> ChunkLayer? {
        guard let layer = chunks[chunk], frames.upperBound <= index.frames.count else { return nil }
        for frame in frames where index.frames[frame].digest != digest(frame) || index.frames[frame].isHole != isHole(frame) {
            return nil
        }
        return layer
    }
}
