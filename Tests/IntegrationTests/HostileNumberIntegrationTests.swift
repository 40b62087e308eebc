import Fetch
import Foundation
import OCI
import Testing
import Verity

/// Numbers a registry controls (config sizes, chunk numbers, index fields, lume part offsets) at
/// the edges of their types: `mount` and `pull` end with a clear error that names the field and
/// exit status 1, never a signal (issue 17; these crashed with SIGILL on arithmetic overflow).
@Suite(.serialized) struct HostileNumberIntegrationTests {
    /// One mutated image and what its error must say.
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var expected: String
        var description: String { name }
    }

    /// A small multi-layer image (4 chunks of 1 MiB, 64 KiB frames), pushed once.
    static let base = Result<(image: PushedImage, scratch: String), any Error> {
        let scratch = try TestEnvironment.scratchDirectory("hostile-numbers")
        let disk = scratch + "/disk.img"
        try shell("head -c 3500000 /dev/urandom > \(disk) && truncate -s 4M \(disk)")
        let image = try PushedImage.push(disk, repository: TestEnvironment.repository("hostile-numbers"),
                                         extra: ["--frame-size", "64K", "--chunk-size", "1M"])
        return (image, scratch)
    }

    static let imgfsCases: [Case] = [
        Case(name: "chunkSize 2^64-1", expected: "disk.chunkSize"),
        Case(name: "chunkSize 0", expected: "disk.chunkSize has an invalid value 0"),
        Case(name: "chunkSize not a multiple of the frame size", expected: "multiple of the frame size"),
        Case(name: "disk size 2^63", expected: "exceeds the limit"),
        Case(name: "disk size 2^64-1", expected: "exceeds the limit"),
        Case(name: "frame size 2^40", expected: "invalid frame size"),
        Case(name: "frame size -1", expected: "invalid frame size"),
        Case(name: "chunk number 2^63", expected: "dev.imgfs.chunk.number"),
        Case(name: "chunk number 2^64-1", expected: "dev.imgfs.chunk.number"),
        Case(name: "chunk number 2^64", expected: "dev.imgfs.chunk.number"),
        Case(name: "chunk number -1", expected: "dev.imgfs.chunk.number"),
        Case(name: "chunk number +1", expected: "dev.imgfs.chunk.number"),
        Case(name: "index frame compressed length 0", expected: "compressed length of 0"),
        Case(name: "index frame offset 2^64-1", expected: "lie outside layer"),
        Case(name: "index layer size 2^64-1", expected: "frame index layer 0 has a size of 18446744073709551615"),
        Case(name: "index frame count 2^64-1", expected: "frame index declares"),
        Case(name: "index disk size 2^64-1", expected: "exceeds the limit"),
        Case(name: "layer size -1", expected: "has a negative size"),
    ]

    @Test(arguments: imgfsCases)
    func imgfsImageNumbersAreCheckedNotTrapped(_ testCase: Case) throws {
        let (image, scratch) = try Self.base.get()
        let reference = try Self.pushVariant(of: image, testCase)
        try Self.expectCleanFailure(reference: reference, scratch: scratch, expected: testCase.expected)
    }

    static let lumeCases: [Case] = [
        Case(name: "part offset near 2^64", expected: "org.trycua.lume.part.offset"),
        Case(name: "part size 2^64-1", expected: "org.trycua.lume.part.offset"),
        Case(name: "part number 2^64-1", expected: "org.trycua.lume.part.number"),
        Case(name: "total size 2^64-1", expected: "exceeds the limit"),
        Case(name: "part size negative", expected: "org.trycua.lume.content.uncompressed-size"),
    ]

    @Test(arguments: lumeCases)
    func lumeImageNumbersAreCheckedNotTrapped(_ testCase: Case) throws {
        let (image, scratch) = try Self.base.get()
        let registry = try TestRegistry.shared()
        let repository = TestEnvironment.repository("hostile-lume")
        try PeerImageFixtures(registry: registry).push(.lumeChunked, disk: image.source, repository: repository, tag: "v1", partSize: 1 << 20)
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        var manifest = String(decoding: try client.manifest(repository, reference: "v1").bytes, as: UTF8.self)
        switch testCase.name {
        case "part offset near 2^64":
            manifest = try replacingFirst(#""org.trycua.lume.part.offset":"1048576""#, with: #""org.trycua.lume.part.offset":"18446744073709551000""#, in: manifest)
        case "part size 2^64-1":
            manifest = try replacingFirst(#""org.trycua.lume.content.uncompressed-size":"1048576""#,
                                          with: #""org.trycua.lume.content.uncompressed-size":"18446744073709551615""#, in: manifest)
        case "part number 2^64-1":
            manifest = try replacingFirst(#""org.trycua.lume.part.number":"1""#, with: #""org.trycua.lume.part.number":"18446744073709551615""#, in: manifest)
        case "total size 2^64-1":
            manifest = try replacingFirst(#""org.trycua.lume.total-uncompressed-size":"4194304""#,
                                          with: #""org.trycua.lume.total-uncompressed-size":"18446744073709551615""#, in: manifest)
        default:
            manifest = try replacingFirst(#""org.trycua.lume.content.uncompressed-size":"1048576""#,
                                          with: #""org.trycua.lume.content.uncompressed-size":"-1048576""#, in: manifest)
        }
        _ = try client.putManifest(repository, reference: "bad", bytes: Array(manifest.utf8), mediaType: .ociManifest)
        try Self.expectCleanFailure(reference: "\(registry.address)/\(repository):bad", scratch: scratch, expected: testCase.expected)
    }

    // MARK: - Helpers

    /// `mount` and `pull` of `reference` both fail with status 1 and a message containing `expected`.
    static func expectCleanFailure(reference: String, scratch: String, expected: String) throws {
        let id = UUID().uuidString.prefix(8)
        let mountpoint = "\(scratch)/mnt-\(id)"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        defer {
            if MountSupport.isMounted(mountpoint) { _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", mountpoint], timeout: 30) }
            TestEnvironment.remove(mountpoint)
            TestEnvironment.remove("\(scratch)/pull-\(id)")
        }
        let mount = try imgfs(["mount", "--cache-dir", "\(scratch)/cache", reference, mountpoint], timeout: 120)
        #expect(mount.status == 1, "mount: \(mount)")
        #expect(mount.stderr.contains(expected), "mount: \(mount)")
        #expect(!MountSupport.isMounted(mountpoint))
        let pull = try imgfs(["pull", "--quiet", reference, "\(scratch)/pull-\(id)"], timeout: 120)
        #expect(pull.status == 1, "pull: \(pull)")
        #expect(pull.stderr.contains(expected), "pull: \(pull)")
        for result in [mount, pull] {
            #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("overflow"), "\(result)")
        }
    }

    /// Pushes `image` with one number changed as `testCase` says, under a new tag.
    static func pushVariant(of image: PushedImage, _ testCase: Case) throws -> String {
        let registry = try TestRegistry.shared()
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        let repository = image.repository
        var manifest = String(decoding: try client.manifest(repository, reference: "v1").bytes, as: UTF8.self)
        let parsed = try JSONDecoder().decode(Manifest.self, from: Data(manifest.utf8))
        let configBytes = try client.blob(repository, digest: parsed.config.digest, maxSize: 1 << 20)
        var config = String(decoding: configBytes, as: UTF8.self)
        guard let indexLayer = parsed.layers.first(where: { $0.mediaType.rawValue == "application/vnd.imgfs.disk.index.v1" }) else {
            throw ShellFailed(script: "find index", result: CommandResult(status: 1, stdout: manifest, stderr: "", seconds: 0))
        }
        var index = try client.blob(repository, digest: indexLayer.digest, maxSize: 16 << 20)

        func setIndex<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, byte) in $0.enumerated() { index[offset + i] = byte } }
        }
        let layerCount = Int(index[20]) | Int(index[21]) << 8
        let firstFrame = 64 + 40 * layerCount
        // The first frame that is stored (not a hole): its layer field is not 0xFFFFFFFF.
        let stored = (0..<image.holes.count).first { !image.holes[$0] } ?? 0
        let storedRecord = firstFrame + 56 * stored

        switch testCase.name {
        case "chunkSize 2^64-1": config = try replacingFirst(#""chunkSize":1048576"#, with: #""chunkSize":18446744073709551615"#, in: config)
        case "chunkSize 0": config = try replacingFirst(#""chunkSize":1048576"#, with: #""chunkSize":0"#, in: config)
        case "chunkSize not a multiple of the frame size": config = try replacingFirst(#""chunkSize":1048576"#, with: #""chunkSize":1000000"#, in: config)
        case "disk size 2^63": config = try replacingFirst(#""size":4194304"#, with: #""size":9223372036854775808"#, in: config)
        case "disk size 2^64-1": config = try replacingFirst(#""size":4194304"#, with: #""size":18446744073709551615"#, in: config)
        case "frame size 2^40": config = try replacingFirst(#""frameSize":65536"#, with: #""frameSize":1099511627776"#, in: config)
        case "frame size -1": config = try replacingFirst(#""frameSize":65536"#, with: #""frameSize":-1"#, in: config)
        case "chunk number 2^63": manifest = try replacingFirst(#""dev.imgfs.chunk.number":"1""#, with: #""dev.imgfs.chunk.number":"9223372036854775808""#, in: manifest)
        case "chunk number 2^64-1": manifest = try replacingFirst(#""dev.imgfs.chunk.number":"1""#, with: #""dev.imgfs.chunk.number":"18446744073709551615""#, in: manifest)
        case "chunk number 2^64": manifest = try replacingFirst(#""dev.imgfs.chunk.number":"1""#, with: #""dev.imgfs.chunk.number":"18446744073709551616""#, in: manifest)
        case "chunk number -1": manifest = try replacingFirst(#""dev.imgfs.chunk.number":"1""#, with: #""dev.imgfs.chunk.number":"-1""#, in: manifest)
        case "chunk number +1": manifest = try replacingFirst(#""dev.imgfs.chunk.number":"1""#, with: #""dev.imgfs.chunk.number":"+1""#, in: manifest)
        case "index frame compressed length 0": setIndex(UInt32(0), at: storedRecord + 8)
        case "index frame offset 2^64-1": setIndex(UInt64.max, at: storedRecord)
        case "index layer size 2^64-1": setIndex(UInt64.max, at: 64 + 32)
        case "index frame count 2^64-1": setIndex(UInt64.max, at: 32)
        case "index disk size 2^64-1": setIndex(UInt64.max, at: 24)
        case "layer size -1":
            manifest = try replacingFirst(#""size":\#(indexLayer.size)"#, with: #""size":-1"#, in: manifest)
        default: Issue.record("unknown case \(testCase.name)")
        }

        if Array(config.utf8) != configBytes {
            let bytes = Array(config.utf8)
            let digest = SHA256Hasher.digest(bytes)
            try client.uploadBlob(repository, digest: digest, size: Int64(bytes.count), body: .bytes(bytes))
            manifest = try replacingFirst(parsed.config.digest.description, with: digest.description, in: manifest)
            manifest = try replacingFirst(#""size":\#(configBytes.count)"#, with: #""size":\#(bytes.count)"#, in: manifest)
        }
        let originalIndex = try client.blob(repository, digest: indexLayer.digest, maxSize: 16 << 20)
        if index != originalIndex {
            let digest = SHA256Hasher.digest(index)
            try client.uploadBlob(repository, digest: digest, size: Int64(index.count), body: .bytes(index))
            manifest = try replacingFirst(indexLayer.digest.description, with: digest.description, in: manifest)
        }
        let tag = "bad-" + UUID().uuidString.prefix(8).lowercased()
        _ = try client.putManifest(repository, reference: tag, bytes: Array(manifest.utf8), mediaType: .ociManifest)
        return "\(registry.address)/\(repository):\(tag)"
    }
}

struct ReplacementNotFound: Error, CustomStringConvertible {
    var needle: String
    var description: String { "the fixture JSON has no \(needle)" }
}

/// `text` with the first `needle` replaced; a needle that is not there fails the test's setup.
func replacingFirst(_ needle: String, with replacement: String, in text: String) throws -> String {
    guard let range = text.range(of: needle) else { throw ReplacementNotFound(needle: needle) }
    return text.replacingCharacters(in: range, with: replacement)
}
