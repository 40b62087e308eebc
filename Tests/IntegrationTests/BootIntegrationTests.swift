import Foundation
import Testing

/// Issue 4's VM boot test: a small Debian-kernel VM (contrib/vm/build-disk.sh) is pushed to the
/// real registry, mounted with the real `imgfs` binary and booted with qemu from
/// `MOUNTPOINT/disk.img`, first with an empty cache directory (cold), then again with the same
/// one (warm). contrib/vm/run-boot-test.sh does the work and unmounts everything it mounted even
/// when it fails; this test gives it the test registry, binary and scratch directory.
@Suite(.serialized, .enabled(if: BootSupport.canRun || TestEnvironment.isCI, "needs qemu-system-x86_64, debugfs, busybox-static, /dev/fuse and fusermount3"))
struct BootIntegrationTests {
    @Test func vmBootsFromALazyMountColdAndWarm() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("boot")
        defer { TestEnvironment.remove(scratch) }
        let result = try runCommand(TestEnvironment.repositoryRoot + "/contrib/vm/run-boot-test.sh", [],
                                    environment: ["IMGFS_BIN": TestEnvironment.imgfs,
                                                  "IMGFS_TEST_REGISTRY": registry.address,
                                                  "IMGFS_TEST_SCRATCH": scratch],
                                    timeout: 900)
        #expect(result.status == 0, "\(result)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("boot-test: cold boot: ok") }, "\(result)")
        #expect(lines.contains { $0.hasPrefix("boot-test: warm boot: ok") }, "\(result)")
    }

    /// Issue 10: the VM boots from a cold mount while its serving process is killed twice
    /// (contrib/vm/run-restart-boot-test.sh); the descriptor holder restarts it each time.
    @Test func vmBootsWhileTheServingProcessIsKilledTwice() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("restart-boot")
        defer { TestEnvironment.remove(scratch) }
        let result = try runCommand(TestEnvironment.repositoryRoot + "/contrib/vm/run-restart-boot-test.sh", [],
                                    environment: ["IMGFS_BIN": TestEnvironment.imgfs,
                                                  "IMGFS_TEST_REGISTRY": registry.address,
                                                  "IMGFS_TEST_SCRATCH": scratch],
                                    timeout: 900)
        #expect(result.status == 0, "\(result)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("restart-boot-test: killed the serving process") }.count == 2, "\(result)")
        #expect(lines.contains { $0.hasPrefix("restart-boot-test: boot: ok") && $0.contains("(2 restarts)") }, "\(result)")
    }

    /// The writable boot of issue 4: contrib/vm/run-writable-boot-test.sh boots an
    /// `imgfs mount --writable` disk (no snapshot) so the guest writes a token file and syncs,
    /// boots the same mount again and reads the token back, checks a read-only mount of the same
    /// reference still has the original disk, pushes the written mount (only the changed chunk
    /// layers uploaded) and checks a fresh mount of the new image equals the written disk.
    @Test func aWritableBootPersistsItsWritesAndPushesOnlyTheChangedChunks() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("wboot")
        defer { TestEnvironment.remove(scratch) }
        let result = try runCommand(TestEnvironment.repositoryRoot + "/contrib/vm/run-writable-boot-test.sh", [],
                                    environment: ["IMGFS_BIN": TestEnvironment.imgfs,
                                                  "IMGFS_TEST_REGISTRY": registry.address,
                                                  "IMGFS_TEST_SCRATCH": scratch],
                                    timeout: 1200)
        #expect(result.status == 0, "\(result)")
        let lines = result.stderr.split(separator: "\n")
        for prefix in ["wboot-test: write boot: ok", "wboot-test: readback boot: ok",
                       "wboot-test: read-only mount (alongside the writable one): disk.img equals the original",
                       "wboot-test: pushed the written disk as", "wboot-test: fresh mount of", "wboot-test: passed"] {
            #expect(lines.contains { $0.hasPrefix(prefix) }, "no \"\(prefix)\" line: \(result)")
        }
    }
}

enum BootSupport {
    static var canRun: Bool {
        let fm = FileManager.default
        let tools = ["/usr/bin/qemu-system-x86_64", "/usr/sbin/debugfs", "/bin/busybox", "/usr/bin/fusermount3"]
        return tools.allSatisfy { fm.isExecutableFile(atPath: $0) } && fm.fileExists(atPath: "/dev/fuse")
    }
}
