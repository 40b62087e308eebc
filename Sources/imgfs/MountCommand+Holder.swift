import FuseFS
import Glibc
import Mount
import SystemIO

/// The daemon of a background mount is a descriptor holder (FuseFS.DescriptorHolder): it
/// mounts, keeps the `/dev/fuse` descriptor and starts the serving process — this same command
/// with `--attach SOCKET` instead of `--holder` — again whenever it dies or is upgraded.
extension MountCommand {
    func fuseOptions() -> FuseMountOptions {
        var options = FuseMountOptions()
        options.allowOther = allowOther
        return options
    }

    func hold(mountpoint: String, logFile: String) throws {
        let logger = registry.makeDaemonLogger(isDaemon: true)
        let socketPath = MountStatusFiles.holderSocketPath(forMountpoint: mountpoint)
        try FileIO.makeDirectories(FileIO.parent(of: socketPath))
        let executable = try currentExecutable()
        let connection = try FuseConnection(mountpoint: mountpoint, options: fuseOptions(), logger: logger)
        var arguments = Array(CommandLine.arguments.dropFirst()).filter { $0 != "--holder" }
        arguments += ["--attach", socketPath]
        let holder: DescriptorHolder
        do {
            holder = try DescriptorHolder(connection: connection, socketPath: socketPath,
                                          server: ServerCommand(executable: executable, arguments: arguments, logFile: logFile),
                                          exclusive: writable,
                                          // Lets tests take the path of kernels before 6.9 on a newer one.
                                          resendAvailable: environmentValue("IMGFS_ASSUME_NO_RESEND") == nil, logger: logger)
            try holder.start()
        } catch {
            // The kernel's INIT is unanswered: only aborting the connection ends the mount.
            try? connection.detach()
            close(connection.descriptor)
            throw error
        }
        logger.info("holding the mount", metadata: ["mountpoint": "\(mountpoint)", "pid": "\(getpid())", "socket": "\(socketPath)"])
        if let readyFd { Daemon.signalReady(fd: readyFd) }
        holder.run()
    }

    /// Who serves, for the status file: this process, started by a holder (`handover`) or not.
    func servingProcess(_ handover: FuseHandover?) -> ServingProcess {
        var info = stat()
        let modified = stat("/proc/self/exe", &info) == 0 ? Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9 : nil
        return ServingProcess(holderPid: handover?.holderPID, restarts: handover?.restarts, upgrades: handover?.upgrades,
                              version: BuildInfo.description, binary: try? currentExecutable(), binaryModified: modified)
    }
}

/// The running binary's path (`/proc/self/exe` resolved; " (deleted)" once it was replaced).
func currentExecutable() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { throw MountError.io(operation: "readlink", path: "/proc/self/exe", errno: errno) }
    return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
