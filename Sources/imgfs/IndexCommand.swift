import ArgumentParser
import Fetch
import FoundationEssentials
import OCI
import Pull
import SpanIndex
import SpanIndexing
import Threading
import Verity

struct IndexCommand: OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Make a lume or tart image seekable: push a span index beside it.",
        discussion: """
        imgfs index REF reads every whole gzip (lume OCI) or Apple LZ4 (tart, lume legacy) disk \
        layer of the image once, checks it against its layer digest (and the uncompressed size \
        and digest the manifest gives), and pushes a span index to the same repository: an OCI \
        1.1 artifact whose subject is the image's manifest, holding for each layer a checkpoint \
        every --span-size bytes (at the next deflate or LZ4 block boundary) and the SHA-256 of \
        every span. Readers find it through the registry's referrers API, or through the tag \
        sha256-<hex of the manifest digest> on registries without one, which this command \
        keeps current. See docs/FORMAT.md, "Span indexes".

        imgfs index --verify REF re-reads the layers and checks the image's span index (or the \
        one --index pins) against them: every checkpoint and span digest must match. A span \
        index is trusted as far as the tag that led to it; --verify is how to check one.

        \(PlatformOptionGroup.discussion)

        Prints the span index artifact's manifest digest on stdout.

        Examples:
          imgfs index localhost:5000/vm/ubuntu:24.04
          imgfs index --verify --json ghcr.io/org/vm:latest
        """
    )

    @OptionGroup var image: ImageArgument

    @Flag(help: "Check the image's existing span index against its layers instead of pushing one.")
    var verify = false

    @Option(help: ArgumentHelp("With --verify: the span index artifact to check (its manifest digest), not the newest one found.", valueName: "digest"))
    var index: String?

    @Option(help: ArgumentHelp("Least uncompressed bytes between checkpoints, 64K to 64M (suffixes K, M; default 2M).", valueName: "size"))
    var spanSize: String?

    @OptionGroup var output: OutputOptionGroup
    @OptionGroup var platform: PlatformOptionGroup
    @OptionGroup var registry: RegistryOptionGroup

    static let defaultSpanSize = 2 << 20

    struct LayerSummary: Encodable {
        var digest: String
        var codec: String
        var compressedSize: UInt64
        var uncompressedSize: UInt64
        var spanSize: UInt32
        var spans: Int
    }

    struct Summary: Encodable {
        var reference: String
        var manifestDigest: String
        var mode: String
        var indexDigest: String
        var indexBlobDigest: String
        var indexSize: Int64
        var compressedSize: UInt64
        /// indexSize / compressedSize, in percent.
        var sizePercent: Double
        var foundThrough: String?
        var seconds: Double
        var layers: [LayerSummary]
    }

    func execute() throws {
        let logger = registry.makeLogger()
        let reference = try parseReference(image.reference)
        var spanSize = Self.defaultSpanSize
        if let text = self.spanSize {
            let parsed = try parseSize(text, option: "--span-size")
            guard SpanIndex.spanSizes.contains(Int(clamping: parsed)) else {
                throw ValidationError("--span-size \(text) is outside 64K...64M")
            }
            spanSize = Int(parsed)
        }
        var pinned: Digest?
        if let index {
            guard verify else { throw ValidationError("--index pins the span index to check: use it with --verify") }
            do { pinned = try Digest(parsing: index) } catch { throw ValidationError("--index \(index): \(error)") }
        }
        let client = try registry.client(for: reference, logger: logger)
        let repository = reference.repository
        let (opened, manifestDigest) = try ImagePuller.open(client: client, repository: repository, reference: reference.manifestReference, platform: platform.wanted)
        let layers = try ImageSpanIndexer.layers(of: opened.layout)
        let indexer = ImageSpanIndexer(client: client, repository: repository)
        let total = layers.reduce(Int64(0)) { $0 + max($1.blob.size, 0) }
        let progress = indexer.progress
        let layerCount = layers.count
        let start = monotonicNow()

        func summary(_ spanIndex: SpanIndex, artifact: Digest, blob: Descriptor, through: ReferrersSource?, mode: String) -> Summary {
            let compressed = spanIndex.layers.reduce(UInt64(0)) { $0 + $1.compressedSize }
            return Summary(
                reference: reference.description, manifestDigest: manifestDigest.description, mode: mode,
                indexDigest: artifact.description, indexBlobDigest: blob.digest.description, indexSize: blob.size,
                compressedSize: compressed, sizePercent: compressed > 0 ? Double(blob.size) * 100 / Double(compressed) : 0,
                foundThrough: through?.rawValue, seconds: monotonicNow() - start,
                layers: spanIndex.layers.map {
                    LayerSummary(digest: $0.layerDigest.description, codec: $0.codec.description, compressedSize: $0.compressedSize,
                                 uncompressedSize: $0.uncompressedSize, spanSize: $0.spanSize, spans: $0.spanCount)
                })
        }

        try output.run(verify ? "verify" : "index", progress: {
            ProgressDisplay.Sample(done: progress.bytes.load(ordering: .relaxed), total: total,
                                   detail: "layer \(min(progress.layers.load(ordering: .relaxed) + 1, layerCount))/\(layerCount)")
        }, { () throws -> Summary in
            if verify {
                guard let found = try SpanIndexArtifact.find(client: client, repository: repository, subject: manifestDigest, pinned: pinned) else {
                    throw SpanIndexingError.notFound(subject: manifestDigest)
                }
                try indexer.verify(found.index, layers: layers)
                return summary(found.index, artifact: found.manifestDigest, blob: found.blob, through: found.source, mode: "verify")
            }
            let spanIndex = try indexer.build(layers, spanSize: spanSize)
            let fetched = try client.manifest(repository, reference: manifestDigest.description)
            let subject = Descriptor(mediaType: fetched.mediaType, digest: manifestDigest, size: Int64(fetched.bytes.count))
            let pushed = try SpanIndexArtifact.push(spanIndex, client: client, repository: repository, subject: subject)
            return summary(spanIndex, artifact: pushed.manifestDigest, blob: pushed.blob, through: pushed.source, mode: "index")
        }, summary: { result in
            let spans = result.layers.reduce(0) { $0 + $1.spans }
            let verb = result.mode == "verify" ? "verified" : "pushed"
            return "\(reference): span index \(verb): \(result.layers.count) layers, \(spans) spans, \(formatBytes(result.indexSize)) (\(oneDecimal(result.sizePercent))% of \(formatBytes(Int64(result.compressedSize))) compressed)\(result.foundThrough.map { " via \($0)" } ?? "") in \(formatDuration(result.seconds))"
        }, digest: { $0.indexDigest })
    }
}
