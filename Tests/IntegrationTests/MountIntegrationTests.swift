import Foundation
import Testing

/// Issue 3's "Must show", against the real registry, real FUSE mounts and the real `imgfs`
/// binary. Every test unmounts what it mounted, even when it fails (`MountedImage.unmount`, with
/// a lazy `fusermount3 -u -z` fallback), and uses its own cache directory.
@Suite(.serialized, .enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
struct MountIntegrationTests {
    // MARK: - cmp, sparse copy, fs-verity

    @Test func fullReadIsIdenticalAndASparseCopyHasTheManifestsFsverityDigest() throws {
        let image = try PushedImage.corpus()
        let scratch = try TestEnvironment.scratchDirectory("mount-cmp")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(image.reference, scratch: scratch)
        defer { mount.unmount() }

        try shell("cmp \(image.source) \(mount.disk)", timeout: 1800)
        let copy = scratch + "/copy.img"
        try shell("cp --sparse=always \(mount.disk) \(copy)", timeout: 1800)
        let digest = try shell("fsverity digest \(copy)").split(separator: " ").first.map(String.init)
        #expect(digest == image.fsverityDigest)
        // The copy is sparse: holes were reported, not read as zeros.
        let allocated = try shell("du -k \(copy) | cut -f1").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect((Int(allocated) ?? .max) * 1024 < Int(image.diskSize))

        let status = try mount.settledStatus()
        #expect(status.manifestDigest == image.manifestDigest)
        #expect(status.bytesCached == image.diskSize)
        #expect(status.statistics.verificationFailures == 0)
    }

    // MARK: - Holes (issue 14)

    /// Holes are answered from the index and spliced as zero pages, cached data between them from
    /// the cache file: the same bytes as the source, read cold and again after a remount (a new
    /// FUSE page cache, every frame cached), for an all-hole range, a hole/data/hole range that
    /// starts and ends inside frames, and the whole file.
    @Test func holesAndTheDataBetweenThemReadTheSameColdAndCached() throws {
        let scratch = try TestEnvironment.scratchDirectory("mount-holes")
        defer { TestEnvironment.remove(scratch) }
        let source = scratch + "/holes.img"
        try shell("""
            truncate -s 64M \(source)
            for mib in 3 10 11 12 40; do head -c 1048576 /dev/urandom | dd of=\(source) bs=1M seek=$mib conv=notrunc status=none; done
            head -c 5000 /dev/urandom | dd of=\(source) bs=1 seek=\(63 * 1_048_576 + 100) conv=notrunc status=none
            """)
        let image = try PushedImage.push(source, repository: TestEnvironment.repository("holes"), extra: ["--chunk-size", "8M"])
        #expect(image.holeFrames > 0)
        let cache = scratch + "/cache"
        for pass in ["cold", "cached"] {
            let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            let hole = try MountSupport.read(mount.disk, offset: 20 << 20, count: 8 << 20)
            #expect(hole == [UInt8](repeating: 0, count: 8 << 20), "all-hole range, \(pass)")
            let offset: UInt64 = (9 << 20) + 4097
            let span = try MountSupport.read(mount.disk, offset: offset, count: 5 << 20)
            #expect(span == (try MountSupport.read(source, offset: offset, count: 5 << 20)), "hole/data/hole range, \(pass)")
            try shell("cmp \(source) \(mount.disk)", timeout: 600)
            if pass == "cold" { #expect(try mount.settledStatus().bytesCached == image.diskSize) }
        }
    }

    // MARK: - A 4 KiB read moves one frame

    @Test func aFourKiBReadOfAFreshMountFetchesOneFrameAndTheMetadata() throws {
        let image = try PushedImage.corpus()
        let scratch = try TestEnvironment.scratchDirectory("mount-4k")
        defer { TestEnvironment.remove(scratch) }
        let offset = try MountSupport.dataOffset(in: image.source, frameSize: image.frameSize)
        let log = RegistryLog(try TestRegistry.shared())
        let mark = log.mark()
        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }

        let bytes = try MountSupport.read(mount.disk, offset: offset, count: 4096)
        #expect(bytes == (try MountSupport.read(image.source, offset: offset, count: 4096)))
        let status = try mount.settledStatus()
        let requests = log.requests(since: mark, repository: image.repository)
        let chunkGets = requests.filter { $0.method == "GET" && image.chunkDigests.contains($0.digest ?? "") }
        let otherBlobGets = requests.filter { $0.method == "GET" && $0.isBlob && !image.chunkDigests.contains($0.digest ?? "") }
        let manifestGets = requests.filter { $0.method == "GET" && $0.isManifest }
        #expect(chunkGets.count == 1, "one range request for one frame: \(requests)")
        #expect(manifestGets.count == 1, "\(requests)")
        #expect(otherBlobGets.count <= 2, "config and frame index only: \(requests)")
        #expect(status.statistics.framesFetched == 1)
        #expect(status.statistics.bytesFetched <= Int64(image.frameSize) + 4096)
    }

    // MARK: - Tampered blob

    @Test func aTamperedBlobFailsItsFramesWithEIOAndEveryOtherFrameStillReads() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("mount-tamper")
        defer { TestEnvironment.remove(scratch) }
        // A disk of its own (random bytes, so no blob is shared with another test), 8 chunk layers.
        let source = scratch + "/disk.img"
        try shell("head -c 50331648 /dev/urandom > \(source) && truncate -s 64M \(source)")
        let image = try PushedImage.push(source, repository: TestEnvironment.repository("tamper"), extra: ["--chunk-size", "8M"])
        let victim = try #require(image.chunks.first { $0.number == 2 })
        let path = try MountSupport.blobDataPath(registry, victim.digest)
        // Flip a byte every 4000 bytes: every member of the layer is damaged, its size is not.
        try shell("""
            python3 - <<'PY'
            with open('\(path)', 'r+b') as f:
                data = bytearray(f.read())
                for i in range(100, len(data), 4000):
                    data[i] ^= 0x5a
                f.seek(0); f.write(data)
            PY
            """)

        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        let frames = Int(image.diskSize) / image.frameSize
        var failed: [Int] = []
        for frame in 0..<frames {
            let offset = UInt64(frame * image.frameSize)
            let expected = try MountSupport.read(source, offset: offset, count: image.frameSize)
            do {
                let bytes = try MountSupport.read(mount.disk, offset: offset, count: image.frameSize)
                #expect(bytes == expected, "frame \(frame) must be right or fail, never wrong")
            } catch let error as ReadFailed {
                #expect(error.errno == EIO)
                failed.append(frame)
            }
        }
        let victimFrames = Array(Int(victim.offset) / image.frameSize..<Int(victim.offset + victim.length) / image.frameSize)
        #expect(failed == victimFrames)
        let status = try mount.settledStatus()
        #expect(status.statistics.verificationFailures >= Int64(victimFrames.count))
        let log = try String(contentsOfFile: mount.logFile, encoding: .utf8)
        #expect(log.contains(victim.digest), "the log names the blob")
        #expect(log.contains("expected"))
    }

    // MARK: - kill -9, then remount

    @Test func killingTheDaemonMidReadLeavesACacheARemountReuses() throws {
        let image = try PushedImage.corpus()
        let scratch = try TestEnvironment.scratchDirectory("mount-kill")
        defer { TestEnvironment.remove(scratch) }
        let cache = scratch + "/cache"
        let first = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
        defer { first.unmount() }
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/bin/sh")
        reader.arguments = ["-c", "cat \(first.disk) > /dev/null"]
        try reader.run()
        defer { if reader.isRunning { reader.terminate() } }
        // Wait until a good part of the data has been fetched, then kill the daemon hard.
        let dataFrames = image.dataFrames
        var fetched: Int64 = 0
        for _ in 0..<600 {
            fetched = (try? first.status().statistics.framesFetched) ?? 0
            if fetched >= Int64(max(8, dataFrames / 4)) { break }
            usleep(50_000)
        }
        #expect(fetched > 0)
        // The holder would start another server: kill it first, so that the mount dies.
        let status = try first.status()
        if let holder = status.holderPid { kill(holder, SIGKILL) }
        kill(status.pid, SIGKILL)
        reader.waitUntilExit()
        first.unmount()

        let second = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
        defer { second.unmount() }
        let before = try second.status()
        #expect(before.cachedFrames > image.holeFrames, "frames fetched before the kill are still cached")
        try shell("cmp \(image.source) \(second.disk)", timeout: 1800)
        let after = try second.settledStatus()
        #expect(after.statistics.framesFetched < Int64(dataFrames), "the remount fetched only what was missing")
        #expect(after.statistics.verificationFailures == 0)
    }

    // MARK: - Registry stopped

    @Test func withTheRegistryStoppedARemountServesTheWholeDisk() throws {
        let scratch = try TestEnvironment.scratchDirectory("mount-offline")
        defer { TestEnvironment.remove(scratch) }
        // A registry of its own, so that stopping it does not disturb other tests.
        let registry = try PrivateRegistry(directory: scratch + "/registry")
        defer { registry.stop() }
        let source = try Corpus.path()
        let image = try PushedImage.push(source, repository: TestEnvironment.repository("offline"), registry: registry.address)
        let cache = scratch + "/cache"
        do {
            let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            try shell("cat \(mount.disk) > /dev/null", timeout: 1800)
        }
        registry.stop()
        let mount = try MountedImage(image.reference, scratch: scratch, cache: cache)
        defer { mount.unmount() }
        try shell("cmp \(source) \(mount.disk)", timeout: 1800)
        let status = try mount.settledStatus()
        #expect(status.offline)
        #expect(status.statistics.framesFetched == 0)
        #expect(status.statistics.readErrors == 0)
    }

    // MARK: - A second image that differs in one block

    @Test func aSecondImageDifferingInOneBlockDownloadsAboutOneFrame() throws {
        let image = try PushedImage.corpus()
        let scratch = try TestEnvironment.scratchDirectory("mount-dedup")
        defer { TestEnvironment.remove(scratch) }
        let edited = scratch + "/edited.img"
        try shell("cp --sparse=always \(image.source) \(edited)", timeout: 1800)
        let offset = try MountSupport.dataOffset(in: edited, frameSize: image.frameSize)
        try shell("head -c 4096 /dev/urandom | dd of=\(edited) bs=4096 seek=\(offset / 4096) conv=notrunc status=none")
        let second = try PushedImage.push(edited, repository: TestEnvironment.repository("edited"))

        let cache = scratch + "/cache"
        do {
            let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            try shell("cat \(mount.disk) > /dev/null", timeout: 1800)
        }
        let log = RegistryLog(try TestRegistry.shared())
        let mark = log.mark()
        let mount = try MountedImage(second.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        try shell("cmp \(edited) \(mount.disk)", timeout: 1800)
        let status = try mount.settledStatus()
        #expect(status.statistics.framesFetched == 1)
        #expect(status.statistics.bytesFetched <= Int64(image.frameSize) + 4096)
        let requests = log.requests(since: mark, repository: second.repository)
        let chunkGets = requests.filter { $0.method == "GET" && second.chunkDigests.contains($0.digest ?? "") }
        #expect(chunkGets.count == 1, "\(requests)")
    }

    // MARK: - Eight readers in parallel

    @Test func eightProcessesReadingDifferentRegionsAreServedInParallel() throws {
        let image = try PushedImage.corpus()
        let scratch = try TestEnvironment.scratchDirectory("mount-parallel")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        // Eight regions of 32 MiB spread over the data part of the disk.
        let regionSize = 32 << 20
        let dataEnd = image.dataEnd
        let step = max(UInt64(regionSize), dataEnd / 8 / UInt64(regionSize) * UInt64(regionSize))
        let script = (0..<8).map { i in
            "(python3 -c \"import hashlib,sys; f=open(sys.argv[1],'rb'); f.seek(\(UInt64(i) * step)); print(hashlib.sha256(f.read(\(regionSize))).hexdigest())\" \(mount.disk) > \(scratch)/mounted.\(i)) &"
        }.joined(separator: "\n") + "\nwait"
        let start = Date()
        try shell(script, timeout: 1800)
        let seconds = Date().timeIntervalSince(start)
        for i in 0..<8 {
            let expected = try shell("python3 -c \"import hashlib,sys; f=open(sys.argv[1],'rb'); f.seek(\(UInt64(i) * step)); print(hashlib.sha256(f.read(\(regionSize))).hexdigest())\" \(image.source)")
            #expect(try String(contentsOfFile: "\(scratch)/mounted.\(i)", encoding: .utf8) == expected, "region \(i)")
        }
        let status = try mount.settledStatus()
        #expect(status.statistics.peakRequestsInFlight >= 4, "8 readers, \(String(format: "%.1f", seconds)) s, peak \(status.statistics.peakRequestsInFlight) requests at once")
        #expect(status.statistics.readErrors == 0)
    }

    // MARK: - Errors are reported by the foreground command

    @Test func mountErrorsAreOneLineAndNonZero() throws {
        let scratch = try TestEnvironment.scratchDirectory("mount-errors")
        defer { TestEnvironment.remove(scratch) }
        let registry = try TestRegistry.shared()
        let environment = ["IMGFS_CACHE_DIR": scratch + "/cache"]
        try FileManager.default.createDirectory(atPath: scratch + "/mnt", withIntermediateDirectories: true)

        let missing = try imgfs(["mount", "\(registry.address)/it/none:v1", scratch + "/nowhere"], environment: environment, timeout: 60)
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("mount point does not exist"))

        let unknown = try imgfs(["mount", "\(registry.address)/it/does-not-exist:v1", scratch + "/mnt"], environment: environment, timeout: 60)
        #expect(unknown.status != 0)
        #expect(unknown.stderr.split(separator: "\n").count == 1, "\(unknown)")

        let down = try imgfs(["mount", "127.0.0.1:1/it/none:v1", scratch + "/mnt"], environment: environment, timeout: 120)
        #expect(down.status != 0)
        #expect(down.stderr.contains("unreachable"), "\(down)")

        let notImgfs = try imgfs(["umount", scratch + "/mnt"], timeout: 60)
        #expect(notImgfs.status != 0)
        #expect(!MountSupport.isMounted(scratch + "/mnt"))
    }
}
