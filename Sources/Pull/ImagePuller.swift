import Fetch
import ImageLayouts
import Glibc
import SystemIO
import ImgfsFormat
import Logging
import OCI
import Verity

/// `imgfs pull`: any readable image to a VM directory (`disk.img`, `nvram.bin`, `config.json`).
///
/// The disk is written into `disk.img.partial` (sparse, holes never written) by `jobs` worker
/// threads, each fetching and decoding its own layer or frame run; what is verified and durable
/// is recorded in `.imgfs-pull.json`, so a re-run fetches only the rest. `disk.img` appears only
/// after every digest (and the fs-verity digest, when the image has one) matched.
public final class ImagePuller: Sendable {
    private let client: RegistryClient
    private let repository: String
    private let options: PullOptions
    private let logger: Logger
    public let progress = PullProgress()

    public init(client: RegistryClient, repository: String, options: PullOptions, logger: Logger) throws(PullError) {
        self.client = client
        self.repository = repository
        self.options = try options.validated()
        self.logger = logger
    }

    /// Resolves a tag or digest (an image index to its entry for `platform`) and reads the
    /// manifest, of any format; returns the image manifest's digest.
    public static func open(client: RegistryClient, repository: String, reference: String, platform: Platform) throws(PullError) -> (image: VMImage, digest: Digest) {
        do {
            let (image, manifest) = try ManifestResolver(source: RegistryManifests(client: client, repository: repository), platform: platform)
                .image(reference)
            return (image, manifest.digest)
        } catch {
            switch error {
            case .source(let error): throw .registry(error)
            case .manifest(let error): throw .manifest(error)
            case .layout(let error): throw .layout(error)
            }
        }
    }

    public func pull(reference: String, displayName: String, into directory: String) throws(PullError) -> PullResult {
        let (image, manifestDigest) = try Self.open(client: client, repository: repository, reference: reference, platform: options.platform)
        try makeDirectory(directory)
        // disk.qcow2 for a containerDisk whose disk is qcow2; disk.img for every raw disk.
        let diskName = image.diskFormat.fileName
        let diskPath = directory + "/" + diskName
        let partialPath = diskPath + ".partial"
        let frameCount = image.imgfs?.index.frames.count ?? 0
        var (journal, resumed) = PullJournal.open(directory: directory, manifestDigest: manifestDigest, diskSize: image.layout.diskSize, frameCount: frameCount)
        // A pull the journal calls complete is checked before it is reported so, where the manifest
        // gives the disk's fs-verity digest: bytes on disk are not trusted because a file says so.
        if resumed, journal.isComplete, access(diskPath, F_OK) == 0, let expected = image.fsverityDigest,
           (try? FSVerity.digest(ofFileAt: diskPath)) != expected {
            logger.info("the pulled disk.img does not match the manifest's fs-verity digest any more; pulling it again",
                           metadata: ["directory": "\(directory)"])
            journal.remove()
            (journal, resumed) = PullJournal.open(directory: directory, manifestDigest: manifestDigest, diskSize: image.layout.diskSize, frameCount: frameCount)
        }
        var result = PullResult(reference: displayName, manifestDigest: manifestDigest, format: image.kind.rawValue, directory: directory,
                                diskSize: image.layout.diskSize, files: [], bytesDownloaded: 0, requests: 0, framesFromCache: 0,
                                unitsResumed: 0, fsverityDigest: image.fsverityDigest, verityEnabled: false, alreadyComplete: false)
        progress.totalBytes.store(Int64(storedBytes(image)), ordering: .relaxed)

        if resumed && journal.isComplete && access(diskPath, F_OK) == 0 {
            progress.doneBytes.store(progress.totalBytes.load(ordering: .relaxed), ordering: .relaxed)
            result.alreadyComplete = true
            result.files = try writeSmallFiles(image, directory: directory)
            result.files.insert(diskName, at: 0)
            return result
        }
        // Whatever disk.img is there is not this image, complete: remove it so that a failure
        // below cannot leave a complete-looking disk behind.
        if unlink(diskPath) != 0 && errno != ENOENT { throw .io(path: diskPath, operation: "remove the previous \(diskName)", offset: nil, errno: errno) }
        let disk = try SparseDisk(path: partialPath, size: image.layout.diskSize, fresh: !resumed)
        try journal.save()
        logger.info("pulling", metadata: ["format": "\(image.kind.rawValue)", "disk": "\(image.layout.diskSize)", "resumed": "\(resumed)"])

        if let imgfs = image.imgfs {
            try FramePuller(client: client, repository: repository, index: imgfs.index, disk: disk, journal: journal,
                            progress: progress, options: options, logger: logger).run()
        } else {
            try LayerPuller(client: client, repository: repository, disk: disk, journal: journal, progress: progress,
                            jobs: options.jobs, logger: logger).run(image.layout)
        }
        result.files = try writeSmallFiles(image, directory: directory)

        if let expected = image.fsverityDigest {
            let actual: Digest
            do { actual = try FSVerity.digest(ofFileAt: partialPath) } catch {
                throw .io(path: partialPath, operation: "compute the fs-verity digest (\(error))", offset: nil, errno: EIO)
            }
            guard actual == expected else {
                // The journal claimed frames that do not add up: start over next time.
                journal.remove()
                throw .fsverityMismatch(expected: expected, actual: actual)
            }
        }
        guard rename(partialPath, diskPath) == 0 else { throw .io(path: diskPath, operation: "rename \(diskName).partial to", offset: nil, errno: errno) }
        try journal.markComplete()
        result.files.insert(diskName, at: 0)
        if options.enableVerity {
            try VerityEnabler.enable(path: diskPath)
            result.verityEnabled = true
        }
        result.bytesDownloaded = progress.downloadedBytes.load(ordering: .relaxed)
        result.requests = progress.requests.load(ordering: .relaxed)
        result.framesFromCache = progress.framesFromCache.load(ordering: .relaxed)
        result.unitsResumed = progress.unitsResumed.load(ordering: .relaxed)
        return result
    }

