import ArgumentParser
import FuseFS
import Glibc
import Mount
import Threading

struct UmountCommand: OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "umount",
        abstract: "Unmount an imgfs mount and wait for its daemon to exit.",
        discussion: """
        Fails if MOUNTPOINT is not an imgfs mount, or is busy (files open); --lazy detaches it \
        at once and lets the daemon exit when the last file is closed.

        Example:
          imgfs umount /mnt/vm
        """
    )

    @Argument(help: "Where the image is mounted.")
    var mountpoint: String

    @Flag(help: "Detach now even if files are open.")
    var lazy = false

    @Option(help: "Seconds to wait for the daemon to exit.")
    var timeout: Double = 30

    func execute() throws {
        // A mount whose processes are all gone cannot be resolved (ENOTCONN); it is still in the table.
        let path = resolvedMountpoint(mountpoint)
        guard let type = MountTable.fsType(at: path) else {
            throw MountError.invalidArgument("\(path) is not mounted")
        }
        guard type == "fuse.imgfs" else {
            throw MountError.invalidArgument("\(path) is not an imgfs mount (it is \(type))")
        }
        let status = MountStatusFiles.read(MountStatusFiles.path(forMountpoint: path))
        try Daemon.unmount(path, lazy: lazy)
        // The daemon finishes its cache writes and exits once the kernel lets go; its
        // descriptor holder follows.
        guard !lazy else { return }
        let deadline = monotonicNow() + timeout
        for (pid, what) in [(status?.pid, "daemon"), (status?.holderPid, "descriptor holder")] {
            guard let pid else { continue }
            while MountStatusFiles.isAlive(pid), monotonicNow() < deadline { usleep(20_000) }
            if MountStatusFiles.isAlive(pid) {
                writeStandardError("imgfs: warning: unmounted \(path), but its \(what) (pid \(pid)) is still running after \(Int(timeout)) s\n")
            }
        }
        // A killed holder leaves its socket behind (with no status file left to name it, when
        // its server was killed too); a live one removes it as it exits.
        if status?.holderPid.map(MountStatusFiles.isAlive) != true {
            unlink(MountStatusFiles.holderSocketPath(forMountpoint: path))
        }
    }
}
