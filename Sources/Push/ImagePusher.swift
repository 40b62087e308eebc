import Fetch
import ImgfsFormat
import Logging
import OCI
import Threading
import Verity
import Glibc

/// What a push did, for the command line's summary and `--json`.
public struct PushResult: Sendable, Codable {
    public var reference: String
    public var manifestDigest: Digest
    public var diskSize: UInt64
    /// Uncompressed bytes per frame: the size asked for, or the one push chose for the disk.
    public var frameSize: Int
    public var frames: Int
    public var zeroFrames: Int
    public var chunkLayers: Int
    public var fsverityDigest: Digest
    public var blobsUploaded: Int
    public var blobsSkipped: Int
    public var bytesUploaded: Int64
    /// Chunk layers re-used unchanged from the base image (push of a writable mount).
    public var chunkLayersReused: Int = 0
    /// Frames holding data that were compressed: all of them for a plain push; over a base, only
    /// those of chunks that changed.
    public var framesCompressed: Int = 0
}

/// `imgfs push`: reads a disk once, frames and compresses it on every core, and uploads
/// chunk layers while it reads.
///
/// Threads: one reader (sparse-aware preads into pooled buffers), `compressionThreads`
/// encoders, the calling thread as the in-order assembler, `uploadThreads` uploaders.
/// Every hand-off is a bounded queue, so memory is bounded by buffers and spooled chunks in flight.
public final class ImagePusher: Sendable {
    private let client: RegistryClient
    private let repository: String
    private let options: PushOptions
    private let logger: Logger
    public let progress: PushProgress

    /// - Parameter progress: the counters to bump; convert passes its own, so that one set
    ///   describes a conversion whatever its target format.
    public init(client: RegistryClient, repository: String, options: PushOptions, progress: PushProgress = PushProgress(),
                logger: Logger) throws(PushError) {
        self.client = client
        self.progress = progress
        self.repository = repository
        self.options = try options.validated()
        self.logger = logger
    }

    /// - Parameters:
    ///   - base: the image a written disk came from; its unchanged chunk layers are re-used.
    ///   - bootProfile: a boot profile layer (docs/FORMAT.md, "Boot profiles") to store.
    public func push(_ source: PushSource, tag: String, base: PushBase? = nil, bootProfile: [UInt8]? = nil) throws(PushError) -> PushResult {
        let disk = try SourceFile(path: source.diskPath)
        let nvram = try source.nvramPath.map { (path) throws(PushError) in try SourceFile.readAll(path, limit: FormatLimits.maximumSmallBlobSize) }
        let vmConfig = try source.vmConfigPath.map { (path) throws(PushError) in try SourceFile.readAll(path, limit: FormatLimits.maximumSmallBlobSize) }
        return try push(disk: disk, nvram: nvram, vmConfig: vmConfig, tag: tag, base: base, bootProfile: bootProfile)
    }

