import ArgumentParser
import FoundationEssentials
import Pull

struct PullCommand: OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Download a whole VM image (imgfs, lume, tart or KubeVirt containerDisk) to a local directory.",
        discussion: """
        DIR receives disk.img (sparse: all-zero blocks are never written), nvram.bin and \
        config.json. Layers (lume, tart) or frame runs (imgfs) are fetched and decompressed in \
        parallel on every core. What is checked: the manifest against its digest (when pulled by \
        digest), the config and every small layer against their descriptors; for imgfs images \
        every rule of docs/FORMAT.md, every frame against the frame index's SHA-256 (the frames' \
        members tile each chunk blob, so every byte of it is verified without hashing the blob \
        as a whole), and the finished disk against the manifest's fs-verity digest; for lume and \
        tart images every layer blob against its digest and, where the format records them, \
        the uncompressed size and digest of each part. disk.img appears only once it is complete and \
        verified; until then the data is in disk.img.partial, and .imgfs-pull.json records what is \
        done, so re-running an interrupted pull fetches only what is missing. Frames that \
        `imgfs mount` already cached locally are copied instead of downloaded.

        \(PlatformOptionGroup.discussion)

        Formats: imgfs; lume OCI (chunked or single-layer, application/vnd.trycua.lume.*); lume \
        legacy (application/octet-stream+lz4 parts); tart (application/vnd.cirruslabs.tart.*); \
        KubeVirt containerDisk (a container image with the disk under /disk/; a qcow2 disk is \
        written as disk.qcow2, and the layer's digest is all that vouches for it, as the format \
        records no digest of the disk).

        Examples:
          imgfs pull localhost:5000/vm/debian:12 ./debian
          imgfs pull --enable-verity ghcr.io/org/macos@sha256:… /var/lib/vms/macos
          imgfs pull --json ghcr.io/cirruslabs/ubuntu:latest ./ubuntu
          imgfs pull --platform linux/arm64 localhost:5000/vm/debian:12 ./debian-arm64
        """
    )

    @OptionGroup var image: ImageArgument
    var reference: String { image.reference }

    @Argument(help: "The VM directory to write (created if missing).")
    var directory: String

    @Flag(help: "Turn on fs-verity for the pulled disk.img (the file becomes read-only; the filesystem must support it).")
    var enableVerity = false

    @Option(help: "Layers or frame runs fetched at once (default: cores + 2).")
    var jobs: Int?

    @Flag(help: "Do not copy frames from the local mount cache.")
    var noCache = false

    @OptionGroup var platform: PlatformOptionGroup
    @OptionGroup var output: OutputOptionGroup
    @OptionGroup var registry: RegistryOptionGroup

    func execute() throws {
        let reference = try parseReference(reference)
        var options = PullOptions()
        options.enableVerity = enableVerity
        if let jobs { options.jobs = jobs }
        if noCache { options.cacheRoot = nil }
        options.platform = platform.wanted
        let logger = registry.makeLogger()
        let client = try registry.client(for: reference, logger: logger)
        let puller = try ImagePuller(client: client, repository: reference.repository, options: options, logger: logger)
        let progress = puller.progress
        try output.run("pull", progress: {
            .init(done: progress.doneBytes.load(ordering: .relaxed), total: progress.totalBytes.load(ordering: .relaxed),
                  detail: "downloaded \(formatBytes(progress.downloadedBytes.load(ordering: .relaxed)))")
        }, {
            try puller.pull(reference: reference.manifestReference, displayName: reference.description, into: directory)
        }, summary: { result in
            let note = result.alreadyComplete ? " (already complete)" : ""
            return "pulled \(reference) (\(result.format)) to \(directory)\(note): \(formatBytes(Int64(result.diskSize))) disk, \(formatBytes(result.bytesDownloaded)) downloaded, \(result.framesFromCache) frames from the local cache"
        }, digest: \.manifestDigest)
    }
}
