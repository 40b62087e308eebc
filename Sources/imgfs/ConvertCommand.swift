import ArgumentParser
import Convert
import FoundationEssentials
import Pull
import Push

struct ConvertCommand: OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a VM image between formats, registry to registry.",
        discussion: """
        SRC-REF may be in any format imgfs reads (imgfs, lume OCI, lume legacy, tart, KubeVirt \
        containerDisk). The image \
        is converted as it streams from one registry to the other: no local copy of the disk is \
        made (disk space is bounded by the chunks in flight). Every source digest is checked; the \
        destination manifest is written only after the last source layer verified. config.json \
        and nvram.bin are carried over, and the source manifest's metadata annotations are kept.

        --format imgfs (default) writes the imgfs format (multi-layer, or --single-layer); \
        --format lume writes lume's OCI format (512 MiB gzip parts) and --format tart tart's \
        (512 MiB LZ4 pieces), so an image can always go back to the tools it came from; \
        --format containerdisk writes a KubeVirt containerDisk (an OCI image with the disk at \
        /disk/disk.img, or /disk/disk.qcow2 when the source's disk is qcow2, owned 107:107). A \
        qcow2 disk converts to a containerDisk only.

        \(PlatformOptionGroup.discussion) The destination is that one image, not an index.

        Examples:
          imgfs convert ghcr.io/cirruslabs/ubuntu:latest localhost:5000/vm/ubuntu:imgfs
          imgfs convert --single-layer localhost:5000/lume/macos:15 localhost:5000/vm/macos:15
          imgfs convert --format tart localhost:5000/vm/debian:12 localhost:5000/tart/debian:12
        """
    )

    @Argument(help: "The image to read: registry/repository[:tag|@sha256:…].")
    var source: String

    @Argument(help: "Where to write: registry/repository[:tag].")
    var destination: String

    @Option(help: "Output format: imgfs, lume, tart or containerdisk.")
    var format: String = "imgfs"

    @OptionGroup var platform: PlatformOptionGroup
    @OptionGroup(title: "imgfs format (with --format imgfs)") var layout: LayoutOptionGroup
    @OptionGroup var output: OutputOptionGroup
    @OptionGroup var registry: RegistryOptionGroup

    func execute() throws {
        let sourceReference = try parseReference(source)
        let destinationReference = try parseReference(destination)
        guard destinationReference.digest == nil else { throw UsageError("convert needs a destination tag, not a digest: '\(destination)'") }
        guard let target = ConvertTarget(rawValue: format) else { throw UsageError("--format: '\(format)' is not one of imgfs, lume, tart, containerdisk") }
        if layout.singleLayer && target != .imgfs { throw UsageError("--single-layer applies to --format imgfs only") }
        let options = try layout.pushOptions()

        let logger = registry.makeLogger()
        let sourceClient = try registry.client(for: sourceReference, logger: logger)
        let destinationClient = try registry.client(for: destinationReference, logger: logger)
        let (image, _) = try ImagePuller.open(client: sourceClient, repository: sourceReference.repository, reference: sourceReference.manifestReference,
                                          platform: platform.wanted)
        let converter = ImageConverter(source: sourceClient, sourceRepository: sourceReference.repository,
                                       destination: destinationClient, destinationRepository: destinationReference.repository,
                                       target: target, pushOptions: options, logger: logger)
        let progress = converter.progress
        try output.run("convert", progress: {
            .init(done: progress.diskBytesDone.load(ordering: .relaxed), total: progress.diskSize.load(ordering: .relaxed),
                  detail: "uploaded \(formatBytes(progress.uploadedBytes.load(ordering: .relaxed)))")
        }, {
            try converter.convert(image: image, sourceName: sourceReference.description,
                                  tag: destinationReference.tag ?? "latest", destinationName: destinationReference.description)
        }, summary: { "converted \(sourceReference) (\($0.sourceFormat)) to \(destinationReference) (\($0.format))" },
           digest: \.manifestDigest)
    }
}
