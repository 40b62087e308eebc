import Foundation
import Testing

/// Where a mount writes and what it mounts over (issue 17): writable directories of distinct
/// mount points never collide, one writable directory serves one mount at a time, a non-empty
/// directory is not hidden, and a dead mount point is named as such.
@Suite(.serialized) struct MountPointSafetyIntegrationTests {
    static let image = Result<PushedImage, any Error> {
        let scratch = try TestEnvironment.scratchDirectory("mountpoint-safety-src")
        let source = scratch + "/disk.img"
        try shell("head -c 3000000 /dev/urandom > \(source) && truncate -s 4M \(source)")
        return try PushedImage.push(source, repository: TestEnvironment.repository("mountpoint-safety"), extra: ["--chunk-size", "1M"])
    }

    /// `W/a/-b` and `W/a-/b` once escaped to the same `writable/…a---b` directory.
    @Test func mountPointsThatOnceEscapedAlikeKeepSeparateDisks() throws {
        let image = try Self.image.get()
        let scratch = try TestEnvironment.scratchDirectory("writable-names")
        defer { TestEnvironment.remove(scratch) }
        let cache = scratch + "/cache"
        let first = scratch + "/w/a/-b", second = scratch + "/w/a-/b"
        for path in [first, second] { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }

        func mount(_ path: String) throws -> CommandResult {
            try imgfs(["mount", "--writable", "--cache-dir", cache, image.reference, path], timeout: 120)
        }
        func unmount(_ path: String) { if MountSupport.isMounted(path) { _ = try? imgfs(["umount", path], timeout: 60) } }
        defer { unmount(first); unmount(second) }

        // Both at once: the second is not refused as "in use", it gets its own directory.
        let a = try mount(first), b = try mount(second)
        #expect(a.status == 0, "\(a)")
        #expect(b.status == 0, "\(b)")
        try shell("printf 'written-through-first' | dd of=\(first)/disk.img bs=1 seek=1000 conv=notrunc,fsync status=none")
        try shell("printf 'written-through-second' | dd of=\(second)/disk.img bs=1 seek=1000 conv=notrunc,fsync status=none")
        unmount(first); unmount(second)

        // After a remount each keeps its own write.
        #expect(try mount(first).status == 0)
        #expect(try mount(second).status == 0)
        #expect(String(decoding: try MountSupport.read(first + "/disk.img", offset: 1000, count: 21), as: UTF8.self) == "written-through-first")
        #expect(String(decoding: try MountSupport.read(second + "/disk.img", offset: 1000, count: 22), as: UTF8.self) == "written-through-second")
        let directories = try FileManager.default.contentsOfDirectory(atPath: cache + "/writable")
        #expect(directories.count == 2, "\(directories)")
    }

    @Test func aWritableDirectoryServesOneMountAtATime() throws {
        let image = try Self.image.get()
        let scratch = try TestEnvironment.scratchDirectory("writable-lock")
        defer { TestEnvironment.remove(scratch) }
        let layer = scratch + "/layer"
        let first = try MountedImage(image.reference, scratch: scratch, cache: scratch + "/cache", extra: ["--writable", "--writable-dir", layer])
        defer { first.unmount() }
        let second = scratch + "/second"
        try FileManager.default.createDirectory(atPath: second, withIntermediateDirectories: true)
        defer { if MountSupport.isMounted(second) { _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", second], timeout: 30) } }

        let refused = try imgfs(["mount", "--writable", "--writable-dir", layer, "--cache-dir", scratch + "/cache", image.reference, second], timeout: 120)
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("\(layer) is in use by another writable mount"), "\(refused)")
        #expect(refused.stderr.contains("imgfs pid"), "\(refused)")
        #expect(!MountSupport.isMounted(second))
        // The foreground path (what a daemon runs) refuses it too.
        let foreground = try imgfs(["mount", "--foreground", "--writable", "--writable-dir", layer, "--cache-dir", scratch + "/cache",
                                    image.reference, second], timeout: 120)
        #expect(foreground.status == 1, "\(foreground)")
        #expect(foreground.stderr.contains("in use by another writable mount"), "\(foreground)")

        // Once the first is unmounted the directory is free again.
        first.unmount()
        let later = try MountedImage(image.reference, scratch: scratch, cache: scratch + "/cache", extra: ["--writable", "--writable-dir", layer])
        later.unmount()
    }

    @Test func aNonEmptyDirectoryIsNotMountedOver() throws {
        let image = try Self.image.get()
        let scratch = try TestEnvironment.scratchDirectory("nonempty")
        defer { TestEnvironment.remove(scratch) }
        let mountpoint = scratch + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        try "keep me".write(toFile: mountpoint + "/notes.txt", atomically: true, encoding: .utf8)
        let result = try imgfs(["mount", "--cache-dir", scratch + "/cache", image.reference, mountpoint], timeout: 120)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("mount point is not empty (it holds 'notes.txt')"), "\(result)")
        #expect(!MountSupport.isMounted(mountpoint))
        #expect(try String(contentsOfFile: mountpoint + "/notes.txt", encoding: .utf8) == "keep me")
    }

    @Test func aDeadMountIsNamedAndUmountClearsIt() throws {
        let image = try Self.image.get()
        let scratch = try TestEnvironment.scratchDirectory("dead-mount")
        defer { TestEnvironment.remove(scratch) }
        let mounted = try MountedImage(image.reference, scratch: scratch)
        defer { mounted.unmount() }
        // The holder would start another server: kill it first, so that the mount dies.
        let status = try mounted.status()
        if let holder = status.holderPid { #expect(kill(holder, SIGKILL) == 0) }
        #expect(kill(status.pid, SIGKILL) == 0)
        // Wait for the kernel to see the daemon gone.
        for _ in 0..<100 where access(mounted.disk, F_OK) == 0 { usleep(50_000) }

        let again = try imgfs(["mount", "--cache-dir", mounted.cache, image.reference, mounted.mountpoint], timeout: 120)
        #expect(again.status == 1, "\(again)")
        #expect(again.stderr.contains("a dead mount is still attached here"), "\(again)")
        #expect(again.stderr.contains("imgfs umount \(mounted.mountpoint)"), "\(again)")

        let umount = try imgfs(["umount", mounted.mountpoint], timeout: 60)
        #expect(umount.status == 0, "\(umount)")
        #expect(!MountSupport.isMounted(mounted.mountpoint))
        let remount = try MountedImage(image.reference, scratch: scratch, cache: mounted.cache)
        try shell("cmp \(remount.disk) \(image.source)")
        remount.unmount()
    }
}
