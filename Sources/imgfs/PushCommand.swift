import ArgumentParser
import FoundationEssentials
import Push

struct PushCommand: OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Upload a VM image to a registry in the imgfs format.",
        discussion: """
        SOURCE is a VM directory (disk.img, and optionally nvram.bin and config.json) or one raw \
        disk image file. SOURCE may be the mount point of an `imgfs mount --writable`: the written \
        disk is pushed cut as its base image was, and chunk layers without changes are re-used \
        from the base image instead of being uploaded. The disk is read once: holes and all-zero frames are skipped, frames are \
        compressed on every core, and chunk layers upload while the disk is still being read. \
        Blobs the registry already has are not uploaded again, so re-pushing an edited disk \
        uploads only the chunks that changed.

        The manifest digest is printed on stdout at the end (with --json, a JSON summary).

        Examples:
          imgfs push ./vm localhost:5000/vm/debian:12
          imgfs push --single-layer disk.img registry.example.com/team/base:1.0
        """
    )

    @Argument(help: "A VM directory or a raw disk image file.")
    var source: String

    @Argument(help: "Where to push: registry/repository[:tag].")
    var reference: String

    @Option(help: ArgumentHelp("Store this boot profile (from `imgfs mount --record-profile`) in the image; mounts prefetch its frames first.", valueName: "file"))
    var profile: String?

    @OptionGroup var layout: LayoutOptionGroup
    @OptionGroup var output: OutputOptionGroup
    @OptionGroup var registry: RegistryOptionGroup

    func execute() throws {
        let reference = try parseReference(reference)
        guard reference.digest == nil else {
            throw UsageError("push needs a tag, not a digest: '\(self.reference)'")
        }
        var options = try layout.pushOptions()

        let logger = registry.makeLogger()
        do {
            let source = try PushSource.resolve(self.source)
            let client = try registry.client(for: reference, logger: logger)
            let bootProfile = try profile.map { try readBootProfile($0) }
            let base = try writableMountBase(source: self.source, target: reference, client: client, logger: logger)
            if let base { options = base.options(from: options) }
            let pusher = try ImagePusher(client: client, repository: reference.repository, options: options, logger: logger)
            let progress = pusher.progress
            try output.run("push", progress: {
                .init(done: progress.diskBytesDone.load(ordering: .relaxed), total: progress.diskSize.load(ordering: .relaxed),
                      detail: "uploaded \(formatBytes(progress.uploadedBytes.load(ordering: .relaxed)))")
            }, {
                try pusher.push(source, tag: reference.tag ?? "latest", base: base, bootProfile: bootProfile)
            }, summary: {
                "pushed \(reference): \($0.blobsUploaded) blobs uploaded (\(formatBytes($0.bytesUploaded))), \($0.blobsSkipped) already present"
            }, digest: \.manifestDigest)
        }
    }
}

/// Parses `512M`, `1G`, `65536`: binary multiples, as dd and qemu-img read them.
func parseSize(_ text: String, option: String) throws -> UInt64 {
    let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var digits = Substring(text.uppercased())
    var multiplier: UInt64 = 1
    if digits.hasSuffix("IB") { digits = digits.dropLast(2) } else if digits.hasSuffix("B") { digits = digits.dropLast() }
    if let last = digits.last, let unit = units[last] {
        multiplier = unit
        digits = digits.dropLast()
    }
    guard let value = UInt64(digits), value > 0, value <= UInt64.max / multiplier else {
        throw UsageError("\(option): '\(text)' is not a size (examples: 65536, 64K, 1M, 512M)")
    }
    return value * multiplier
}
