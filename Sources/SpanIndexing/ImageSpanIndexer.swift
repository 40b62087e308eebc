import Fetch
import ImageLayouts
import OCI
import SpanIndex
import Synchronization
import Verity

/// Builds or checks the span index of a lume or tart image: each whole-layer gzip or Apple
/// LZ4 disk layer is streamed from the registry once, decoded, checked against its layer digest
/// (and the uncompressed digest and size the manifest gives), and its spans recorded.
public struct ImageSpanIndexer: Sendable {
    /// One layer blob to index (a blob a layout uses for several segments is read once).
    public struct Layer: Sendable {
        public var blob: Descriptor
        public var codec: SpanCodec
        public var name: String
        public var uncompressedSize: UInt64?
        public var uncompressedDigest: Digest?
        /// A containerDisk layer: the tar member holding the disk, whose data the frames cover.
        public var tarMember: String? = nil
    }

    public let client: RegistryClient
    public let repository: String
    /// Compressed bytes read so far, for a progress line.
    public let progress = Progress()

    public final class Progress: Sendable {
        public let bytes = Atomic<Int64>(0)
        public let layers = Atomic<Int>(0)
    }

    public init(client: RegistryClient, repository: String) {
        self.client = client
        self.repository = repository
    }

    /// The layers of `layout` a span index covers: gzip and Apple LZ4 whole layers.
    public static func layers(of layout: DiskLayout) throws(SpanIndexingError) -> [Layer] {
        var order: [Digest] = []
        var grouped: [Digest: [Segment]] = [:]
        for segment in layout.segments {
            if grouped[segment.blob.digest] == nil { order.append(segment.blob.digest) }
            grouped[segment.blob.digest, default: []].append(segment)
        }
        var layers: [Layer] = []
        for digest in order {
            let segments = grouped[digest]!
            let first = segments[0]
            let codec: SpanCodec
            switch first.codec {
            case .gzip: codec = .gzip
            case .appleLZ4: codec = .appleLZ4
            case .gzipTar:
                // A containerDisk: the tar stream is indexed whole; its frames cover the disk file.
                layers.append(Layer(blob: first.blob, codec: .gzip, name: first.name, uncompressedSize: nil, uncompressedDigest: nil,
                                    tarMember: first.tarMember))
                continue
            case .none, .imgfsFrames, .tar: continue
            }
            let single = segments.count == 1
            layers.append(Layer(blob: first.blob, codec: codec, name: first.name,
                                uncompressedSize: single ? first.length : nil,
                                uncompressedDigest: single ? first.uncompressedDigest : nil))
        }
        guard !layers.isEmpty else {
            throw .noSeekableLayers("the image has no whole gzip or Apple LZ4 disk layers to index (imgfs images are seekable already)")
        }
        return layers
    }

    /// Reads `layer` once and returns its spans; every check of `LayerSpanBuilder.finish` ran.
    public func build(_ layer: Layer, spanSize: Int) throws(SpanIndexingError) -> LayerSpans {
        let builder: LayerSpanBuilder
        do {
            builder = try LayerSpanBuilder(layer: layer.blob.digest, compressedSize: UInt64(max(layer.blob.size, 0)), codec: layer.codec,
                                           spanSize: spanSize, uncompressedSize: layer.uncompressedSize, uncompressedDigest: layer.uncompressedDigest,
                                           hashesFrames: layer.tarMember == nil)
        } catch {
            throw .index(error)
        }
        var failure: SpanIndexError?
        let progress = self.progress
        let disk = layer.tarMember.map { TarDiskFrames(member: $0, frameSize: spanSize) }
        do throws(FetchError) {
            try client.blob(repository, digest: layer.blob.digest, range: nil) { chunk in
                do throws(SpanIndexError) { try builder.feed(chunk, output: disk.map { disk in { try disk.feed($0) } }) } catch {
                    failure = error
                    throw error
                }
                progress.bytes.add(Int64(chunk.count), ordering: .relaxed)
            }
        } catch {
            if let failure { throw .index(failure) }
            throw .registry(error)
        }
        do {
            var spans = try builder.finish()
            if let disk {
                // Verified now (the layer digest matched): the disk file's frames replace the stream's.
                guard let member = disk.member, disk.isContiguous else {
                    throw SpanIndexError.indexDisagrees(layer: layer.blob.digest, span: nil,
                                                        reason: "the tar member \(layer.tarMember ?? "") is missing or sparse; a span index covers contiguous disk files only")
                }
                spans.frameOrigin = member.dataOffset
                spans.frameLength = member.size
                spans.frameDigests = disk.digests.finish()
            }
            progress.layers.add(1, ordering: .relaxed)
            return spans
        } catch let error as SpanIndexError {
            throw .index(error)
        } catch {
            throw .index(.indexDisagrees(layer: layer.blob.digest, span: nil, reason: "\(error)"))
        }
    }

    /// The whole index of `layers`, in their order.
    public func build(_ layers: [Layer], spanSize: Int) throws(SpanIndexingError) -> SpanIndex {
        var entries: [LayerSpans] = []
        for layer in layers { entries.append(try build(layer, spanSize: spanSize)) }
        return SpanIndex(layers: entries)
    }

    /// `imgfs index --verify`: re-reads every layer and requires `index` to agree with it, checkpoint
    /// by checkpoint and span digest by span digest; the first disagreement names layer and span.
    public func verify(_ index: SpanIndex, layers: [Layer]) throws(SpanIndexingError) {
        for layer in layers {
            guard let entry = index.layer(layer.blob.digest) else { throw .index(.layerNotIndexed(layer: layer.blob.digest)) }
            let rebuilt = try build(layer, spanSize: Int(entry.spanSize))
            if let difference = entry.firstDifference(from: rebuilt) { throw .index(difference) }
        }
        let covered = Set(layers.map(\.blob.digest))
        if let extra = index.layers.first(where: { !covered.contains($0.layerDigest) }) {
            throw .index(.indexDisagrees(layer: extra.layerDigest, span: nil, reason: "the image has no such disk layer"))
        }
    }
}

/// The frame digests of a containerDisk's disk file, from the decoded tar stream as it passes:
/// the disk's data is hashed in frames aligned to its own first byte, which is where a mount's
/// frames are (`SpanIndexedLayout`). Unverified until the layer's digest has matched.
final class TarDiskFrames {
    let wanted: String
    let reader = TarStreamReader()
    let digests: FrameDigester
    private(set) var member: TarMember?
    private(set) var isContiguous = true
    private var next: UInt64 = 0
    private var current: Bool = false

    init(member: String, frameSize: Int) {
        wanted = member
        digests = FrameDigester(frameSize: frameSize)
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws {
        try reader.feed(bytes) { event in
            switch event {
            case .member(let found):
                current = member == nil && (found.path == wanted || ContainerDiskFormat.diskPath(found.path) == wanted)
                if current {
                    member = found
                    isContiguous = found.sparseMap == nil
                }
            case .data(let offset, let data):
                guard current else { return }
                if offset != next { isContiguous = false }
                digests.update(data)
                next = offset + UInt64(data.count)
            case .memberEnd:
                current = false
            }
        }
    }
}
