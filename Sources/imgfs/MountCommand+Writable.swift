import Glibc
import Logging
import Mount
import OCI
import SystemIO

/// `--writable` and `--record-profile`: the disks stacked on top of the lazy image.
extension MountCommand {
    /// `<cache-root>/writable/<mountpoint file name>` unless `--writable-dir` says otherwise.
    func writableDirectory(mountpoint: String, cacheRoot: String) throws -> String {
        if let writableDir { return try absolute(writableDir) }
        let directory = "\(cacheRoot)/writable/\(mountpointFileName(mountpoint))"
        // A disk written under the old, ambiguous name moves to the new one the first time its
        // mount point is mounted again, so an upgrade does not seem to lose it (the base-image
        // check in `describeOverlay` still refuses one that another mount point had written).
        let legacy = "\(cacheRoot)/writable/\(legacyMountpointFileName(mountpoint))"
        if access(directory, F_OK) != 0, access(legacy + "/" + OverlayDescription.fileName, F_OK) == 0 {
            try WritableDirectoryLock.checkAvailable(directory: legacy)
            guard rename(legacy, directory) == 0 else { throw MountError.io(operation: "rename", path: legacy, errno: errno) }
        }
        return directory
    }

    /// Checks that a reused layer directory belongs to this image (a written disk must never be
    /// laid over another image), and records the base image in it for `imgfs push`.
    static func describeOverlay(directory: String, session: any MountSession, reference: Reference, typed: String) throws {
        if let existing = try OverlayDescription.read(directory: directory), existing.manifestDigest != session.manifestDigest.description {
            throw MountError.invalidArgument(
                "\(directory) holds a disk written over \(existing.registry)/\(existing.repository)@\(existing.manifestDigest), " +
                "not over \(typed) (\(session.manifestDigest)); mount that image, or use another --writable-dir")
        }
        try FileIO.makeDirectories(directory, mode: 0o700)
        try OverlayDescription(registry: reference.registry, repository: reference.repository,
                               manifestDigest: session.manifestDigest.description,
                               indexDigest: (session as? FrameSession)?.resolved.indexDigest.description,
                               reference: typed, diskSize: session.servedDisk.size, blockSize: CopyOnWriteDisk.blockSize)
            .write(directory: directory)
    }

    /// The disk the mount serves: the lazy image, seen through the profile recorder and the
    /// copy-on-write layer when asked for.
    func stackedDisk(session: any MountSession, reference: Reference, mountpoint: String, cacheRoot: String, logger: Logger) throws -> StackedDisk {
        var disk: any VirtualDisk = session.servedDisk
        var recorder: ProfileRecorder?
        if let recordProfile {
            guard let lazy = session as? FrameSession else {
                throw MountError.invalidArgument("--record-profile: boot profiles list imgfs frames; \(self.reference) is not an imgfs image")
            }
            let index = lazy.disk.index
            let made = ProfileRecorder(base: disk, path: try absolute(recordProfile), frameSize: index.geometry.frameSize,
                                       holes: index.frames.map(\.isHole), logger: logger)
            recorder = made
            disk = made
        }
        var layer: CopyOnWriteDisk?
        var directory: String?
        if writable {
            let dir = try writableDirectory(mountpoint: mountpoint, cacheRoot: cacheRoot)
            try Self.describeOverlay(directory: dir, session: session, reference: reference, typed: self.reference)
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
