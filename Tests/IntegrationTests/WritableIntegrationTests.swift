import Foundation
import Testing

/// `imgfs mount --writable`, push of a written disk, and boot profiles, against the real
/// registry, real FUSE mounts and the imgfs binary.
@Suite(.serialized) struct WritableIntegrationTests {
    struct PushSummary: Decodable {
        var manifestDigest: String
        var blobsUploaded: Int
        var chunkLayersReused: Int
        var framesCompressed: Int
    }

    static func manifestLayers(_ address: String, _ repository: String, _ tag: String) throws -> [(mediaType: String, digest: String, number: Int?)] {
        struct Manifest: Decodable {
            struct Layer: Decodable {
                var mediaType: String
                var digest: String
                var annotations: [String: String]?
            }
            var layers: [Layer]
        }
        let raw = try shell("curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\(address)/v2/\(repository)/manifests/\(tag)")
        return try JSONDecoder().decode(Manifest.self, from: Data(raw.utf8)).layers.map {
            ($0.mediaType, $0.digest, $0.annotations?["dev.imgfs.chunk.number"].flatMap { Int($0) })
        }
    }

    @Test func aWrittenDiskPersistsIsInvisibleToReadOnlyMountsAndPushesOnlyItsChangedChunks() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("writable")
        defer { TestEnvironment.remove(scratch) }
        // 24 MiB of random data in a 32 MiB disk, 8 MiB chunks: chunks 0-2 stored, chunk 3 all holes.
        let source = scratch + "/disk.img"
        try shell("head -c 25165824 /dev/urandom > \(source) && truncate -s 32M \(source)")
        let base = try PushedImage.push(source, repository: TestEnvironment.repository("writable-base"), extra: ["--chunk-size", "8M", "--frame-size", "1M"])
        #expect(base.chunks.count == 3)
        let cache = scratch + "/cache"
        let layer = scratch + "/layer"
        let marker = "imgfs-writable-marker-\(UUID().uuidString)"
        let offset: UInt64 = 9 * 1024 * 1024 + 123   // inside chunk 1, at no block boundary
        let expected = scratch + "/expected.img"
        try shell("cp \(source) \(expected) && printf '%s' '\(marker)' | dd of=\(expected) bs=1 seek=\(offset) conv=notrunc status=none")

        let readOnly = try MountedImage(base.reference, scratch: scratch, cache: cache)
        defer { readOnly.unmount() }
        do {
            let writable = try MountedImage(base.reference, scratch: scratch, cache: cache, extra: ["--writable", "--writable-dir", layer])
            defer { writable.unmount() }
            try shell("printf '%s' '\(marker)' | dd of=\(writable.disk) bs=1 seek=\(offset) conv=notrunc,fsync status=none")
            let back = try MountSupport.read(writable.disk, offset: offset, count: marker.utf8.count)
            #expect(String(decoding: back, as: UTF8.self) == marker)
            // The read-only mount of the same image and cache still serves the original bytes.
            #expect(try MountSupport.read(readOnly.disk, offset: offset, count: 64) == (try MountSupport.read(source, offset: offset, count: 64)))
            writable.unmount()
        }
        // A second mount of the same layer continues the written disk.
        let again = try MountedImage(base.reference, scratch: scratch, cache: cache, extra: ["--writable", "--writable-dir", layer])
        defer { again.unmount() }
        try shell("cmp \(again.disk) \(expected)", timeout: 600)
        try shell("cmp \(readOnly.disk) \(source)", timeout: 600)

        // Push of the mount point: only the changed chunk (and the index) is uploaded.
        let result = try imgfs(["push", "--quiet", "--json", again.mountpoint, "\(registry.address)/\(base.repository):v2"], timeout: 600)
        guard result.status == 0 else { throw ShellFailed(script: "imgfs push MOUNTPOINT", result: result) }
        let summary = try JSONDecoder().decode(PushSummary.self, from: Data(result.stdout.utf8))
        #expect(summary.blobsUploaded == 2, "the changed chunk layer and the index")
        #expect(summary.chunkLayersReused == 2)
        // Only the changed chunk's 8 frames were compressed, not the other 16 frames of data.
        #expect(summary.framesCompressed == 8)
        let before = try Self.manifestLayers(registry.address, base.repository, "v1").filter { $0.number != nil }
        let after = try Self.manifestLayers(registry.address, base.repository, "v2").filter { $0.number != nil }
        #expect(after.count == 3)
        for (old, new) in zip(before, after) {
            #expect(old.number == new.number)
            if old.number == 1 { #expect(old.digest != new.digest) } else { #expect(old.digest == new.digest) }
        }
        // A fresh mount (new cache) of the pushed image is the written disk.
        let fresh = try MountedImage("\(registry.address)/\(base.repository):v2", scratch: scratch)
        defer { fresh.unmount() }
        try shell("cmp \(fresh.disk) \(expected)", timeout: 600)
        // And its changed chunk is the very layer a plain push of the written disk makes: the
        // frames compressed late went in, in frame order, as a full push puts them.
        let plain = try PushedImage.push(expected, repository: TestEnvironment.repository("writable-plain"), extra: ["--chunk-size", "8M", "--frame-size", "1M"])
        #expect(Set(plain.chunks.map(\.digest)) == Set(after.map(\.digest)))
    }

