import Foundation
import Testing

/// Issue 11's hostile registry: a real image served through Tests/FetchTests/Fixtures/
/// hostile_registry.py, which misbehaves in one way per test, and mutated copies of a real image
/// pushed to the test registry. Each case asserts its exact outcome: right bytes, or EIO / a
/// one-line error naming the cause, within a time bound, never a crash or a wrong byte.
@Suite(.serialized, .enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
struct HostileRegistryTests {
    /// One random image per test process: 16 MiB, 12 MiB of data in 1 MiB frames, one frame per
    /// chunk layer (so a layer can be replaced without touching other frames).
    static let image = Result<PushedImage, any Error> {
        let scratch = try TestEnvironment.scratchDirectory("hostile-source")
        let source = scratch + "/disk.img"
        try shell("head -c 12582912 /dev/urandom > \(source) && truncate -s 16M \(source)")
        return try PushedImage.push(source, repository: TestEnvironment.repository("hostile"), extra: ["--chunk-size", "1M"])
    }

    func hostile(_ mode: String, _ extra: [String] = []) throws -> (FixtureServer, String) {
        let registry = try TestRegistry.shared()
        let image = try Self.image.get()
        let server = try FixtureServer("hostile_registry.py", upstream: registry.address, arguments: ["--mode", mode] + extra)
        return (server, image.reference.replacingOccurrences(of: registry.address, with: server.address))
    }

    /// Reads one frame of the mounted disk; the errno it failed with (nil if it read) and the time it took.
    func readFrame(_ mount: MountedImage, _ frame: Int, image: PushedImage) -> (bytes: [UInt8]?, errno: Int32?, seconds: Double) {
        let start = Date()
        do {
            let bytes = try MountSupport.read(mount.disk, offset: UInt64(frame * image.frameSize), count: image.frameSize)
            return (bytes, nil, Date().timeIntervalSince(start))
        } catch let error as ReadFailed {
            return (nil, error.errno, Date().timeIntervalSince(start))
        } catch {
            return (nil, -1, Date().timeIntervalSince(start))
        }
    }

    // MARK: - Range handling

    @Test func aRegistryThatIgnoresRangeAndSendsTheWholeBlobStillServesTheRightBytes() throws {
        let image = try Self.image.get()
        let (server, reference) = try hostile("ignore-range")
        defer { server.stop() }
        let scratch = try TestEnvironment.scratchDirectory("hostile-range")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        try shell("cmp \(image.source) \(mount.disk)", timeout: 300)
        #expect((try server.stats()["ranges_ignored"] ?? 0) > 0, "the registry really ignored Range")
    }

    @Test func aWrongContentRangeIsEIONotWrongBytes() throws {
        let image = try Self.image.get()
        let (server, reference) = try hostile("wrong-content-range")
        defer { server.stop() }
        let scratch = try TestEnvironment.scratchDirectory("hostile-content-range")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        let result = readFrame(mount, 2, image: image)
        #expect(result.bytes == nil)
        #expect(result.errno == EIO)
        #expect(result.seconds < 30)
        let log = try String(contentsOfFile: mount.logFile, encoding: .utf8)
        #expect(log.contains("Content-Range"), "the log says what was wrong")
    }

    @Test func aShortBodyIsEIONotWrongBytes() throws {
        let image = try Self.image.get()
        let (server, reference) = try hostile("short-body")
        defer { server.stop() }
        let scratch = try TestEnvironment.scratchDirectory("hostile-short")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        let result = readFrame(mount, 3, image: image)
        let expected = try MountSupport.read(image.source, offset: UInt64(3 * image.frameSize), count: image.frameSize)
        // The client resumes a cut transfer where it stopped, so it may even assemble the frame;
        // what it may never do is serve a byte that is not the image's.
        if let bytes = result.bytes {
            #expect(bytes == expected)
        } else {
            #expect(result.errno == EIO)
        }
        #expect(result.seconds < 30)
        #expect((try server.stats()["short_bodies"] ?? 0) > 0)
    }

    @Test func aBodyThatStallsForeverGivesEIOWithinTheReadTimeout() throws {
        let image = try Self.image.get()
        let (server, reference) = try hostile("stall")
        defer { server.stop() }
        let scratch = try TestEnvironment.scratchDirectory("hostile-stall")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        let result = readFrame(mount, 4, image: image)
        #expect(result.bytes == nil)
        #expect(result.errno == EIO)
        // The default read timeout: a stalled attempt is not followed by another that would end past it.
        #expect(result.seconds < 30, "took \(result.seconds) s")
        #expect((try server.stats()["stalls"] ?? 0) > 0)
    }

    // MARK: - Manifests

    @Test func aManifestOf100MBIsRefusedQuicklyWithBoundedMemory() throws {
        let (server, reference) = try hostile("huge-manifest")
        defer { server.stop() }
        let scratch = try TestEnvironment.scratchDirectory("hostile-huge")
        defer { TestEnvironment.remove(scratch) }
        try FileManager.default.createDirectory(atPath: scratch + "/mnt", withIntermediateDirectories: true)
        let result = try runCommand("/usr/bin/time", ["-f", "maxrss-kib %M", TestEnvironment.imgfs, "mount", "--cache-dir", scratch + "/cache",
                                                      reference, scratch + "/mnt"], timeout: 60)
        defer { if MountSupport.isMounted(scratch + "/mnt") { _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", scratch + "/mnt"], timeout: 30) } }
        #expect(result.status != 0)
        #expect(result.seconds < 20)
        #expect(result.stderr.contains("larger than the"), "\(result)")
        let rss = result.stderr.split(separator: "\n").last { $0.hasPrefix("maxrss-kib ") }.flatMap { Int($0.dropFirst("maxrss-kib ".count)) }
        let kib = try #require(rss, "\(result)")
        #expect(kib < 100 * 1024, "the manifest was not read whole: \(kib) KiB peak")
    }

    @Test func aManifestWithWrongJSONTypesIsAOneLineError() throws {
        let (server, reference) = try hostile("wrong-types")
        defer { server.stop() }
        let scratch = try TestEnvironment.scratchDirectory("hostile-types")
        defer { TestEnvironment.remove(scratch) }
        try FileManager.default.createDirectory(atPath: scratch + "/mnt", withIntermediateDirectories: true)
        let result = try imgfs(["mount", "--cache-dir", scratch + "/cache", reference, scratch + "/mnt"], timeout: 60)
        defer { if MountSupport.isMounted(scratch + "/mnt") { _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", scratch + "/mnt"], timeout: 30) } }
        #expect(result.status != 0)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result)")
        #expect(result.stderr.contains("is not valid"), "\(result)")
        #expect(result.stderr.contains("size"), "names the field: \(result)")
        #expect((try server.stats()["manifests_mistyped"] ?? 0) > 0)
    }
}
