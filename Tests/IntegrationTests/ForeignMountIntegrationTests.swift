import Foundation
import Testing

/// Issue 5's "Must show" for `imgfs mount` of images without a frame index, against the real
/// registry, real FUSE mounts and the real binary: each peer layout mounts lazily (a read fetches
/// the one layer it falls in) and serves the generator's exact bytes, nvram.bin and config.json;
/// its `imgfs convert` to the imgfs format mounts to the same bytes; a tampered layer gives EIO
/// for reads in that layer only. Every mount is unmounted, even on failure.
@Suite(.serialized, .enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
struct ForeignMountIntegrationTests {
    static let partSize = 2 * 1024 * 1024
    static let parts = 8

    /// A disk of this suite's own (small, so four formats and their conversions stay quick).
    static let sharedDisk = Result<String, any Error> {
        let directory = try TestEnvironment.scratchDirectory("foreign-source")
        return try PeerImageFixtures.makeDisk(in: directory, partSize: partSize, parts: parts, seed: 5005)
    }

    func expectSameFiles(_ mount: MountedImage, source: String) throws {
        try shell("cmp \(source) \(mount.disk)", timeout: 600)
        #expect(try Data(contentsOf: URL(fileURLWithPath: mount.mountpoint + "/nvram.bin")) == Data(PeerImageFixtures.nvram))
        #expect(try Data(contentsOf: URL(fileURLWithPath: mount.mountpoint + "/config.json")) == Data(PeerImageFixtures.vmConfig))
    }

    @Test(arguments: PeerFormat.allCases)
    func mountServesTheSourceBytesAndSoDoesItsConversion(_ format: PeerFormat) throws {
        let registry = try TestRegistry.shared()
        let source = try Self.sharedDisk.get()
        let repository = TestEnvironment.repository("foreign-\(format.rawValue)")
        let reference = "\(registry.address)/\(repository):v1"
        let digests = try PeerImageFixtures(registry: registry).push(format, disk: source, repository: repository, tag: "v1", partSize: Self.partSize)
        let scratch = try TestEnvironment.scratchDirectory("foreign-\(format)")
        defer { TestEnvironment.remove(scratch) }
        let log = RegistryLog(registry)

        let cache = scratch + "/cache"
        do {
            let mount = try MountedImage(reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            // Lazy: one 4 KiB read in the last part fetches that layer and no other.
            let offset = UInt64((Self.parts - 1) * Self.partSize + 4096)
            let mark = log.mark()
            let bytes = try MountSupport.read(mount.disk, offset: offset, count: 4096)
            #expect(bytes == (try MountSupport.read(source, offset: offset, count: 4096)))
            let fetched = log.blobDigests(since: mark, repository: repository)
            if format == .lumeSingle {
                #expect(fetched == [digests[0]], "the single disk layer: \(fetched)")
            } else {
                #expect(fetched == [digests[Self.parts - 1]], "only the last part's layer: \(fetched)")
            }

            try expectSameFiles(mount, source: source)
            let status = try mount.settledStatus()
            #expect(status.statistics.verificationFailures == 0)
            #expect(status.statistics.readErrors == 0)
            #expect(status.cachedFrames == status.totalFrames, "every layer verified and cached")
            #expect(status.diskSize == UInt64(try FileManager.default.attributesOfItem(atPath: source)[.size] as? Int ?? 0))
        }

        // Mounted again with the same cache: served from the verified layers, no disk blob fetched.
        do {
            let mark = log.mark()
            let again = try MountedImage(reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { again.unmount() }
            try shell("cmp \(source) \(again.disk)", timeout: 600)
            let blobs = log.requests(since: mark, repository: repository).filter(\.isBlob).compactMap(\.digest)
            #expect(Set(blobs).isDisjoint(with: Set(digests)), "disk layers fetched again: \(blobs)")
        }

        // Converted to the imgfs format, the image mounts frame by frame to the same bytes.
        let converted = "\(registry.address)/\(repository):imgfs"
        let result = try imgfs(["convert", "--quiet", "--chunk-size", "4M", reference, converted], timeout: 600)
        try #require(result.status == 0, "\(result)")
        let raw = try shell("skopeo inspect --raw --tls-verify=false docker://\(converted)")
        #expect(raw.contains("application/vnd.imgfs.disk.index.v1"))
        let mount = try MountedImage(converted, scratch: scratch)
        defer { mount.unmount() }
        try expectSameFiles(mount, source: source)
    }

    @Test(arguments: [PeerFormat.tart, .lumeChunked])
    func aTamperedLayerGivesEIOForReadsInItOnly(_ format: PeerFormat) throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("foreign-tamper")
        defer { TestEnvironment.remove(scratch) }
        // A disk of its own: the registry stores blobs once for all repositories, and this test breaks one.
        let partSize = 1024 * 1024
        let source = try PeerImageFixtures.makeDisk(in: scratch, partSize: partSize, parts: 8, seed: UInt64.random(in: 1000...UInt64(Int64.max)))
        let repository = TestEnvironment.repository("foreign-tamper")
        let digests = try PeerImageFixtures(registry: registry).push(format, disk: source, repository: repository, tag: "v1", partSize: partSize)
        // Part 6 holds data of its own (parts 1/2 and 3/4 share blobs).
        let victim = digests[6]
        let path = try MountSupport.blobDataPath(registry, victim)
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        try shell("printf 'XXXXXXXX' | dd of=\(path) bs=1 seek=\(size / 2) conv=notrunc status=none")

        let mount = try MountedImage("\(registry.address)/\(repository):v1", scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        do {
            _ = try MountSupport.read(mount.disk, offset: UInt64(6 * partSize + 8192), count: 4096)
            Issue.record("a read in the tampered layer succeeded")
        } catch let error as ReadFailed {
            #expect(error.errno == EIO, "\(error)")
        }
        // The layers around it are served, byte for byte.
        for part in [0, 5, 7] {
            let offset = UInt64(part * partSize + 4096)
            #expect(try MountSupport.read(mount.disk, offset: offset, count: 65536) == (try MountSupport.read(source, offset: offset, count: 65536)), "part \(part)")
        }
        let status = try mount.settledStatus()
        #expect(status.statistics.verificationFailures >= 1)
        #expect(status.statistics.readErrors >= 1)
        let logText = (try? String(contentsOfFile: mount.logFile, encoding: .utf8)) ?? ""
        #expect(logText.contains(victim), "the log names the blob \(victim)")
        let hex = victim.replacingOccurrences(of: "sha256:", with: "")
        let cached = (try? FileManager.default.contentsOfDirectory(atPath: mount.cache + "/segments")) ?? []
        #expect(!cached.contains { $0.hasPrefix(hex) }, "nothing of the tampered layer is cached: \(cached)")
    }

    @Test func withTheRegistryStoppedARemountServesTheCachedLayers() throws {
        let scratch = try TestEnvironment.scratchDirectory("foreign-offline")
        defer { TestEnvironment.remove(scratch) }
        let registry = try PrivateRegistry(directory: scratch + "/registry")
        defer { registry.stop() }
        let source = try Self.sharedDisk.get()
        let repository = TestEnvironment.repository("foreign-offline")
        let peer = TestRegistry(address: registry.address, storageDirectory: registry.directory + "/data", logFile: registry.directory + "/registry.log")
        try PeerImageFixtures(registry: peer).push(.lumeLegacy, disk: source, repository: repository, tag: "v1", partSize: Self.partSize)
        let reference = "\(registry.address)/\(repository):v1"
        let cache = scratch + "/cache"
        do {
            let mount = try MountedImage(reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            try shell("cat \(mount.disk) > /dev/null", timeout: 600)
        }
        registry.stop()
        // Manifest, legacy config blob, nvram and config.json from the metadata store; layers from the cache.
        let mount = try MountedImage(reference, scratch: scratch, cache: cache)
        defer { mount.unmount() }
        try expectSameFiles(mount, source: source)
        #expect(try mount.status().offline)
    }
}