    @Test func aRecordedProfileIsPushedAndPrefetchedFirstByAColdMount() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("profile")
        defer { TestEnvironment.remove(scratch) }
        // 16 frames of 1 MiB in 4 chunks of 4 frames.
        let source = scratch + "/disk.img"
        try shell("head -c 16777216 /dev/urandom > \(source)")
        let base = try PushedImage.push(source, repository: TestEnvironment.repository("profile-base"), extra: ["--chunk-size", "4M", "--frame-size", "1M"])
        let profile = scratch + "/boot.profile"
        do {
            let recording = try MountedImage(base.reference, scratch: scratch, extra: ["--no-prefetch", "--record-profile", profile])
            defer { recording.unmount() }
            for frame in [9, 3, 12, 3, 9] {
                _ = try MountSupport.read(recording.disk, offset: UInt64(frame) << 20, count: 4096)
            }
            recording.unmount()
        }
        var bytes: [UInt8] = []
        for _ in 0..<50 where bytes.isEmpty {
            bytes = (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: profile)))) ?? []
            if bytes.isEmpty { usleep(200_000) }
        }
        func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        try #require(bytes.count == 16 + 12)
        #expect(Array(bytes[0..<8]) == Array("IMGFSPRF".utf8))
        let words: [Int] = [u32(8), u32(12), u32(16), u32(20), u32(24)]
        #expect(words == [1, 3, 9, 3, 12])

        let repository = TestEnvironment.repository("profile-pushed")
        let pushed = try imgfs(["push", "--quiet", "--json", "--chunk-size", "4M", "--frame-size", "1M", "--profile", profile, source, "\(registry.address)/\(repository):v1"], timeout: 600)
        guard pushed.status == 0 else { throw ShellFailed(script: "imgfs push --profile", result: pushed) }
        let layers = try Self.manifestLayers(registry.address, repository, "v1")
        #expect(layers.last?.mediaType == "application/vnd.imgfs.boot-profile.v1")
        let chunkOf = Dictionary(uniqueKeysWithValues: layers.compactMap { l in l.number.map { (l.digest, $0) } })

        // A cold mount fetches the profile's chunks (2, 0, 3; several requests at once, so in any
        // order) before the sequential pass reaches chunk 1.
        let log = RegistryLog(registry)
        let mark = log.mark()
        let cold = try MountedImage("\(registry.address)/\(repository):v1", scratch: scratch)
        defer { cold.unmount() }
        var fetched: [Int] = []
        for _ in 0..<100 where Set(fetched).count < 4 {
            usleep(100_000)
            fetched = log.requests(since: mark, repository: repository).filter { $0.method == "GET" && $0.isBlob }
                .compactMap { $0.digest.flatMap { chunkOf[$0] } }
        }
        let firstThree = Array(NSOrderedSet(array: fetched).array.compactMap { $0 as? Int }.prefix(3))
        #expect(Set(firstThree) == [2, 0, 3] && firstThree.count == 3, "chunk order of the first fetches: \(fetched)")
    }

    /// A writable mount whose cache directory (and so its written disk's layer) is on a file
    /// system that fills up: the writer gets ENOSPC, the errno the layer's pwrite got (qemu
    /// pauses a VM on it by default), not EIO; and the mount keeps serving reads.
    @Test(.enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
    func aWriterThatFillsTheCacheFileSystemGetsENOSPCAndTheMountKeepsServingReads() throws {
        let scratch = try TestEnvironment.scratchDirectory("writable-enospc")
        defer { TestEnvironment.remove(scratch) }
        // 32 MiB of random data: more than the 8 MiB file system can take as written blocks.
        let source = scratch + "/disk.img"
        try shell("head -c 33554432 /dev/urandom > \(source)")
        let base = try PushedImage.push(source, repository: TestEnvironment.repository("writable-enospc"), extra: ["--chunk-size", "8M"])
        let small = scratch + "/small"
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        try shell("mount -t tmpfs -o size=8m tmpfs \(small)")
        defer { _ = try? runCommand("/bin/umount", ["-l", small], timeout: 60) }
        let log = scratch + "/mount.log"
        let mount = try MountedImage(base.reference, scratch: scratch, cache: small + "/cache",
                                     extra: ["--writable", "--no-prefetch", "--log-file", log])
        defer { mount.unmount() }

        let fd = open(mount.disk, O_WRONLY)
        try #require(fd >= 0, "open: \(String(cString: strerror(errno)))")
        defer { close(fd) }
        var block = [UInt8](repeating: 0, count: 1 << 20)
        for i in block.indices { block[i] = UInt8.random(in: 1...255) }
        var offset: off_t = 0
        var failure: Int32?
        while failure == nil && offset < 32 << 20 {
            let n = block.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, offset) }
            if n < 0 {
                if errno != EINTR { failure = errno }
            } else {
                offset += off_t(n)
            }
        }
        let written = offset
        #expect(failure == ENOSPC, "the write at \(written) failed with \(failure.map { String(cString: strerror($0)) } ?? "nothing")")
        #expect(written < 8 << 20, "an 8 MiB file system took \(written) bytes")

        // Reads go on: blocks written before the file system filled up, and image bytes past them
        // (fetched and served from memory, though the cache cannot keep them).
        let firstBlock = try MountSupport.read(mount.disk, offset: 0, count: 4096)
        #expect(firstBlock == Array(block[0..<4096]))
        let tail = try MountSupport.read(mount.disk, offset: 30 << 20, count: 1 << 20)
        #expect(tail == (try MountSupport.read(source, offset: 30 << 20, count: 1 << 20)))
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("No space left on device"), "the log names the cause")
    }
}
