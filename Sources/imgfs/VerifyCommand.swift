import ArgumentParser
import Cache
import FoundationEssentials
import Glibc
import Mount
import OCI
import Pull
import Verity

struct VerifyCommand: OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check an image's local cache, or the image in its registry, against its digests.",
        discussion: """
        imgfs verify MOUNTPOINT|REF scrubs the local cache of an image: every cached frame (imgfs \
        images) or layer file (lume, tart) is read and hashed; one that does not match its digest \
        is dropped from the cache (a mount fetches it again) and counted. A running mount of the \
        image may stay mounted: it checks each frame itself the first time it serves it.

        imgfs verify --remote REF checks the image in the registry end to end without writing a \
        disk: the manifest, every blob against its digest, every imgfs frame against the frame \
        index, and the whole disk's fs-verity digest against the manifest's; lume and tart layers \
        are decoded and checked against their annotations.

        \(PlatformOptionGroup.discussion)

        Exit status: 0 if everything matched; 1 if something did not (cached frames were dropped, \
        or the registry's image is corrupt) or the check could not be made.

        Examples:
          imgfs verify /mnt/vm
          imgfs verify --json localhost:5000/vm/debian:12
          imgfs verify --remote ghcr.io/org/vm@sha256:…
        """
    )

    @Argument(help: "A mount point of a running imgfs mount, or an image reference registry/repository[:tag|@sha256:…].")
    var target: String

    @Flag(help: "Check the image in the registry instead of the local cache.")
    var remote = false

    @Flag(help: "Print a JSON summary on stdout.")
    var json = false

    @Option(help: ArgumentHelp("The cache directory (default: the mount's, else $IMGFS_CACHE_DIR or /var/cache/imgfs for root).", valueName: "dir"))
    var cacheDir: String?

    @OptionGroup var platform: PlatformOptionGroup
    @OptionGroup var registry: RegistryOptionGroup

    struct Summary: Encodable {
        var target: String
        var reference: String
        var mode: String
        var ok: Bool
        var cache: CacheScrubReport?
        var remote: RemoteVerifyReport?
    }

    /// The exit status of a check that ran and found damage: the summary is printed, not an error.
    struct Damage: Error, CustomStringConvertible {
        var description: String
    }

    func execute() throws {
        let logger = registry.makeLogger()
        // A mount point names its image and cache; anything else is a reference.
        let mounted = Self.mountStatus(target)
        let referenceText = mounted?.reference ?? target
        let reference = try parseReference(referenceText)
        if remote {
            let client = try registry.client(for: reference, logger: logger)
            var verifier = RemoteVerifier(client: client, repository: reference.repository, logger: logger)
            verifier.platform = platform.wanted
            let report = try verifier.verify(reference: mounted?.manifestDigest ?? reference.manifestReference)
            if json {
                try printJSON(Summary(target: target, reference: reference.description, mode: "remote", ok: true, cache: nil, remote: report))
            } else {
                print("\(reference): ok: \(report.blobs) blobs, \(report.frames) frames\(report.fsverityDigest.map { ", fs-verity \($0)" } ?? "") (\(formatBytes(report.bytesDownloaded)) downloaded)")
            }
            return
        }
        let cacheRoot = try absolute(cacheDir ?? mounted?.cacheDirectory ?? defaultCacheDirectory())
        let client = try registry.client(for: reference, logger: logger)
        let resolver = ImageResolver(source: RegistryBlobSource(client: client, repository: reference.repository),
                                     store: MetadataStore(root: cacheRoot, logger: logger), platform: platform.wanted, logger: logger)
        let digest = mounted.flatMap { try? Digest(parsing: $0.manifestDigest) }
        let image = try resolver.resolveAnyFormat(Reference(registry: reference.registry, repository: reference.repository,
                                                               tag: reference.tag, digest: digest ?? reference.digest))
        let report = try CacheScrub.scrub(image, cacheRoot: cacheRoot, logger: logger)
        let unit = report.format == "imgfs" ? "frames" : "layers"
        if json {
            try printJSON(Summary(target: target, reference: reference.description, mode: "cache", ok: report.dropped == 0, cache: report, remote: nil))
        } else {
            print("\(reference): \(report.checked) cached \(unit) of \(report.total) checked, \(report.dropped) corrupt")
        }
        if report.dropped > 0 {
            throw Damage(description: "\(report.dropped) cached \(unit) did not match their digests and were dropped from the cache (they will be fetched again): \(report.droppedUnits.prefix(10).joined(separator: ", "))\(report.droppedUnits.count > 10 ? ", …" : "")")
        }
    }

    /// The status of the running mount at `path`, if it is one.
    static func mountStatus(_ path: String) -> MountStatus? {
        guard path.hasPrefix("/") || path.hasPrefix(".") || FileManager.default.fileExists(atPath: path),
              let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        let absolute = String(cString: resolved)
        return MountStatusFiles.all().first { $0.mountpoint == absolute }
    }
}
