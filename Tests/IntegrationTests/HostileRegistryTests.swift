import Codec
import Fetch
import Foundation
import Testing
import Verity

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
        return try PushedImage.push(source, repository: TestEnvironment.repository("hostile"), extra: ["--chunk-size", "1M", "--frame-size", "1M"])
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
        // The read's deadline (the default 30 s read timeout) is the transfer's: libcurl's
        // low-speed limit cuts the stalled body first, and the retry that resumes it ends at the
        // deadline; the kernel's page-by-page retries then fail at once.
        #expect(result.seconds < 31, "took \(result.seconds) s")
        #expect((try server.stats()["stalls"] ?? 0) > 0)
    }

    /// A body at 2 KiB/s never falls under libcurl's low-speed limit (1 KiB/s), so only the read's
    /// deadline, carried down to the transfer, ends it: EIO within the read timeout (given with
    /// `--read-timeout`, or the default 30 s), not when the 1 MiB member has trickled in.
    @Test(arguments: [5.0, nil] as [Double?])
    func aBodyThatTricklesGivesEIOWithinTheReadTimeout(readTimeout: Double?) throws {
        let image = try Self.image.get()
        let (server, reference) = try hostile("trickle", ["--trickle-rate", "2048"])
        defer { server.stop() }
        let scratch = try TestEnvironment.scratchDirectory("hostile-trickle")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(reference, scratch: scratch, extra: ["--no-prefetch"] + (readTimeout.map { ["--read-timeout", "\($0)"] } ?? []))
        defer { mount.unmount() }
        let result = readFrame(mount, 5, image: image)
        #expect(result.bytes == nil)
        #expect(result.errno == EIO)
        let bound = (readTimeout ?? 30) + 1
        #expect(result.seconds < bound, "took \(result.seconds) s, the read timeout is \(readTimeout ?? 30) s")
        let stats = try server.stats()
        #expect((stats["trickles"] ?? 0) > 0)
        // The registry was sending all along (the read did not fail for another reason).
        #expect((stats["trickled_bytes"] ?? 0) > 2048)
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

    // MARK: - Mutated images: the index and the members

    /// The hostile image's manifest (as JSON) and frame index, to push mutated copies of.
    struct Mutator {
        let registry: TestRegistry
        let image: PushedImage
        let client: RegistryClient
        let manifest: [String: Any]
        let index: [UInt8]

        init() throws {
            registry = try TestRegistry.shared()
            image = try HostileRegistryTests.image.get()
            client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
            let raw = try shell("curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\(registry.address)/v2/\(image.repository)/manifests/v1")
            manifest = try #require(try JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: Any])
            let layers = try #require(manifest["layers"] as? [[String: Any]])
            let indexDigest = try #require(layers.first { ($0["mediaType"] as? String) == "application/vnd.imgfs.disk.index.v1" }?["digest"] as? String)
            let file = NSTemporaryDirectory() + "imgfs-hostile-index-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: file) }
            try shell("curl -sfL -o \(file) http://\(registry.address)/v2/\(image.repository)/blobs/\(indexDigest)")
            index = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        }

        var layerCount: Int { Int(read32(20)) }
        func read32(_ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(index[at + $1]) << (8 * UInt32($1)) } }
        func read64(_ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(index[at + $1]) << (8 * UInt64($1)) } }
        /// Byte offset of frame `frame`'s record in the index.
        func frameRecord(_ frame: Int) -> Int { 64 + 40 * layerCount + 56 * frame }

        static func put32(_ value: UInt32, at: Int, in bytes: inout [UInt8]) { for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) } }
        static func put64(_ value: UInt64, at: Int, in bytes: inout [UInt8]) { for i in 0..<8 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) } }

        /// Pushes the image with `index` as its frame index and, if given, chunk layer `chunk`
        /// replaced by `layer`; returns its reference.
        func push(tag: String, index: [UInt8], replacing chunk: (digest: String, bytes: [UInt8])? = nil) throws -> String {
            func upload(_ bytes: [UInt8]) throws -> String {
                let digest = SHA256Hasher.digest(bytes)
                try client.uploadBlob(image.repository, digest: digest, size: Int64(bytes.count), body: .bytes(bytes))
                return digest.description
            }
            let indexDigest = try upload(index)
            let chunkDigest = try chunk.map { try upload($0.bytes) }
            var copy = manifest
            let layers = (manifest["layers"] as? [[String: Any]] ?? []).map { layer -> [String: Any] in
                var layer = layer
                if (layer["mediaType"] as? String) == "application/vnd.imgfs.disk.index.v1" {
                    layer["digest"] = indexDigest
                    layer["size"] = index.count
                } else if let chunk, let chunkDigest, (layer["digest"] as? String) == chunk.digest {
                    layer["digest"] = chunkDigest
                    layer["size"] = chunk.bytes.count
                }
                return layer
            }
            copy["layers"] = layers
            let bytes = [UInt8](try JSONSerialization.data(withJSONObject: copy, options: [.sortedKeys]))
            try client.putManifest(image.repository, reference: tag, bytes: bytes, mediaType: .ociManifest)
            return "\(registry.address)/\(image.repository):\(tag)"
        }
    }

    /// `imgfs mount` of `reference`: must fail within 20 s with one error line containing `expected`.
    func expectMountRefused(_ reference: String, _ expected: [String], comment: String) throws {
        let scratch = try TestEnvironment.scratchDirectory("hostile-refused")
        defer { TestEnvironment.remove(scratch) }
        try FileManager.default.createDirectory(atPath: scratch + "/mnt", withIntermediateDirectories: true)
        let result = try imgfs(["mount", "--cache-dir", scratch + "/cache", reference, scratch + "/mnt"], timeout: 60)
        defer { if MountSupport.isMounted(scratch + "/mnt") { _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", scratch + "/mnt"], timeout: 30) } }
        #expect(result.status == 1, "\(comment): \(result)")
        #expect(result.seconds < 20, "\(comment)")
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("imgfs: error:") }
        #expect(errors.count == 1, "\(comment): \(result)")
        // "a|b": either will do (a reader may catch the same damage by another of its rules first).
        for text in expected {
            let alternatives = text.split(separator: "|").map(String.init)
            #expect(alternatives.contains { errors.first?.contains($0) == true }, "\(comment): wants '\(text)' in \(result.stderr)")
        }
    }

    @Test func indexFieldsOutOfRangeAreRefusedWithAClearError() throws {
        let m = try Mutator()
        let frameCount = Int(m.read64(32))
        var cases: [(String, [UInt8], [String])] = []

        var pastBlob = m.index
        let record2 = m.frameRecord(2)
        Mutator.put64(m.read64(record2) + 5_000_000, at: record2, in: &pastBlob)
        cases.append(("a member past its blob", pastBlob, ["frame 2", "outside layer"]))

        var overlapping = m.index
        let record3 = m.frameRecord(3)
        Mutator.put32(m.read32(record2 + 12), at: record3 + 12, in: &overlapping)  // frame 3 into frame 2's layer
        Mutator.put64(m.read64(record2) + 1, at: record3, in: &overlapping)        // one byte into frame 2's member
        Mutator.put32(m.read32(record2 + 8) - 1, at: record3 + 8, in: &overlapping)
        // Moving frame 3 into frame 2's layer also leaves layer 3 unused, which main's stricter
        // reader (layers listed in order of first use) reports first.
        cases.append(("overlapping members", overlapping, ["overlap|order of first use"]))

        var zeroFrameSize = m.index
        Mutator.put32(0, at: 16, in: &zeroFrameSize)
        cases.append(("a frame size of 0", zeroFrameSize, ["frame size"]))

        var oddFrameSize = m.index
        Mutator.put32(1_000_000, at: 16, in: &oddFrameSize)
        cases.append(("a frame size not a power of two", oddFrameSize, ["frame size", "1000000"]))

        var hugeDisk = m.index
        Mutator.put64(1 << 63, at: 24, in: &hugeDisk)
        cases.append(("a disk size of 2^63", hugeDisk, ["9223372036854775808"]))

        var moreFrames = m.index
        Mutator.put64(UInt64(frameCount + 1), at: 32, in: &moreFrames)
        cases.append(("a frame count that does not match the disk size", moreFrames, ["\(frameCount + 1)"]))

        for (number, (comment, index, expected)) in cases.enumerated() {
            let reference = try m.push(tag: "bad-index-\(number)", index: index)
            try expectMountRefused(reference, expected, comment: comment)
        }
    }

    @Test(arguments: [2 * 1024 * 1024, 512 * 1024])
    func aMemberThatInflatesPastOrShortOfItsFrameIsEIOForThatFrameOnly(inflatedSize: Int) throws {
        let m = try Mutator()
        let image = m.image
        let victim = try #require(image.chunks.first { $0.number == 0 })
        // A gzip member of zeros that inflates to twice the frame (a small decompression bomb) or to half of it.
        let member = try [UInt8](repeating: 0, count: inflatedSize).withUnsafeBytes { try GzipStreamEncoder(level: 9).encodeMember($0) }
        var index = m.index
        // Frame 0 is the only frame of chunk 0 (one frame per chunk): point it at the new member.
        let record0 = m.frameRecord(0)
        let layer = Int(m.read32(record0 + 12))
        Mutator.put64(0, at: record0, in: &index)
        Mutator.put32(UInt32(member.count), at: record0 + 8, in: &index)
        let digest = SHA256Hasher.digest(member)
        index.replaceSubrange(64 + 40 * layer..<64 + 40 * layer + 32, with: digest.bytes)
        Mutator.put64(UInt64(member.count), at: 64 + 40 * layer + 32, in: &index)
        let reference = try m.push(tag: "bomb-\(inflatedSize)", index: index, replacing: (victim.digest, member))

        let scratch = try TestEnvironment.scratchDirectory("hostile-bomb")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        let bad = readFrame(mount, 0, image: image)
        #expect(bad.bytes == nil)
        #expect(bad.errno == EIO)
        #expect(bad.seconds < 30)
        let good = readFrame(mount, 1, image: image)
        #expect(good.bytes == (try MountSupport.read(image.source, offset: UInt64(image.frameSize), count: image.frameSize)))
        let log = try String(contentsOfFile: mount.logFile, encoding: .utf8)
        #expect(log.contains("frame does not decompress"), "the log says why")
    }

    // MARK: - lume and tart annotations

    /// Pushes `format` of a small random disk, then copies of its manifest with `mutate` applied
    /// to its layers' (or the manifest's) annotations; each copy must be refused in one error line
    /// that contains every string of its case.
    func expectAnnotationCasesRefused(_ format: PeerFormat, _ cases: [(String, (inout [String: Any]) -> Void, [String])]) throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("hostile-annotations")
        defer { TestEnvironment.remove(scratch) }
        let source = scratch + "/disk.img"
        try shell("head -c 12582912 /dev/urandom > \(source) && truncate -s 16M \(source)")
        let repository = TestEnvironment.repository("hostile-\(format.rawValue)")
        try PeerImageFixtures(registry: registry).push(format, disk: source, repository: repository, tag: "v1", partSize: 4 * 1024 * 1024)
        let raw = try shell("curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\(registry.address)/v2/\(repository)/manifests/v1")
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: Any])
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        for (number, (comment, mutate, expected)) in cases.enumerated() {
            var copy = manifest
            mutate(&copy)
            let bytes = [UInt8](try JSONSerialization.data(withJSONObject: copy, options: [.sortedKeys]))
            try client.putManifest(repository, reference: "bad-\(number)", bytes: bytes, mediaType: .ociManifest)
            try expectMountRefused("\(registry.address)/\(repository):bad-\(number)", expected, comment: "\(format) \(comment)")
        }
    }

    /// Sets annotation `key` of the disk layers for which `which` (their position among them) is true.
    static func setLayerAnnotation(_ key: String, _ value: (Int) -> String?, in manifest: inout [String: Any]) {
        var layers = manifest["layers"] as? [[String: Any]] ?? []
        var position = 0
        for i in layers.indices {
            guard var annotations = layers[i]["annotations"] as? [String: String], annotations[key] != nil else { continue }
            if let new = value(position) { annotations[key] = new }
            layers[i]["annotations"] = annotations
            position += 1
        }
        manifest["layers"] = layers
    }

    @Test func lumeAnnotationsThatAreNegativeOverlapOrDoNotAddUpAreRefused() throws {
        let offset = "org.trycua.lume.part.offset", size = "org.trycua.lume.content.uncompressed-size"
        let total = "org.trycua.lume.total-uncompressed-size"
        try expectAnnotationCasesRefused(.lumeChunked, [
            ("a negative part offset", { Self.setLayerAnnotation(offset, { $0 == 1 ? "-4194304" : nil }, in: &$0) }, [offset, "-4194304"]),
            ("a negative part size", { Self.setLayerAnnotation(size, { $0 == 2 ? "-1" : nil }, in: &$0) }, [size, "-1"]),
            ("overlapping parts", { Self.setLayerAnnotation(offset, { $0 == 2 ? "4194304" : nil }, in: &$0) }, ["overlaps"]),
            ("a part past the total size", { manifest in
                var annotations = manifest["annotations"] as? [String: String] ?? [:]
                annotations[total] = "8388608"
                manifest["annotations"] = annotations
            }, ["8388608"]),
        ])
    }

    @Test func tartAnnotationsThatAreNegativeOrDoNotAddUpAreRefused() throws {
        let size = "org.cirruslabs.tart.uncompressed-size", disk = "org.cirruslabs.tart.uncompressed-disk-size"
        try expectAnnotationCasesRefused(.tart, [
            ("a negative layer size", { Self.setLayerAnnotation(size, { $0 == 0 ? "-1" : nil }, in: &$0) }, [size, "-1"]),
            ("a disk size smaller than its layers", { Self.setLayerAnnotation(disk, { _ in "4096" }, in: &$0)
                var annotations = $0["annotations"] as? [String: String] ?? [:]
                if annotations[disk] != nil { annotations[disk] = "4096"; $0["annotations"] = annotations }
            }, ["4096"]),
        ])
    }
}