    /// Pushes any disk source (a file, or another image decoded as it streams) with its small
    /// files; `annotations` are added to the manifest (convert keeps the peers' metadata).
    public func push(disk: any DiskSource, nvram: [UInt8]?, vmConfig: [UInt8]?, tag: String, annotations: [String: String] = [:],
                     base: PushBase? = nil, bootProfile: [UInt8]? = nil) throws(PushError) -> PushResult {
        try checkRegistry()

        let layout: FrameIndex.Layout = options.singleLayer ? .singleLayer : .multiLayer
        // Before reading the disk: an image readers would reject is refused (or re-cut) here.
        let plan: ImagePlan
        do {
            // Unless told otherwise, the frame size follows the disk's size (DiskGeometry.defaultFrameSize(diskSize:)).
            let automaticFrameSize = options.frameSizeIsAutomatic && base == nil
            let frameSize = automaticFrameSize ? DiskGeometry.defaultFrameSize(diskSize: disk.size) : options.frameSize
            plan = try ImagePlan(diskSize: disk.size, frameSize: frameSize, chunkSize: options.chunkSize, layout: layout,
                                 adjustFrameSize: automaticFrameSize,
                                 adjustChunkSize: options.chunkSizeIsAutomatic && base == nil)
        } catch { throw .format(error) }
        for adjustment in plan.adjustments { logger.warning("push: \(adjustment)") }
        let geometry = plan.geometry
        let chunkSize = layout == .singleLayer ? options.chunkSize : plan.chunkSize
        let extents = try disk.dataExtents()
        progress.diskSize.store(Int64(disk.size), ordering: .relaxed)
        progress.dataBytes.store(Int64(extents.reduce(0) { $0 + $1.count }), ordering: .relaxed)
        logger.info("pushing disk", metadata: ["size": "\(disk.size)", "data": "\(progress.dataBytes.load(ordering: .relaxed))"])

        let failure = PipelineFailure()
        let uploader = BlobUploader(client: client, repository: repository, threads: options.uploadThreads,
                                    progress: progress, failure: failure, logger: logger)
        // Over a base, frames it already has skip compression until their chunk shows a change.
        // Not for single-layer images (their one chunk is the whole disk, and changes), nor for
        // sources that cannot be read twice.
        let baseFrames = base.flatMap { base in
            layout == .multiLayer && disk.canReadAgain ? BaseFrames(index: base.index, framesPerChunk: Int(chunkSize / UInt64(geometry.frameSize))) : nil
        }
        var reread: ((Int, Int) throws(PushError) -> [UInt8])?
        if baseFrames != nil {
            reread = { (frame: Int, length: Int) throws(PushError) -> [UInt8] in
                var bytes = [UInt8](repeating: 0, count: length)
                try bytes.withMutableBytes { (raw) throws(PushError) in try disk.read(into: raw, at: geometry.offset(ofFrame: frame)) }
                return bytes
            }
        }
        let assembler = ChunkAssembler(geometry: geometry, chunkSize: chunkSize, layout: layout,
                                       spoolDirectory: options.spoolDirectory, base: base, reread: reread,
                                       compressionLevel: options.compressionLevel) { chunk throws(PushError) in
            uploader.submit(.init(digest: chunk.layer.digest, size: chunk.layer.compressedSize, body: .spool(chunk.spool)))
            try failure.check()
        }

        let encoded: (index: FrameIndex, chunks: [ChunkLayer], fsverity: Digest)
        do throws(PushError) {
            encoded = try encodeFrames(disk: disk, extents: extents, geometry: geometry, layout: layout, baseFrames: baseFrames,
                                       assembler: assembler, failure: failure)
        } catch {
            failure.record(error)
            _ = try? uploader.finish()
            throw error
        }
        do throws(PushError) { try disk.finish() } catch {
            failure.record(error)
            _ = try? uploader.finish()
            throw error
        }
        let indexBytes = encoded.index.encode()
        let indexDigest = SHA256Hasher.digest(indexBytes)
        uploader.submit(.init(digest: indexDigest, size: Int64(indexBytes.count), body: .bytes(indexBytes)))

        let config = ImageConfig(disk: .init(size: geometry.diskSize, frameSize: geometry.frameSize,
                                             chunkSize: plan.chunkSize,
                                             layout: layout),
                                 files: ["disk.img"] + (nvram != nil ? ["nvram.bin"] : []) + (vmConfig != nil ? ["config.json"] : []))
        let configBytes = config.encoded()
        let configDescriptor = Descriptor(mediaType: .imgfsConfig, digest: SHA256Hasher.digest(configBytes), size: Int64(configBytes.count))
        uploader.submit(.init(digest: configDescriptor.digest, size: configDescriptor.size, body: .bytes(configBytes)))

        func smallLayer(_ bytes: [UInt8]?, _ type: MediaType, _ title: String) -> Descriptor? {
            guard let bytes else { return nil }
            let descriptor = ImgfsImage.titled(type, digest: SHA256Hasher.digest(bytes), size: Int64(bytes.count), title: title)
            uploader.submit(.init(digest: descriptor.digest, size: descriptor.size, body: .bytes(bytes)))
            return descriptor
        }
        let nvramDescriptor = smallLayer(nvram, .imgfsNVRAM, "nvram.bin")
        let vmConfigDescriptor = smallLayer(vmConfig, .imgfsVMConfig, "config.json")
        let profileDescriptor = smallLayer(bootProfile, .imgfsBootProfile, "boot-profile")
        try uploader.finish()
        if let base { try makePresent(assembler.reusedChunks, from: base) }

        var manifest = ImgfsImage.makeManifest(
            config: config, fsverityDigest: encoded.fsverity, configDescriptor: configDescriptor,
            index: ImgfsImage.titled(.imgfsIndex, digest: indexDigest, size: Int64(indexBytes.count), title: "disk.img.index"),
            chunks: encoded.chunks, nvram: nvramDescriptor, vmConfig: vmConfigDescriptor, bootProfile: profileDescriptor)
        if !annotations.isEmpty {
            // imgfs's own keys win: they describe this encoding, the extra ones the VM.
            manifest.annotations = (manifest.annotations ?? [:]).merging(annotations) { own, _ in own }
        }
        let manifestBytes = ManifestEncoding.encode(manifest)
        let manifestDigest: Digest
        do {
            manifestDigest = try client.putManifest(repository, reference: tag, bytes: manifestBytes, mediaType: .ociManifest)
        } catch {
            throw .registry(error)
        }
        return PushResult(
            reference: "\(repository):\(tag)", manifestDigest: manifestDigest, diskSize: geometry.diskSize,
            frameSize: Int(geometry.frameSize), frames: geometry.frameCount, zeroFrames: encoded.index.frames.filter(\.isHole).count,
            chunkLayers: encoded.chunks.count, fsverityDigest: encoded.fsverity,
            blobsUploaded: progress.blobsUploaded.load(ordering: .relaxed),
            blobsSkipped: progress.blobsSkipped.load(ordering: .relaxed),
            bytesUploaded: progress.uploadedBytes.load(ordering: .relaxed),
            chunkLayersReused: assembler.reusedChunks.count,
            framesCompressed: progress.framesCompressed.load(ordering: .relaxed) + assembler.deferredFramesCompressed)
    }

