import Fetch
import Foundation
import OCI
import Testing
import Verity

/// Issue 11 ("Trust nothing"), against the real registry, real FUSE mounts and the real `imgfs`
/// binary. Every test unmounts what it mounted, even when it fails.
@Suite(.serialized, .enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
struct TrustIntegrationTests {
    /// A disk of random bytes (no blob shared with another test), 1 MiB frames, a hole at the end.
    static func randomImage(_ scratch: String, name: String) throws -> PushedImage {
        let source = scratch + "/disk.img"
        try shell("head -c 12582912 /dev/urandom > \(source) && truncate -s 16M \(source)")
        return try PushedImage.push(source, repository: TestEnvironment.repository(name), extra: ["--chunk-size", "4M"])
    }

    // MARK: - Verified cache reads

    @Test func aFlippedByteInTheCacheIsNeverServedAndIsRepairedByARefetch() throws {
        let scratch = try TestEnvironment.scratchDirectory("trust-cache")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.randomImage(scratch, name: "trust-cache")
        let cache = scratch + "/cache"
        do {
            let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            try shell("cat \(mount.disk) > /dev/null", timeout: 600)
        }
        let data = try shell("ls \(cache)/disks/*/data").trimmingCharacters(in: .whitespacesAndNewlines)
        // One byte in the middle of frame 5 (a data frame), flipped on disk behind imgfs's back.
        let frame = 5
        let offset = frame * image.frameSize + 4321
        try shell("""
            python3 - <<'PY'
            with open('\(data)', 'r+b') as f:
                f.seek(\(offset)); b = f.read(1); f.seek(\(offset)); f.write(bytes([b[0] ^ 0x20]))
            PY
            """)
        #expect(try shell("cmp \(image.source) \(data) || true").contains("differ"), "the cache file really is damaged")

        let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        // Sequential (the kernel's large reads and splice) and then every frame again.
        try shell("cmp \(image.source) \(mount.disk)", timeout: 600)
        try shell("cmp \(image.source) \(mount.disk)", timeout: 600)
        let status = try mount.settledStatus()
        #expect(status.statistics.framesFetched == 1, "only the damaged frame was fetched again")
        #expect(status.statistics.cacheVerificationFailures == 1)
        #expect(status.statistics.readErrors == 0)
        // The cache is repaired, not only the reply.
        try shell("cmp \(image.source) \(data)")
        let log = try String(contentsOfFile: mount.logFile, encoding: .utf8)
        #expect(log.contains("cached frame does not match its digest; dropped it"), "the drop is logged")
    }

    // MARK: - A pulled directory is not trusted because its journal says so

    struct PullSummary: Decodable {
        var bytesDownloaded: Int64
        var alreadyComplete: Bool?
    }

    func pull(_ reference: String, _ directory: String) throws -> PullSummary {
        let result = try imgfs(["pull", "--quiet", "--json", reference, directory], timeout: 600)
        guard result.status == 0 else { throw ShellFailed(script: "imgfs pull", result: result) }
        return try JSONDecoder().decode(PullSummary.self, from: Data(result.stdout.utf8))
    }

    /// Flips one byte of `path` at `offset`.
    func flip(_ path: String, at offset: Int) throws {
        try shell("""
            python3 - <<'PY'
            with open('\(path)', 'r+b') as f:
                f.seek(\(offset)); b = f.read(1); f.seek(\(offset)); f.write(bytes([b[0] ^ 0x20]))
            PY
            """)
    }

    @Test func aCompletePullWhoseDiskWasDamagedIsPulledAgainNotReportedComplete() throws {
        let scratch = try TestEnvironment.scratchDirectory("trust-pull-complete")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.randomImage(scratch, name: "trust-pull-complete")
        let vm = scratch + "/vm"
        _ = try pull(image.reference, vm)
        let untouched = try pull(image.reference, vm)
        #expect(untouched.alreadyComplete == true)
        #expect(untouched.bytesDownloaded == 0)

        try flip(vm + "/disk.img", at: 3 * image.frameSize + 99)
        let again = try pull(image.reference, vm)
        #expect(again.alreadyComplete != true)
        #expect(again.bytesDownloaded > 0)
        try shell("cmp \(image.source) \(vm)/disk.img")
    }

    @Test func aResumedPullFetchesAgainTheJournalledFramesThatNoLongerMatch() throws {
        let scratch = try TestEnvironment.scratchDirectory("trust-pull-resume")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.randomImage(scratch, name: "trust-pull-resume")
        let vm = scratch + "/vm"
        _ = try pull(image.reference, vm)
        // What an interrupted pull whose every frame was journalled looks like, with one frame
        // damaged on disk since.
        try shell("""
            mv \(vm)/disk.img \(vm)/disk.img.partial
            python3 - <<'PY'
            import json
            path = '\(vm)/.imgfs-pull.json'
            j = json.load(open(path)); j['complete'] = False; json.dump(j, open(path, 'w'))
            PY
            """)
        try flip(vm + "/disk.img.partial", at: 3 * image.frameSize + 99)
        let resumed = try pull(image.reference, vm)
        #expect(resumed.bytesDownloaded > 0, "the damaged frame was fetched again")
        #expect(resumed.bytesDownloaded < Int64(2 * image.frameSize), "and only about it: \(resumed.bytesDownloaded)")
        try shell("cmp \(image.source) \(vm)/disk.img")
    }

    // MARK: - A container image is named as one

    @Test func aContainerImageIsRefusedByMountPullAndConvertWithAMessageThatNamesIt() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("trust-container")
        defer { TestEnvironment.remove(scratch) }
        // A small but real container image: an OCI config and one tar+gzip layer.
        let repository = TestEnvironment.repository("trust-container")
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        let config = Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Cmd":["/bin/sh"]}}"#.utf8)
        try shell("mkdir -p \(scratch)/root/etc && echo hello > \(scratch)/root/etc/motd && tar -C \(scratch)/root -czf \(scratch)/layer.tgz .")
        let layer = [UInt8](try Data(contentsOf: URL(fileURLWithPath: scratch + "/layer.tgz")))
        for blob in [config, layer] {
            try client.uploadBlob(repository, digest: SHA256Hasher.digest(blob), size: Int64(blob.count), body: .bytes(blob))
        }
        let manifest = Manifest(config: Descriptor(mediaType: "application/vnd.oci.image.config.v1+json", digest: SHA256Hasher.digest(config), size: Int64(config.count)),
                                layers: [Descriptor(mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: SHA256Hasher.digest(layer), size: Int64(layer.count))])
        try client.putManifest(repository, reference: "v1", bytes: ManifestEncoding.encode(manifest), mediaType: .ociManifest)
        let reference = "\(registry.address)/\(repository):v1"
        let expected = "not a VM image imgfs can read: it is a container image without a disk file under /disk/ (config application/vnd.oci.image.config.v1+json, "
            + "1 layer of application/vnd.oci.image.layer.v1.tar+gzip); imgfs reads VM disk images in its own format, lume's (OCI and legacy), "
            + "tart's and KubeVirt containerDisks (a disk file under /disk/)"

        let mountpoint = scratch + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let mount = try imgfs(["mount", "--cache-dir", scratch + "/cache", reference, mountpoint], timeout: 120)
        defer { if MountSupport.isMounted(mountpoint) { _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", mountpoint], timeout: 30) } }
        #expect(mount.status != 0)
        #expect(!MountSupport.isMounted(mountpoint))
        #expect(mount.stderr.contains(expected), "\(mount)")
        #expect(mount.stderr.split(separator: "\n").count == 1, "one line: \(mount)")

        let pull = try imgfs(["pull", "--quiet", reference, scratch + "/vm"], timeout: 120)
        #expect(pull.status != 0)
        #expect(pull.stderr.contains(expected), "\(pull)")

        let convert = try imgfs(["convert", "--quiet", reference, "\(registry.address)/\(repository)-converted:v1"], timeout: 120)
        #expect(convert.status != 0)
        #expect(convert.stderr.contains(expected), "\(convert)")
    }

    // MARK: - imgfs verify

    struct VerifyJSON: Decodable {
        struct Cache: Decodable {
            var checked: Int
            var dropped: Int
            var droppedUnits: [String]
            var total: Int
        }
        struct Remote: Decodable {
            var blobs: Int
            var frames: Int
            var fsverityDigest: String?
        }
        var ok: Bool
        var mode: String
        var cache: Cache?
        var remote: Remote?
    }

    @Test func verifyScrubsTheCacheOfAMountAndOfAReferenceDroppingWhatDoesNotMatch() throws {
        let scratch = try TestEnvironment.scratchDirectory("trust-verify")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.randomImage(scratch, name: "trust-verify")
        let cache = scratch + "/cache"
        let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        try shell("cat \(mount.disk) > /dev/null", timeout: 600)

        // The daemon commits fetched frames to the cache's bitmap in the background (group
        // commit), and verify scrubs what is committed: scrub until the last commit is in.
        var clean = try imgfs(["verify", "--json", mount.mountpoint], timeout: 300)
        var cleanReport = try JSONDecoder().decode(VerifyJSON.self, from: Data(clean.stdout.utf8))
        for _ in 0..<30 where cleanReport.cache?.checked != image.dataFrames {
            usleep(500_000)
            clean = try imgfs(["verify", "--json", mount.mountpoint], timeout: 300)
            cleanReport = try JSONDecoder().decode(VerifyJSON.self, from: Data(clean.stdout.utf8))
        }
        #expect(clean.status == 0, "\(clean)")
        #expect(cleanReport.ok && cleanReport.mode == "cache")
        #expect(cleanReport.cache?.checked == image.dataFrames)
        #expect(cleanReport.cache?.total == image.dataFrames)

        let data = try shell("ls \(cache)/disks/*/data").trimmingCharacters(in: .whitespacesAndNewlines)
        try flip(data, at: 7 * image.frameSize + 1)
        let damaged = try imgfs(["verify", "--json", mount.mountpoint], timeout: 300)
        #expect(damaged.status == 1, "\(damaged)")
        let damagedReport = try JSONDecoder().decode(VerifyJSON.self, from: Data(damaged.stdout.utf8))
        #expect(!damagedReport.ok)
        #expect(damagedReport.cache?.dropped == 1)
        #expect(damagedReport.cache?.droppedUnits == ["7"])
        #expect(damaged.stderr.contains("1 cached frames did not match their digests and were dropped"), "\(damaged)")

        // Dropped means gone: the next scrub finds one frame fewer, all good; a fresh mount reads it right.
        let again = try imgfs(["verify", "--json", mount.mountpoint], timeout: 300)
        #expect(again.status == 0, "\(again)")
        #expect(try JSONDecoder().decode(VerifyJSON.self, from: Data(again.stdout.utf8)).cache?.checked == image.dataFrames - 1)
        mount.unmount()
        let remount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
        defer { remount.unmount() }
        try shell("cmp \(image.source) \(remount.disk)", timeout: 600)
        #expect(try remount.settledStatus().statistics.framesFetched == 1)
        remount.unmount()

        // By reference, without a mount.
        let byReference = try imgfs(["verify", "--cache-dir", cache, image.reference], timeout: 300)
        #expect(byReference.status == 0, "\(byReference)")
        #expect(byReference.stdout.contains("\(image.dataFrames) cached frames of \(image.dataFrames) checked, 0 corrupt"), "\(byReference)")
    }

    @Test func verifyScrubsTheLayerFilesOfATartImageAndARemountFetchesTheDroppedLayer() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("trust-verify-tart")
        defer { TestEnvironment.remove(scratch) }
        let source = scratch + "/disk.img"
        try shell("head -c 12582912 /dev/urandom > \(source) && truncate -s 16M \(source)")
        let repository = TestEnvironment.repository("trust-verify-tart")
        try PeerImageFixtures(registry: registry).push(.tart, disk: source, repository: repository, tag: "v1", partSize: 4 * 1024 * 1024)
        let reference = "\(registry.address)/\(repository):v1"
        let cache = scratch + "/cache"
        do {
            let mount = try MountedImage(reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            try shell("cat \(mount.disk) > /dev/null", timeout: 600)
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: cache + "/segments").filter { !$0.hasSuffix(".sha256") }.sorted()
        #expect(files.count == 4, "\(files)")
        let victim = try #require(files.first)
        try flip(cache + "/segments/" + victim, at: 12345)

        let damaged = try imgfs(["verify", "--json", "--cache-dir", cache, reference], timeout: 300)
        #expect(damaged.status == 1, "\(damaged)")
        let report = try JSONDecoder().decode(VerifyJSON.self, from: Data(damaged.stdout.utf8))
        #expect(report.cache?.checked == 4)
        #expect(report.cache?.dropped == 1)
        #expect(!FileManager.default.fileExists(atPath: cache + "/segments/" + victim), "the damaged layer file is gone")

        let mount = try MountedImage(reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        try shell("cmp \(source) \(mount.disk)", timeout: 600)
        #expect(try mount.settledStatus().statistics.framesFetched == 1, "only the dropped layer was fetched again")
    }

    @Test func verifyRemoteChecksEveryBlobFrameAndTheFsverityDigestAndNamesACorruptBlob() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("trust-verify-remote")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.randomImage(scratch, name: "trust-verify-remote")
        let good = try imgfs(["verify", "--remote", "--json", image.reference], timeout: 300)
        #expect(good.status == 0, "\(good)")
        let report = try JSONDecoder().decode(VerifyJSON.self, from: Data(good.stdout.utf8))
        #expect(report.ok && report.mode == "remote")
        #expect(report.remote?.frames == image.dataFrames)
        #expect(report.remote?.fsverityDigest == image.fsverityDigest)
        #expect(report.remote?.blobs == image.chunks.count + 2, "every chunk layer, the config and the index")

        // One byte of one chunk layer flipped in the registry's storage.
        let victim = try #require(image.chunks.first { $0.number == 1 })
        try flip(try MountSupport.blobDataPath(registry, victim.digest), at: 1000)
        let bad = try imgfs(["verify", "--remote", image.reference], timeout: 300)
        #expect(bad.status == 1, "\(bad)")
        #expect(bad.stderr.contains(victim.digest), "the error names the blob: \(bad)")
        #expect(bad.stderr.split(separator: "\n").last?.hasPrefix("imgfs: error:") == true, "\(bad)")
    }

    // MARK: - Every fetched byte, one retry policy

    @Test func aMountThroughAProxyThatDamagesEveryObjectOnceReadsTheWholeDiskRight() throws {
        let scratch = try TestEnvironment.scratchDirectory("trust-proxy")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.randomImage(scratch, name: "trust-proxy")
        let registry = try TestRegistry.shared()
        // Every blob GET (config, frame index, each range of each chunk) arrives with one bit
        // flipped the first time it is asked for: harsher than 5% at random, and it cannot pass by luck.
        let proxy = try FixtureServer("proxy.py", upstream: registry.address, arguments: ["--corrupt-once"])
        defer { proxy.stop() }
        let reference = image.reference.replacingOccurrences(of: registry.address, with: proxy.address)
        let mount = try MountedImage(reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        try shell("cmp \(image.source) \(mount.disk)", timeout: 600)
        let status = try mount.settledStatus()
        let corrupted = try proxy.stats()["corrupted"] ?? 0
        #expect(corrupted >= 3, "config, index and at least one range were damaged on the way")
        #expect(status.statistics.verificationFailures >= 1, "damaged frames were caught and fetched again")
        #expect(status.statistics.readErrors == 0)
    }

    @Test func aPullThroughAProxyThatDamagesEveryObjectOnceWritesTheRightDisk() throws {
        let scratch = try TestEnvironment.scratchDirectory("trust-proxy-pull")
        defer { TestEnvironment.remove(scratch) }
        let registry = try TestRegistry.shared()
        let image = try Self.randomImage(scratch, name: "trust-proxy-pull")
        // A tart image too: its layers are pulled whole (LayerPuller), not frame by frame.
        let tartRepository = TestEnvironment.repository("trust-proxy-tart")
        try PeerImageFixtures(registry: registry).push(.tart, disk: image.source, repository: tartRepository, tag: "v1", partSize: 4 * 1024 * 1024)
        let proxy = try FixtureServer("proxy.py", upstream: registry.address, arguments: ["--corrupt-once"])
        defer { proxy.stop() }
        for (name, reference) in [("imgfs", image.reference), ("tart", "\(registry.address)/\(tartRepository):v1")] {
            let viaProxy = reference.replacingOccurrences(of: registry.address, with: proxy.address)
            let result = try imgfs(["pull", "--quiet", "--no-cache", viaProxy, scratch + "/vm-" + name], timeout: 600)
            #expect(result.status == 0, "\(name): \(result)")
            try shell("cmp \(image.source) \(scratch)/vm-\(name)/disk.img")
        }
        #expect((try proxy.stats()["corrupted"] ?? 0) >= 4, "blobs of both images were damaged on the way")
    }
}

/// A Python fixture of Tests/FetchTests/Fixtures (proxy.py, hostile_registry.py) in front of a
/// registry; `stop()` kills it.
final class FixtureServer {
    let process = Process()
    let address: String

    init(_ script: String, upstream: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", TestEnvironment.repositoryRoot + "/Tests/FetchTests/Fixtures/" + script,
                             "--upstream", upstream] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        address = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard address.hasPrefix("127.0.0.1:") else {
            stop()
            throw ShellFailed(script: script, result: CommandResult(status: 1, stdout: address, stderr: "", seconds: 0))
        }
    }

    func stats() throws -> [String: Int] {
        let json = try shell("curl -sf --noproxy '*' http://\(address)/_admin/stats")
        return try JSONDecoder().decode([String: Int].self, from: Data(json.utf8))
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}