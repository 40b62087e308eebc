import Foundation
import Testing

/// O_DIRECT, which Swift's Glibc module does not export.
#if arch(arm64)
let directIO: Int32 = 0o200000
#else
let directIO: Int32 = 0o40000
#endif

/// A mount outlives its serving process: the descriptor holder starts another one after a
/// `kill -9` and on `imgfs upgrade`, with the same `/dev/fuse` connection (issue 10).
@Suite(.serialized) struct RestartIntegrationTests {
    /// 40 MiB of random data in a 64 MiB disk (the rest holes), pushed once per test.
    static func pushRandomDisk(_ scratch: String, name: String) throws -> PushedImage {
        let source = scratch + "/disk.img"
        try shell("head -c 41943040 /dev/urandom > \(source) && truncate -s 64M \(source)")
        return try PushedImage.push(source, repository: TestEnvironment.repository(name), extra: ["--chunk-size", "8M"])
    }

    /// A private copy of the binary under test, so that an upgrade can replace it.
    static func privateBinary(_ scratch: String) throws -> String {
        let directory = scratch + "/bin"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try shell("cp \(TestEnvironment.imgfs) \(directory)/imgfs")
        return directory + "/imgfs"
    }

    /// The status once it names a live server other than `previous`.
    static func statusServedByAnother(than previous: Int32?, _ mount: MountedImage) throws -> MountStatusJSON {
        for _ in 0..<200 {
            if let status = try? mount.status(), status.pid != previous, isAlive(status.pid) { return status }
            usleep(50_000)
        }
        return try mount.status()
    }

    /// Where the holder of `mountpoint` listens (MountStatusFiles.holderSocketPath).
    static func holderSocket(_ mountpoint: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in mountpoint.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        let runtime = TestEnvironment.environment["XDG_RUNTIME_DIR"].map { $0 + "/imgfs" }
            ?? (geteuid() == 0 ? "/run/imgfs" : "/tmp/imgfs-\(geteuid())")
        return runtime + "/holders/" + String(repeating: "0", count: 16 - hex.count) + hex + ".sock"
    }

