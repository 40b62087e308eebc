import ArgumentParser
import FuseFS
import Glibc
import Mount

struct UpgradeCommand: OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Replace the serving process of a live mount with the imgfs binary now on disk.",
        discussion: """
        The mount's descriptor holder starts the binary at the path the mount was made with, \
        hands it the mount and, once it serves, stops the old process; requests the old one had \
        not answered are resent by the kernel, so readers and a running VM see no error. A \
        writable mount's old process is stopped first (two processes must not share its written \
        blocks), so reads pause for the time a start takes. Install the new binary by renaming \
        it over the old one.

        Example:
          install -m 755 imgfs.new /usr/local/bin/imgfs && imgfs upgrade /mnt/vm
        """
    )

    @Argument(help: "Where the image is mounted.")
    var mountpoint: String

    func execute() throws {
        let path = resolvedMountpoint(mountpoint)
        let status = MountStatusFiles.read(MountStatusFiles.path(forMountpoint: path))
        if let holder = status?.holderPid, !MountStatusFiles.isAlive(holder) {
            throw FuseError(mountpoint: path, reason: .holderGone(pid: holder))
        }
        let pid = try DescriptorHolder.requestUpgrade(socketPath: MountStatusFiles.holderSocketPath(forMountpoint: path), mountpoint: path)
        print("\(path): now served by pid \(pid)")
    }
}

/// A mount point as an absolute path without symlinks; when that cannot be resolved (a mount
/// whose server is gone answers ENOTCONN), the path as given, made absolute.
func resolvedMountpoint(_ path: String) -> String {
    if let resolved = realpath(path, nil) {
        defer { free(resolved) }
        return String(cString: resolved)
    }
    return (try? absolute(path)) ?? path
}
