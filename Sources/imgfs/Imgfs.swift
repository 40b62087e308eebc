import ArgumentParser
import Glibc

@main
struct Imgfs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imgfs",
        abstract: "Lazy, verified VM disk images from OCI registries.",
        discussion: """
        imgfs pushes VM images (a directory with disk.img, nvram.bin, config.json, or one raw disk \
        file) to any OCI registry in a framed, indexed format, and mounts them back as a FUSE \
        directory that fetches, verifies and caches only the frames a reader touches — so a VM \
        boots from MOUNTPOINT/disk.img in seconds instead of after a full download.

        References are docker-style: localhost:5000/vm/debian:12, ghcr.io/org/img@sha256:…
        Loopback registries use plain HTTP; others use TLS unless --plain-http is given.
        Credentials come from `imgfs login` or ~/.docker/config.json.

        Examples:
          imgfs push ./my-vm localhost:5000/vm/debian:12
          imgfs mount localhost:5000/vm/debian:12 /mnt/vm
          qemu-system-x86_64 -drive file=/mnt/vm/disk.img,format=raw,readonly=on …
          imgfs umount /mnt/vm
        """,
        version: BuildInfo.description,
        subcommands: [PushCommand.self, PullCommand.self, MountCommand.self, UmountCommand.self, UpgradeCommand.self, StatusCommand.self,
                      VerifyCommand.self, MetricsCommand.self, ConvertCommand.self, IndexCommand.self, LoginCommand.self]
    )

    /// Started by mount(8) as a mount helper, imgfs translates the helper's arguments into
    /// `imgfs mount` ones (MountHelper.swift).
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let names = configuration.subcommands.map { $0.configuration.commandName ?? "" } + ["help"]
        guard let program = CommandLine.arguments.first,
              MountHelper.isHelperInvocation(programName: program, arguments: arguments, subcommands: names) else {
            main(nil)
            return
        }
        do {
            guard let translated = try MountHelper.mountArguments(arguments) else { return }
            main(translated)
        } catch {
            writeStandardError("imgfs: error: \(error)\n")
            Glibc.exit(32)  // mount(8)'s "mount failure"
        }
    }
}