    /// Re-used chunk layers must be in the target repository before the manifest names them:
    /// already there when pushing to the base's repository, else mounted from it (no bytes move).
    private func makePresent(_ layers: [ChunkLayer], from base: PushBase) throws(PushError) {
        for layer in Set(layers.map(\.digest)) {
            do {
                if try client.blobSize(repository, digest: layer) != nil { continue }
                if base.repository != repository, try client.mountBlob(repository, digest: layer, from: base.repository) { continue }
            } catch {
                throw .registry(error)
            }
            throw .source("chunk layer \(layer) of the base image is not in \(repository) and could not be mounted from \(base.repository)")
        }
    }

    /// Fails fast, before the disk is read, when the registry is down or refuses the credentials.
    private func checkRegistry() throws(PushError) {
        do {
            _ = try client.blobSize(repository, digest: SHA256Hasher.digest([UInt8]()))
        } catch {
            throw .registry(error)
        }
    }

    private func encodeFrames(disk: any DiskSource, extents: [Range<UInt64>], geometry: DiskGeometry, layout: FrameIndex.Layout,
                              baseFrames: BaseFrames?, assembler: ChunkAssembler, failure: PipelineFailure) throws(PushError) -> (index: FrameIndex, chunks: [ChunkLayer], fsverity: Digest) {
        let threads = options.compressionThreads
        let poolSize = threads * 2 + 2
        let freeBuffers = BoundedQueue<[UInt8]>(capacity: poolSize)
        for _ in 0..<poolSize { freeBuffers.push([UInt8](repeating: 0, count: geometry.frameSize)) }
        let jobs = BoundedQueue<FrameJob>(capacity: poolSize)
        let results = ReorderBuffer<EncodedFrame>(window: poolSize * 4)
        failure.onFailure {
            freeBuffers.cancel()
            jobs.cancel()
            results.cancel()
        }
        let frameCount = geometry.frameCount
        let lastLength = frameCount > 0 ? geometry.length(ofFrame: frameCount - 1) : geometry.frameSize
        let zeroFrames = try ZeroFrames(frameSize: geometry.frameSize, lastLength: lastLength, level: options.compressionLevel)

        let reader = WorkerThread(name: "push-reader") {
            var hint = 0
            for index in 0..<frameCount {
                let offset = geometry.offset(ofFrame: index)
                let length = geometry.length(ofFrame: index)
                guard extents.overlaps(offset..<offset + UInt64(length), hint: &hint) else {
                    if !jobs.push(FrameJob(index: index, length: length, buffer: nil)) { return }
                    continue
                }
                guard var buffer = freeBuffers.pop() else { return }
                do throws(PushError) {
                    try buffer.withMutableBytes { (raw) throws(PushError) in
                        try disk.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<length]), at: offset)
                    }
                } catch {
                    failure.record(error)
                    return
                }
                if !jobs.push(FrameJob(index: index, length: length, buffer: buffer)) { return }
            }
            jobs.close()
        }
        let level = options.compressionLevel
        let storeZeros = layout == .singleLayer
        let workers = (0..<threads).map { i in
            WorkerThread(name: "push-encode-\(i)") {
                let encoder: FrameEncoder
                do throws(PushError) {
                    encoder = try FrameEncoder(level: level, zeroFrames: zeroFrames, storeZeroFrames: storeZeros, base: baseFrames)
                } catch {
                    failure.record(error)
                    return
                }
                while let job = jobs.pop() {
                    do throws(PushError) {
                        results.put(try encoder.encode(job), at: job.index)
                    } catch {
                        failure.record(error)
                        return
                    }
                }
            }
        }
        defer {
            reader.join()
            workers.forEach { $0.join() }
        }

        do throws(PushError) {
            for index in 0..<frameCount {
                guard let frame = results.take(index) else { break }
                try assembler.add(frame)
                if let buffer = frame.buffer { freeBuffers.push(buffer) }
                progress.diskBytesDone.add(Int64(frame.length), ordering: .relaxed)
                // Deferred frames count as their base member's size: what the chunk will weigh if re-used.
                if let member = frame.member {
                    progress.compressedBytes.add(Int64(member.count), ordering: .relaxed)
                    if !frame.isZero { progress.framesCompressed.add(1, ordering: .relaxed) }
                } else if frame.isDeferred, let location = baseFrames?.index.frames[index].location {
                    progress.compressedBytes.add(Int64(location.compressedLength), ordering: .relaxed)
                }
            }
            try failure.check()
            return try assembler.finish()
        } catch {
            // Wakes the reader and encoders before the deferred joins wait for them.
            failure.record(error)
            throw error
        }
    }
}
