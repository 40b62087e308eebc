import Fetch
import ImageLayouts
import Logging
import OCI
import Push
import Synchronization
import Verity

/// What a conversion did, for `--json`.
public struct ConvertResult: Sendable, Codable {
    public var source: String
    public var sourceFormat: String
    public var destination: String
    public var format: String
    public var manifestDigest: Digest
    public var diskSize: UInt64
}

/// The output format of `imgfs convert`.
public enum ConvertTarget: String, Sendable, CaseIterable {
    case imgfs, lume, tart
    /// A KubeVirt containerDisk: the disk as `/disk/disk.img` (or `disk.qcow2`) in a container image.
    case containerdisk
}

/// `imgfs convert`: registry to registry, streaming. The source is read with its format's reader
/// (`ImageLayouts`) and decoded as it streams (`StreamingDiskSource`); the imgfs format is written by
/// the push pipeline, lume and tart by `PeerImageWriter`, containerDisks by `ContainerDiskWriter`.
/// Config and nvram are carried over (a containerDisk has neither), and the source manifest's
/// metadata annotations are kept.
public struct ImageConverter: Sendable {
    public var source: RegistryClient
    public var sourceRepository: String
    public var destination: RegistryClient
    public var destinationRepository: String
    public var target: ConvertTarget
    public var pushOptions: PushOptions
    public var partSize: UInt64 = LumeOCIFormat.defaultPartSize
    public var logger: Logger
    /// Counters for the command line's progress display, whatever the target format.
    public let progress = PushProgress()

    public init(source: RegistryClient, sourceRepository: String, destination: RegistryClient, destinationRepository: String,
                target: ConvertTarget, pushOptions: PushOptions, logger: Logger) {
        self.source = source
        self.sourceRepository = sourceRepository
        self.destination = destination
        self.destinationRepository = destinationRepository
        self.target = target
        self.pushOptions = pushOptions
        self.logger = logger
    }

    public func convert(image: VMImage, sourceName: String, tag: String, destinationName: String) throws(ConvertError) -> ConvertResult {
        progress.diskSize.store(Int64(image.layout.diskSize), ordering: .relaxed)
        if image.diskFormat == .qcow2 && target != .containerdisk {
            throw .invalidOption("the source's disk is a qcow2 file, and \(target.rawValue) images hold raw disks: convert it with "
                                 + "`qemu-img convert -O raw` first, or keep it a containerDisk (--format containerdisk)")
        }
        let nvram = try smallFile(image.nvram)
        let vmConfig = try smallFile(image.vmConfig)
        let disk = StreamingDiskSource(image: image, client: source, repository: sourceRepository, logger: logger)
        defer { disk.cancel() }
        let digest: Digest
        switch target {
        case .imgfs:
            let pusher: ImagePusher
            do {
                pusher = try ImagePusher(client: destination, repository: destinationRepository, options: pushOptions, progress: progress, logger: logger)
            } catch { throw .push(error) }
            do {
                digest = try pusher.push(disk: disk, nvram: nvram, vmConfig: vmConfig, tag: tag, annotations: image.metadataAnnotations).manifestDigest
            } catch {
                throw .push(error)
            }
        case .lume, .tart:
            let writer = PeerImageWriter(client: destination, repository: destinationRepository, target: target == .lume ? .lume : .tart,
                                         partSize: target == .tart ? TartFormat.pieceSize : partSize,
                                         spoolDirectory: pushOptions.spoolDirectory, progress: progress, logger: logger)
            digest = try writer.write(disk: disk, nvram: nvram, vmConfig: vmConfig, tag: tag, annotations: image.metadataAnnotations)
        case .containerdisk:
            if nvram != nil || vmConfig != nil {
                logger.warning("a containerDisk holds only the disk: the source's nvram.bin and config.json are not carried over")
            }
            let config = try? source.blob(sourceRepository, digest: image.manifest.config.digest, maxSize: FormatsLimits.maximumConfigSize)
            let writer = ContainerDiskWriter(client: destination, repository: destinationRepository, diskFormat: image.diskFormat,
                                             architecture: ContainerDiskWriter.architecture(ofConfig: config ?? vmConfig),
                                             compressionLevel: pushOptions.compressionLevel, spoolDirectory: pushOptions.spoolDirectory,
                                             progress: progress, logger: logger)
            digest = try writer.write(disk: disk, tag: tag, annotations: image.metadataAnnotations)
        }
        return ConvertResult(source: sourceName, sourceFormat: image.kind.rawValue, destination: destinationName, format: target.rawValue,
                             manifestDigest: digest, diskSize: image.layout.diskSize)
    }

    private func smallFile(_ descriptor: Descriptor?) throws(ConvertError) -> [UInt8]? {
        guard let descriptor else { return nil }
        do { return try source.blob(sourceRepository, digest: descriptor.digest, maxSize: FormatsLimits.maximumSmallBlobSize) } catch { throw .registry(error) }
    }
}
