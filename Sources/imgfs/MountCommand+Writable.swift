import Glibc
import Logging
import Mount

/// `--writable` and `--record-profile`: the disks stacked on top of the lazy image.
extension MountCommand {
    /// `<cache-root>/writable/<escaped mountpoint>` unless `--writable-dir` says otherwise.
    func writableDirectory(mountpoint: String, cacheRoot: String) throws -> String {
        try writableDir.map(absolute) ?? "\(cacheRoot)/writable/\(escapedFileName(mountpoint))"
    }

    /// Checks that a reused layer directory belongs to this image (a written disk must never be
    /// laid over another image), and records the base image in it for `imgfs push`.
    static func describeOverlay(directory: String, session: MountSession, reference: String) throws {
        let resolved = session.resolved
        if let existing = try OverlayDescription.read(directory: directory), existing.manifestDigest != resolved.manifestDigest.description {
            throw MountError.invalidArgument(
                "\(directory) holds a disk written over \(existing.registry)/\(existing.repository)@\(existing.manifestDigest), " +
                "not over \(reference) (\(resolved.manifestDigest)); mount that image, or use another --writable-dir")
        }
        try CopyOnWriteDisk.makeDirectory(directory)
        try OverlayDescription(registry: resolved.locator.registry, repository: resolved.locator.repository,
                               manifestDigest: resolved.manifestDigest.description, indexDigest: resolved.indexDigest.description,
                               reference: reference, diskSize: session.disk.size, blockSize: CopyOnWriteDisk.blockSize)
            .write(directory: directory)
    }

    /// The disk the mount serves: the lazy image, seen through the profile recorder and the
    /// copy-on-write layer when asked for.
    func stackedDisk(session: MountSession, mountpoint: String, cacheRoot: String, logger: Logger) throws -> StackedDisk {
        var disk: any VirtualDisk = session.disk
        var recorder: ProfileRecorder?
        if let recordProfile {
            let index = session.disk.index
            let made = ProfileRecorder(base: disk, path: try absolute(recordProfile), frameSize: index.geometry.frameSize,
                                       holes: index.frames.map(\.isHole), logger: logger)
            recorder = made
            disk = made
        }
        var layer: CopyOnWriteDisk?
        var directory: String?
        if writable {
            let dir = try writableDirectory(mountpoint: mountpoint, cacheRoot: cacheRoot)
            try Self.describeOverlay(directory: dir, session: session, reference: reference)
            let made = try CopyOnWriteDisk(base: disk, directory: dir, logger: logger)
            layer = made
            disk = made
            directory = dir
        }
        return StackedDisk(disk: disk, recorder: recorder, layer: layer, writableDirectory: directory)
    }
}

struct StackedDisk {
    var disk: any VirtualDisk
    var recorder: ProfileRecorder?
    var layer: CopyOnWriteDisk?
    var writableDirectory: String?

    func start() { recorder?.start() }

    /// After FUSE stopped: the written disk is flushed, the profile written.
    func stop() {
        layer?.close()
        recorder?.stop()
    }
}
