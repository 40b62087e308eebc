import Foundation
import Testing

/// The ways a system mounts imgfs: mount(8) with the `fuse.imgfs` helper, an fstab line, and
/// the systemd unit in contrib/systemd.
@Suite(.serialized) struct ServiceIntegrationTests {
    static let helper = "/sbin/mount.fuse.imgfs"

    /// Installs `/sbin/mount.fuse.imgfs` as a link to the binary under test (mount(8) looks for
    /// helpers only there), runs `body`, and puts back what was there.
    static func withHelperInstalled(_ body: () throws -> Void) throws {
        let manager = FileManager.default
        let previous = try? manager.destinationOfSymbolicLink(atPath: helper)
        if previous == nil && manager.fileExists(atPath: helper) {
            Issue.record("\(helper) exists and is not a link; not replacing it")
            return
        }
        try? manager.removeItem(atPath: helper)
        try manager.createSymbolicLink(atPath: helper, withDestinationPath: TestEnvironment.imgfs)
        defer {
            try? manager.removeItem(atPath: helper)
            if let previous { try? manager.createSymbolicLink(atPath: helper, withDestinationPath: previous) }
        }
        try body()
    }

    static func holderAndServer(_ mountpoint: String) -> [Int32] {
        let result = try? imgfs(["status", "--json", mountpoint], timeout: 60)
        guard let data = result?.stdout.data(using: .utf8),
              let status = try? JSONDecoder().decode([MountStatusJSON].self, from: data).first else { return [] }
        return [status.pid] + (status.holderPid.map { [$0] } ?? [])
    }

    static func waitForExit(_ pids: [Int32]) -> Bool {
        for _ in 0..<200 {
            if pids.allSatisfy({ !RestartIntegrationTests.isAlive($0) }) { return true }
            usleep(50_000)
        }
        return false
    }

    @Test func mountAndFstabMountAnImageThroughTheHelper() throws {
        let scratch = try TestEnvironment.scratchDirectory("helper")
        defer { TestEnvironment.remove(scratch) }
        let image = try RestartIntegrationTests.pushRandomDisk(scratch, name: "helper")
        let mountpoint = scratch + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        defer { _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", mountpoint], timeout: 30) }
        try Self.withHelperInstalled {
            // mount(8) with options, including the generic ones fstab lines and systemd add.
            let mounted = try runCommand("/usr/bin/mount", ["-t", "fuse.imgfs", image.reference, mountpoint,
                                                             "-o", "cache-dir=\(scratch)/cache,no-prefetch,nofail,_netdev,x-systemd.automount"], timeout: 120)
            #expect(mounted.status == 0, "mount -t fuse.imgfs: \(mounted)")
            #expect(MountSupport.isMounted(mountpoint))
            try shell("cmp \(image.source) \(mountpoint)/disk.img", timeout: 600)
            let processes = Self.holderAndServer(mountpoint)
            #expect(processes.count == 2, "a holder and a server")
            let unmounted = try runCommand("/usr/bin/umount", [mountpoint], timeout: 60)
            #expect(unmounted.status == 0, "umount: \(unmounted)")
            #expect(Self.waitForExit(processes), "holder and server exit after umount(8)")

            // An unknown option is refused with a message, and nothing is mounted.
            let refused = try runCommand("/usr/bin/mount", ["-t", "fuse.imgfs", image.reference, mountpoint, "-o", "cache-dir=\(scratch)/cache,bogus-option"], timeout: 60)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("bogus-option"), "\(refused)")
            #expect(!MountSupport.isMounted(mountpoint))

            // An fstab line (a private fstab: mount -T), mounted by its mount point alone.
            let fstab = scratch + "/fstab"
            try "\(image.reference) \(mountpoint) fuse.imgfs cache-dir=\(scratch)/cache,noauto,nofail 0 0\n"
                .write(toFile: fstab, atomically: true, encoding: .utf8)
            let fromFstab = try runCommand("/usr/bin/mount", ["-T", fstab, mountpoint], timeout: 120)
            #expect(fromFstab.status == 0, "mount -T fstab: \(fromFstab)")
            try shell("cmp \(image.source) \(mountpoint)/disk.img", timeout: 600)
            let again = Self.holderAndServer(mountpoint)
            #expect(try runCommand("/usr/bin/umount", [mountpoint], timeout: 60).status == 0)
            #expect(Self.waitForExit(again))
        }
    }

    @Test func theSystemdUnitVerifies() throws {
        let scratch = try TestEnvironment.scratchDirectory("systemd")
        defer { TestEnvironment.remove(scratch) }
        let unit = try String(contentsOfFile: TestEnvironment.repositoryRoot + "/contrib/systemd/imgfs@.service", encoding: .utf8)
        #expect(unit.contains("KillMode=mixed"))
        #expect(unit.contains("ExecReload=/usr/bin/imgfs upgrade"))
        // verify checks that ExecStart's binary exists: point it at the one under test. An
        // instance is verified through the template beside it, so each variant gets a directory.
        func verify(_ text: String, _ name: String) throws -> CommandResult {
            let directory = scratch + "/" + name
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try text.write(toFile: directory + "/imgfs@.service", atomically: true, encoding: .utf8)
            try text.write(toFile: directory + "/imgfs@test.service", atomically: true, encoding: .utf8)
            return try runCommand("/usr/bin/systemd-analyze", ["verify", "--man=no", directory + "/imgfs@test.service"], timeout: 120)
        }
        let local = unit.replacingOccurrences(of: "/usr/bin/imgfs", with: TestEnvironment.imgfs)
        let verified = try verify(local, "good")
        // verify exits 0 even for directives it ignores; anything it says is a defect.
        #expect(verified.status == 0 && verified.stdout.isEmpty && verified.stderr.isEmpty, "systemd-analyze verify: \(verified)")
        // The check can fail: a broken kill mode is reported.
        let broken = try verify(local.replacingOccurrences(of: "KillMode=mixed", with: "KillMode=sometimes"), "broken")
        #expect(broken.stderr.contains("KillMode") || broken.stderr.contains("kill mode"), "\(broken)")
        // The flags the unit runs imgfs with exist.
        let help = try imgfs(["mount", "--help"])
        #expect(help.stdout.contains("--holder") && help.stdout.contains("--foreground"))
    }
}
