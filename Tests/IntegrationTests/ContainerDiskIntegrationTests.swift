import Fetch
import Foundation
import OCI
import Testing
import Verity

/// Issue 13: KubeVirt containerDisks, built here as KubeVirt's tooling builds them (the disk under
/// `/disk/` in an ordinary tar+gzip container layer, owned 107:107), pushed to the real registry,
/// then mounted, pulled and converted by the real binary and compared byte for byte with the disk
/// they were made from; `convert --format containerdisk` writes one that reads back the same.
@Suite(.serialized, .enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
struct ContainerDiskIntegrationTests {
    enum Case: String, CaseIterable, CustomStringConvertible {
        /// GNU tar's default format, Docker media types, the disk as `/disk/disk.img`.
        case raw
        /// PAX format with GNU sparse 1.0 members (`tar --sparse`): the holes are not stored.
        case rawSparse = "raw-sparse"
        /// `qemu-img convert -O qcow2`, as `/disk/fedora.qcow2` in an OCI image.
        case qcow2

        var description: String { rawValue }
        var fileName: String { self == .qcow2 ? "disk.qcow2" : "disk.img" }
    }

    static var hasQemuImg: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-img") }

    /// The disk file of `testCase`, and the image pushed from it.
    /// `raw`: the raw disk to make it of (default: a generated 8 MiB one).
    static func makeImage(_ testCase: Case, scratch: String, repository: String, registry: TestRegistry? = nil,
                          raw: String? = nil) throws -> (disk: String, reference: String, layer: String) {
        let registry = try registry ?? TestRegistry.shared()
        let raw = try raw ?? PeerImageFixtures.makeDisk(in: scratch, partSize: 1 << 20, parts: 8, seed: UInt64.random(in: 1...UInt64(Int64.max)))
        let root = scratch + "/root"
        try shell("mkdir -p \(root)/disk")
        let member: String
        switch testCase {
        case .raw, .rawSparse:
            member = "disk/disk.img"
            try shell("cp --sparse=always \(raw) \(root)/\(member)")
        case .qcow2:
            member = "disk/fedora.qcow2"
            try shell("qemu-img convert -f raw -O qcow2 \(raw) \(root)/\(member)")
        }
        let flags = testCase == .rawSparse ? "--format=posix --sparse --sparse-version=1.0" : "--format=gnu"
        try shell("chmod 0440 \(root)/\(member) && tar \(flags) --owner=107 --group=107 -C \(root) -cf \(scratch)/layer.tar disk && gzip -1 -n -k \(scratch)/layer.tar")
        let tar = [UInt8](try Data(contentsOf: URL(fileURLWithPath: scratch + "/layer.tar")))
        let layer = [UInt8](try Data(contentsOf: URL(fileURLWithPath: scratch + "/layer.tar.gz")))
        let config = Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["\#(SHA256Hasher.digest(tar))"]},"config":{}}"#.utf8)
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        for blob in [config, layer] {
            try client.uploadBlob(repository, digest: SHA256Hasher.digest(blob), size: Int64(blob.count), body: .bytes(blob))
        }
        let docker = testCase == .raw
        let manifest = Manifest(mediaType: docker ? .dockerManifest : .ociManifest,
                                config: Descriptor(mediaType: docker ? "application/vnd.docker.container.image.v1+json" : .ociConfig,
                                                   digest: SHA256Hasher.digest(config), size: Int64(config.count)),
                                layers: [Descriptor(mediaType: docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip" : .ociLayerGzip,
                                                    digest: SHA256Hasher.digest(layer), size: Int64(layer.count))])
        try client.putManifest(repository, reference: "v1", bytes: ManifestEncoding.encode(manifest), mediaType: docker ? .dockerManifest : .ociManifest)
        return (root + "/" + member, "\(registry.address)/\(repository):v1", SHA256Hasher.digest(layer).description)
    }

    @Test(arguments: Case.allCases)
    func mountPullAndConvertServeTheDiskByteForByte(_ testCase: Case) throws {
        if testCase == .qcow2 && !Self.hasQemuImg && !TestEnvironment.isCI { return }
        let scratch = try TestEnvironment.scratchDirectory("cdisk-\(testCase)")
        defer { TestEnvironment.remove(scratch) }
        let repository = TestEnvironment.repository("cdisk-\(testCase)")
        let (disk, reference, _) = try Self.makeImage(testCase, scratch: scratch, repository: repository)

        do {
            let mount = try MountedImage(reference, scratch: scratch)
            defer { mount.unmount() }
            #expect(try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint) == [testCase.fileName])
            try shell("cmp \(disk) \(mount.mountpoint)/\(testCase.fileName)", timeout: 600)
            if testCase == .qcow2 {
                // What a VM would do with it: qemu reads the mounted file as qcow2.
                try shell("qemu-img compare -f qcow2 -F qcow2 \(disk) \(mount.mountpoint)/disk.qcow2")
            }
            let status = try mount.settledStatus()
            #expect(status.statistics.verificationFailures == 0)
            #expect(status.statistics.readErrors == 0)
        }

        let pulled = scratch + "/vm"
        let pull = try imgfs(["pull", "--quiet", reference, pulled], timeout: 600)
        try #require(pull.status == 0, "\(pull)")
        try shell("cmp \(disk) \(pulled)/\(testCase.fileName)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: pulled).filter { !$0.hasPrefix(".") } == [testCase.fileName])

        let registry = try TestRegistry.shared()
        let back = "\(registry.address)/\(repository):back"
        if testCase == .qcow2 {
            // A qcow2 disk stays a containerDisk: converting it to a raw-disk format is refused, named.
            let refused = try imgfs(["convert", "--quiet", reference, "\(registry.address)/\(repository):imgfs"], timeout: 600)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("qcow2"), "\(refused)")
            let converted = try imgfs(["convert", "--quiet", "--format", "containerdisk", reference, back], timeout: 600)
            try #require(converted.status == 0, "\(converted)")
        } else {
            // containerDisk → imgfs → containerDisk.
            let imgfsReference = "\(registry.address)/\(repository):imgfs"
            let toImgfs = try imgfs(["convert", "--quiet", "--chunk-size", "4M", reference, imgfsReference], timeout: 600)
            try #require(toImgfs.status == 0, "\(toImgfs)")
            let mount = try MountedImage(imgfsReference, scratch: scratch)
            defer { mount.unmount() }
            try shell("cmp \(disk) \(mount.disk)", timeout: 600)
            let toDisk = try imgfs(["convert", "--quiet", "--format", "containerdisk", imgfsReference, back], timeout: 600)
            try #require(toDisk.status == 0, "\(toDisk)")
        }
        try expectKubeVirtLayout(back, repository: repository, fileName: testCase.fileName, scratch: scratch)
        let mount = try MountedImage(back, scratch: scratch)
        defer { mount.unmount() }
        try shell("cmp \(disk) \(mount.mountpoint)/\(testCase.fileName)", timeout: 600)
    }

    /// What `convert --format containerdisk` wrote is what KubeVirt and container runtimes expect:
    /// one tar+gzip layer holding `disk/` and `disk/<file>` owned 107:107, read-only, and a config
    /// whose diff ID is the digest of the uncompressed layer.
    func expectKubeVirtLayout(_ reference: String, repository: String, fileName: String, scratch: String) throws {
        let registry = try TestRegistry.shared()
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        let fetched = try client.manifest(repository, reference: "back")
        let manifest = try ManifestEncoding.decode(Manifest.self, from: fetched.bytes)
        try #require(manifest.layers.count == 1)
        #expect(manifest.layers[0].mediaType == .ociLayerGzip)
        #expect(manifest.config.mediaType == .ociConfig)
        let layer = try client.blob(repository, digest: manifest.layers[0].digest, maxSize: 1 << 30)
        try Data(layer).write(to: URL(fileURLWithPath: scratch + "/back.tar.gz"))
        let listing = try shell("tar --numeric-owner -tvzf \(scratch)/back.tar.gz")
        let lines = listing.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        try #require(lines.count == 2, "\(listing)")
        #expect(lines[0].first == "dr-xr-xr-x" && lines[0][1] == "107/107" && lines[0].last == "disk/", "\(listing)")
        #expect(lines[1].first == "-r--r--r--" && lines[1][1] == "107/107" && lines[1].last == "disk/\(fileName)"[...], "\(listing)")
        let tar = try shell("gzip -dc \(scratch)/back.tar.gz | sha256sum | cut -d' ' -f1").trimmingCharacters(in: .whitespacesAndNewlines)
        let config = try client.blob(repository, digest: manifest.config.digest, maxSize: 1 << 20)
        let text = String(decoding: config, as: UTF8.self)
        #expect(text.contains("\"diff_ids\":[\"sha256:\(tar)\"]"), "\(text)")
        #expect(text.contains("\"os\":\"linux\""), "\(text)")
    }

    @Test func aTamperedLayerGivesEIOCachesNothingAndFailsThePull() throws {
        let scratch = try TestEnvironment.scratchDirectory("cdisk-tamper")
        defer { TestEnvironment.remove(scratch) }
        let registry = try TestRegistry.shared()
        // A disk of its own (random seed): the registry stores each blob once, and this test breaks one.
        let (_, reference, layer) = try Self.makeImage(.raw, scratch: scratch, repository: TestEnvironment.repository("cdisk-tamper"))
        let path = try MountSupport.blobDataPath(registry, layer)
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        // Past the start the mount reads to find the disk's header: that part stays intact.
        try shell("printf 'XXXXXXXX' | dd of=\(path) bs=1 seek=\(size * 3 / 4) conv=notrunc status=none")

        let mount = try MountedImage(reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint) == ["disk.img"])
        do {
            _ = try MountSupport.read(mount.disk, offset: 0, count: 4096)
            Issue.record("a read of a tampered containerDisk succeeded")
        } catch let error as ReadFailed {
            #expect(error.errno == EIO, "\(error)")
        }
        let status = try mount.settledStatus()
        #expect(status.statistics.verificationFailures >= 1)
        let logText = (try? String(contentsOfFile: mount.logFile, encoding: .utf8)) ?? ""
        #expect(logText.contains(layer), "the log names the blob \(layer)")
        let cached = (try? FileManager.default.contentsOfDirectory(atPath: mount.cache + "/segments")) ?? []
        #expect(!cached.contains { $0.hasPrefix(layer.replacingOccurrences(of: "sha256:", with: "")) }, "nothing of it is cached: \(cached)")

        let pulled = scratch + "/vm"
        let pull = try imgfs(["pull", "--quiet", reference, pulled], timeout: 600)
        #expect(pull.status != 0)
        #expect(pull.stderr.contains(layer), "\(pull)")
        #expect(!FileManager.default.fileExists(atPath: pulled + "/disk.img"))
    }

    @Test func withTheRegistryStoppedAContainerDiskRemountsFromTheCache() throws {
        let scratch = try TestEnvironment.scratchDirectory("cdisk-offline")
        defer { TestEnvironment.remove(scratch) }
        let registry = try PrivateRegistry(directory: scratch + "/registry")
        defer { registry.stop() }
        let peer = TestRegistry(address: registry.address, storageDirectory: registry.directory + "/data", logFile: registry.directory + "/registry.log")
        let (disk, reference, _) = try Self.makeImage(.qcow2, scratch: scratch, repository: TestEnvironment.repository("cdisk-offline"), registry: peer)
        let cache = scratch + "/cache"
        do {
            let mount = try MountedImage(reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            try shell("cmp \(disk) \(mount.mountpoint)/disk.qcow2", timeout: 600)
        }
        registry.stop()
        // The manifest and the start of the layer from the metadata store; the disk from the cache.
        let mount = try MountedImage(reference, scratch: scratch, cache: cache)
        defer { mount.unmount() }
        try shell("cmp \(disk) \(mount.mountpoint)/disk.qcow2", timeout: 600)
        #expect(try mount.status().offline)
    }

    /// Issue 13's boot: the test VM (contrib/vm, small) as a containerDisk (the Debian kernel and a
    /// small root file system), indexed with `imgfs index`, then booted under TCG from a cold mount's `MOUNTPOINT/disk.img`
    /// (raw) or `disk.qcow2` (qemu `-drive format=qcow2`), read frame by frame through the span
    /// index; the guest checks the files it reads, and the served disk is the original.
    @Test(.enabled(if: BootSupport.canRun || TestEnvironment.isCI, "needs qemu-system-x86_64, debugfs, busybox-static"),
          arguments: [Case.raw, .qcow2])
    func aVMBootsFromAMountedContainerDisk(_ testCase: Case) throws {
        if testCase == .qcow2 && !Self.hasQemuImg && !TestEnvironment.isCI { return }
        let scratch = try TestEnvironment.scratchDirectory("cdisk-boot-\(testCase)")
        defer { TestEnvironment.remove(scratch) }
        let contrib = TestEnvironment.repositoryRoot + "/contrib/vm"
        let vm = try shell("PAYLOAD_MB=16 READ_MB=8 VM_DISK_SIZE=512M \(contrib)/cached-vm.sh", timeout: 900)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let (source, reference, _) = try Self.makeImage(testCase, scratch: scratch, repository: TestEnvironment.repository("cdisk-boot-\(testCase)"),
                                                        raw: vm + "/disk.img")
        // Indexed first: the cold mount reads the disk in frames through the span index.
        let indexed = try imgfs(["index", "--quiet", reference], timeout: 600)
        try #require(indexed.status == 0, "\(indexed)")
        let mount = try MountedImage(reference, scratch: scratch)
        defer { mount.unmount() }
        #expect(try mount.status().readUnit == "spans")
        let disk = mount.mountpoint + "/" + testCase.fileName
        let boot = try runCommand(contrib + "/boot.sh", [disk, "--config", vm + "/config.json", "--log", scratch + "/console.log"], timeout: 900)
        #expect(boot.status == 0, "\(boot)")
        #expect(boot.stderr.contains("boot: ok"), "\(boot)")
        try shell("cmp \(source) \(disk)", timeout: 600)
        let status = try mount.settledStatus()
        #expect(status.readUnit == "spans")
        #expect(status.statistics.verificationFailures == 0 && status.statistics.readErrors == 0)
    }

    @Test func aLayerWithTwoDisksIsRefusedNamingBothAndNoByteIsServed() throws {
        let scratch = try TestEnvironment.scratchDirectory("cdisk-two")
        defer { TestEnvironment.remove(scratch) }
        let registry = try TestRegistry.shared()
        let repository = TestEnvironment.repository("cdisk-two")
        try shell("""
            mkdir -p \(scratch)/a/disk \(scratch)/b/disk && head -c 100000 /dev/urandom > \(scratch)/a/disk/disk.img \
            && head -c 5000 /dev/urandom > \(scratch)/b/disk/other.img \
            && tar -C \(scratch)/a -czf \(scratch)/a.tgz disk && tar -C \(scratch)/b -czf \(scratch)/b.tgz disk
            """)
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        let config = Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.utf8)
        var layers = [Descriptor]()
        for name in ["a", "b"] {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(scratch)/\(name).tgz")))
            try client.uploadBlob(repository, digest: SHA256Hasher.digest(bytes), size: Int64(bytes.count), body: .bytes(bytes))
            layers.append(Descriptor(mediaType: .ociLayerGzip, digest: SHA256Hasher.digest(bytes), size: Int64(bytes.count)))
        }
        try client.uploadBlob(repository, digest: SHA256Hasher.digest(config), size: Int64(config.count), body: .bytes(config))
        let manifest = Manifest(config: Descriptor(mediaType: .ociConfig, digest: SHA256Hasher.digest(config), size: Int64(config.count)), layers: layers)
        try client.putManifest(repository, reference: "v1", bytes: ManifestEncoding.encode(manifest), mediaType: .ociManifest)
        let reference = "\(registry.address)/\(repository):v1"

        let mountpoint = scratch + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let mount = try imgfs(["mount", "--cache-dir", scratch + "/cache", reference, mountpoint], timeout: 120)
        defer { if MountSupport.isMounted(mountpoint) { _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", mountpoint], timeout: 30) } }
        #expect(mount.status != 0)
        #expect(mount.stderr.contains("disk/other.img") && mount.stderr.contains("disk/disk.img") && mount.stderr.contains(layers[1].digest.description),
                "\(mount)")
        let pull = try imgfs(["pull", "--quiet", reference, scratch + "/vm"], timeout: 120)
        #expect(pull.status != 0)
        #expect(pull.stderr.contains("exactly one file under /disk/"), "\(pull)")
    }
}