    private func storedBytes(_ image: VMImage) -> UInt64 {
        guard let index = image.imgfs?.index else { return image.layout.storedBytes }
        var total: UInt64 = 0
        for (frame, entry) in index.frames.enumerated() where !entry.isHole { total += UInt64(index.geometry.length(ofFrame: frame)) }
        return total
    }

    /// nvram.bin and config.json, fetched verified and replaced atomically.
    private func writeSmallFiles(_ image: VMImage, directory: String) throws(PullError) -> [String] {
        var files = [String]()
        for (descriptor, name) in [(image.nvram, "nvram.bin"), (image.vmConfig, "config.json")] {
            guard let descriptor else { continue }
            let bytes: [UInt8]
            do { bytes = try client.blob(repository, digest: descriptor.digest, maxSize: FormatsLimits.maximumSmallBlobSize) } catch { throw .registry(error) }
            do { try FileIO.writeAtomically(bytes, to: directory + "/" + name, durable: true) } catch { throw PullError(error) }
            files.append(name)
        }
        return files
    }

    private func makeDirectory(_ path: String) throws(PullError) {
        if mkdir(path, 0o755) == 0 { return }
        guard errno == EEXIST else { throw .io(path: path, operation: "create directory", offset: nil, errno: errno) }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw .destinationNotUsable(path: path, reason: "exists and is not a directory")
        }
    }
}

/// One repository of a registry as `ManifestResolver` reads it.
struct RegistryManifests: ManifestSource {
    let client: RegistryClient
    let repository: String

    func manifest(_ reference: String) throws(FetchError) -> (digest: Digest, bytes: [UInt8]) {
        let fetched = try client.manifest(repository, reference: reference)
        return (fetched.digest, fetched.bytes)
    }

    func blob(_ descriptor: Descriptor, limit: Int64) throws(FetchError) -> [UInt8] {
        try client.blob(repository, digest: descriptor.digest, maxSize: limit)
    }

    func blob(_ descriptor: Descriptor, range: Range<Int64>) throws(FetchError) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(range.count)
        try client.blob(repository, digest: descriptor.digest, range: range) { bytes.append(contentsOf: $0) }
        return bytes
    }
}