    static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[close...].hasPrefix(") Z")
    }

    /// One 4 KiB read that bypasses the page cache, so it reaches the daemon; its duration.
    static func timedDirectRead(_ path: String, offset: UInt64) throws -> Double {
        let fd = open(path, O_RDONLY | directIO)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        var buffer: UnsafeMutableRawPointer?
        guard posix_memalign(&buffer, 4096, 4096) == 0, let buffer else { throw POSIXError(.ENOMEM) }
        defer { free(buffer) }
        let start = Date()
        let count = pread(fd, buffer, 4096, off_t(offset))
        let elapsed = Date().timeIntervalSince(start)
        guard count == 4096 else { throw POSIXError(POSIXErrorCode(rawValue: count < 0 ? errno : EIO) ?? .EIO) }
        return elapsed
    }

    /// `cmp` of the whole disk against its source in a loop, the page cache dropped before each
    /// pass, until `stop` exists; then one more pass. One line per pass in `log`.
    static func startReader(source: String, disk: String, stop: String, log: String) throws -> Process {
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/bin/bash")
        reader.arguments = ["-c", """
            pass=0
            while :; do
                last=0; [ -e \(stop) ] && last=1
                pass=$((pass + 1))
                echo 3 > /proc/sys/vm/drop_caches
                if out=$(cmp \(source) \(disk) 2>&1); then echo "pass $pass ok"; else echo "pass $pass FAIL: $out"; fi
                [ $last = 1 ] && break
            done
            """]
        reader.standardOutput = FileHandle(forWritingAtPath: log) ?? FileHandle.nullDevice
        reader.standardError = reader.standardOutput
        try reader.run()
        return reader
    }

    @Test func aReaderSeesNoErrorWhileTheServerIsKilledFiveTimesAndUpgradedTwice() throws {
        let scratch = try TestEnvironment.scratchDirectory("restart")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.pushRandomDisk(scratch, name: "restart")
        let binary = try Self.privateBinary(scratch)
        // Cold: the first passes fetch from the registry while servers are killed.
        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"], executable: binary)
        defer { mount.unmount() }
        var status = try mount.status()
        #expect(status.holderPid != nil && status.holderPid != status.pid, "a holder keeps the mount, another process serves it")
        #expect(status.restarts == 0 && status.upgrades == 0)

        let stop = scratch + "/stop", log = scratch + "/reader.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let reader = try Self.startReader(source: image.source, disk: mount.disk, stop: stop, log: log)
        defer { if reader.isRunning { reader.terminate() } }

        var events = Array(repeating: "kill", count: 5) + ["upgrade", "upgrade"]
        events.shuffle()
        var kills = 0, upgrades = 0
        var restartSeconds: [Double] = []
        for event in events {
            usleep(UInt32.random(in: 200_000...1_500_000))
            let before = try mount.status()
            if event == "kill" {
                kill(before.pid, SIGKILL)
                kills += 1
                // Served again: a read that must reach a daemon returns, whichever part of the disk.
                let offset = UInt64.random(in: 0..<(image.diskSize / 4096)) * 4096
                restartSeconds.append(try Self.timedDirectRead(mount.disk, offset: offset))
            } else {
                // A new binary on disk, installed the usual way: a new file renamed over the old.
                let oldExecutable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(before.pid)/exe")) ?? ""
                try shell("cp \(TestEnvironment.imgfs) \(binary).new && mv -f \(binary).new \(binary)")
                let result = try runCommand(binary, ["upgrade", mount.mountpoint], timeout: 120)
                #expect(result.status == 0, "imgfs upgrade: \(result)")
                upgrades += 1
                #expect(!oldExecutable.hasSuffix("(deleted)"), "the old server ran the binary then on disk")
            }
            status = try Self.statusServedByAnother(than: before.pid, mount)
            #expect(status.pid != before.pid)
            #expect(status.restarts == UInt32(kills), "restarts counted")
            #expect(status.upgrades == UInt32(upgrades), "upgrades counted")
            let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(status.pid)/exe")) ?? ""
            #expect(executable == binary, "the server runs the binary now on disk, not \(executable)")
            #expect(status.version?.isEmpty == false)
        }
        FileManager.default.createFile(atPath: stop, contents: nil)
        reader.waitUntilExit()
        let passes = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(passes.count >= 2, "the reader completed passes")
        #expect(passes.allSatisfy { $0.hasSuffix(" ok") }, "every pass read the whole disk without an error or a wrong byte: \(passes.filter { !$0.hasSuffix(" ok") })")
        #expect(restartSeconds.count == 5)
        #expect(restartSeconds.allSatisfy { $0 < 1 }, "each restart served again within 1 s: \(restartSeconds)")
        let logText = try String(contentsOfFile: mount.logFile, encoding: .utf8)
        #expect(logText.components(separatedBy: "holder: serving again").count - 1 == 5)
    }

    @Test func killingTheHolderIsReportedAndUmountStillCleansUp() throws {
        let scratch = try TestEnvironment.scratchDirectory("restart-holder")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.pushRandomDisk(scratch, name: "restart-holder")
        let mount = try MountedImage(image.reference, scratch: scratch)
        defer { mount.unmount() }
        let before = try mount.status()
        let holder = try #require(before.holderPid)
        kill(holder, SIGKILL)
        for _ in 0..<100 where Self.isAlive(holder) { usleep(20_000) }

        // The server goes on serving, and both status and the server's log say what was lost.
        try shell("echo 3 > /proc/sys/vm/drop_caches; cmp \(image.source) \(mount.disk)", timeout: 600)
        let table = try imgfs(["status", mount.mountpoint])
        #expect(table.status == 0)
        #expect(table.stderr.contains("descriptor holder (pid \(holder)) is gone"), "status warns: \(table.stderr)")
        let after = try mount.status()
        #expect(after.holderAlive == false)
        #expect(after.pid == before.pid)
        let logText = try String(contentsOfFile: mount.logFile, encoding: .utf8)
        #expect(logText.contains("descriptor holder (pid \(holder)) is gone"))

        let result = try imgfs(["umount", mount.mountpoint], timeout: 60)
        #expect(result.status == 0, "umount: \(result)")
        #expect(!MountSupport.isMounted(mount.mountpoint))
        for _ in 0..<100 where Self.isAlive(before.pid) { usleep(50_000) }
        #expect(!Self.isAlive(before.pid), "the server exits with the mount")

        // Holder and server both killed: the mount is dead (ENOTCONN), and umount removes it.
        let second = try MountedImage(image.reference, scratch: scratch)
        defer { second.unmount() }
        let status = try second.status()
        kill(try #require(status.holderPid), SIGKILL)
        kill(status.pid, SIGKILL)
        for _ in 0..<100 where Self.isAlive(status.pid) { usleep(20_000) }
        let socket = Self.holderSocket(second.mountpoint)
        #expect(FileManager.default.fileExists(atPath: socket), "the killed holder left \(socket)")
        let dead = try imgfs(["umount", second.mountpoint], timeout: 60)
        #expect(dead.status == 0, "umount of a dead mount: \(dead)")
        #expect(!MountSupport.isMounted(second.mountpoint))
        #expect(!FileManager.default.fileExists(atPath: socket), "umount removed the holder's socket")
    }

    @Test func fsyncedWritesOfAWritableMountSurviveAKillAndPushUploadsOnlyTheChangedChunk() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("restart-writable")
        defer { TestEnvironment.remove(scratch) }
        // 24 MiB of random data in a 32 MiB disk, 8 MiB chunks: chunks 0-2 stored, chunk 3 all holes.
        let source = scratch + "/disk.img"
        try shell("head -c 25165824 /dev/urandom > \(source) && truncate -s 32M \(source)")
        let base = try PushedImage.push(source, repository: TestEnvironment.repository("restart-writable"), extra: ["--chunk-size", "8M"])
        let layer = scratch + "/layer"
        let mount = try MountedImage(base.reference, scratch: scratch, extra: ["--writable", "--writable-dir", layer])
        defer { mount.unmount() }
        let expected = scratch + "/expected.img"
        try shell("cp \(source) \(expected)")
        // Two writes inside chunk 1, each fsync'ed, each followed by a kill of the server.
        for (round, offset) in [(1, UInt64(9 << 20) + 123), (2, UInt64(12 << 20) + 4000)] {
            let marker = "imgfs-restart-marker-\(round)-\(UUID().uuidString)"
            try shell("printf '%s' '\(marker)' | dd of=\(mount.disk) bs=1 seek=\(offset) conv=notrunc,fsync status=none")
            try shell("printf '%s' '\(marker)' | dd of=\(expected) bs=1 seek=\(offset) conv=notrunc status=none")
            let before = try mount.status()
            kill(before.pid, SIGKILL)
            let after = try Self.statusServedByAnother(than: before.pid, mount)
            #expect(after.restarts == UInt32(round))
            try shell("echo 3 > /proc/sys/vm/drop_caches")
            let back = try MountSupport.read(mount.disk, offset: offset, count: marker.utf8.count)
            #expect(String(decoding: back, as: UTF8.self) == marker, "the fsync'ed write is there after the restart")
        }
        try shell("cmp \(mount.disk) \(expected)", timeout: 600)

        // The restarted server's layer pushes as any written mount: only chunk 1 changed.
        let result = try imgfs(["push", "--quiet", "--json", mount.mountpoint, "\(registry.address)/\(base.repository):v2"], timeout: 600)
        guard result.status == 0 else { throw ShellFailed(script: "imgfs push MOUNTPOINT", result: result) }
        let summary = try JSONDecoder().decode(WritableIntegrationTests.PushSummary.self, from: Data(result.stdout.utf8))
        #expect(summary.blobsUploaded == 2, "the changed chunk layer and the index")
        #expect(summary.chunkLayersReused == 2)
        let fresh = try MountedImage("\(registry.address)/\(base.repository):v2", scratch: scratch)
        defer { fresh.unmount() }
        try shell("cmp \(fresh.disk) \(expected)", timeout: 600)

        // An upgrade of a writable mount stops the old server first and keeps the disk.
        let before = try mount.status()
        let upgrade = try imgfs(["upgrade", mount.mountpoint], timeout: 120)
        #expect(upgrade.status == 0, "upgrade: \(upgrade)")
        let after = try Self.statusServedByAnother(than: before.pid, mount)
        #expect(after.upgrades == 1)
        try shell("echo 3 > /proc/sys/vm/drop_caches; cmp \(mount.disk) \(expected)", timeout: 600)
    }

    /// Kernels before 6.9 cannot resend what a dead server had read. The holder then aborts the
    /// mount: a read in flight fails at once instead of hanging, and umount cleans up. (This
    /// kernel can resend; IMGFS_ASSUME_NO_RESEND makes the holder act as on an older one.)
    @Test func withoutResendAReadInFlightFailsInsteadOfHanging() throws {
        let scratch = try TestEnvironment.scratchDirectory("restart-noresend")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.pushRandomDisk(scratch, name: "restart-noresend")
        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"],
                                     environment: ["IMGFS_ASSUME_NO_RESEND": "1"])
        defer { mount.unmount() }
        let refused = try imgfs(["upgrade", mount.mountpoint], timeout: 60)
        #expect(refused.status != 0 && refused.stderr.contains("FUSE_NOTIFY_RESEND"), "an upgrade is refused: \(refused)")

        let stop = scratch + "/stop", log = scratch + "/reader.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        // Passes back to back until told to stop, so that one is in flight whenever the server
        // dies (a single pass of this small disk can end before the kill on a quick machine).
        let reader = try Self.startReader(source: image.source, disk: mount.disk, stop: stop, log: log)
        defer {
            FileManager.default.createFile(atPath: stop, contents: nil)
            if reader.isRunning { reader.terminate() }
        }
        usleep(300_000)
        let status = try mount.status()
        kill(status.pid, SIGKILL)
        var logText = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            logText = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if logText.contains("FAIL") { break }
            usleep(50_000)
        }
        #expect(logText.contains("FAIL"), "the pass in flight failed: \(logText)")
        FileManager.default.createFile(atPath: stop, contents: nil)
        let exitDeadline = Date().addingTimeInterval(30)
        while reader.isRunning && Date() < exitDeadline { usleep(50_000) }
        #expect(!reader.isRunning, "the reader did not hang")
        let daemonLog = try String(contentsOfFile: try #require(status.logFile), encoding: .utf8)
        #expect(daemonLog.contains("the mount is aborted so that they fail instead of hanging"))
        // The holder detached the aborted mount itself; umount says so.
        #expect(!MountSupport.isMounted(mount.mountpoint))
        let result = try imgfs(["umount", mount.mountpoint], timeout: 60)
        #expect(result.stderr.contains("is not mounted"), "umount: \(result)")
        for pid in [status.pid] + (status.holderPid.map { [$0] } ?? []) {
            for _ in 0..<100 where Self.isAlive(pid) { usleep(50_000) }
            #expect(!Self.isAlive(pid), "pid \(pid) exited")
        }
    }

    @Test func anUpgradeToABinaryThatCannotStartIsRefusedAndTheOldServerServesOn() throws {
        let scratch = try TestEnvironment.scratchDirectory("restart-badupgrade")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.pushRandomDisk(scratch, name: "restart-badupgrade")
        let binary = try Self.privateBinary(scratch)
        let mount = try MountedImage(image.reference, scratch: scratch, executable: binary)
        defer { mount.unmount() }
        let before = try mount.status()
        try shell("printf '#!/bin/sh\\nexit 3\\n' > \(binary).new && chmod +x \(binary).new && mv -f \(binary).new \(binary)")
        let result = try imgfs(["upgrade", mount.mountpoint], timeout: 120)
        #expect(result.status != 0)
        #expect(result.stderr.contains("exit status 3"), "the reason is given: \(result)")
        let after = try mount.status()
        #expect(after.pid == before.pid && after.upgrades == 0, "the old server still serves")
        try shell("echo 3 > /proc/sys/vm/drop_caches; cmp \(image.source) \(mount.disk)", timeout: 600)
    }
}
