import Foundation
import Testing

/// Issue 2's "Must show", against the real registry: a pushed corpus reassembles with plain curl
/// and gunzip, its fs-verity digest matches `fsverity digest`, re-pushes upload only what changed,
/// and bad input fails fast with one line.
@Suite(.serialized) struct PushIntegrationTests {
    struct PushSummary: Decodable {
        var manifestDigest: String
        var blobsUploaded: Int
        var blobsSkipped: Int
        var chunkLayers: Int
        var fsverityDigest: String
        var diskSize: UInt64
        var frameSize: Int
        var frames: Int
    }

    struct ManifestJSON: Decodable {
        struct Layer: Decodable {
            var mediaType: String
            var digest: String
            var size: Int64
            var annotations: [String: String]?
        }
        var schemaVersion: Int
        var mediaType: String?
        var config: Layer
        var layers: [Layer]
        var annotations: [String: String]?
    }

    func push(_ source: String, _ reference: String, _ extra: [String] = []) throws -> PushSummary {
        let result = try imgfs(["push", "--quiet", "--json"] + extra + [source, reference])
        #expect(result.status == 0, "\(result)")
        return try JSONDecoder().decode(PushSummary.self, from: Data(result.stdout.utf8))
    }

    func inspect(_ reference: String) throws -> ManifestJSON {
        let raw = try shell("skopeo inspect --raw --tls-verify=false docker://\(reference)")
        return try JSONDecoder().decode(ManifestJSON.self, from: Data(raw.utf8))
    }

    @Test func multiLayerPushReassemblesWithCurlAndGunzip() throws {
        let registry = try TestRegistry.shared()
        let corpus = try Corpus.path()
        let repository = TestEnvironment.repository("multi")
        let summary = try push(corpus, "\(registry.address)/\(repository):v1")

        let manifest = try inspect("\(registry.address)/\(repository):v1")
        #expect(manifest.schemaVersion == 2)
        #expect(manifest.mediaType == "application/vnd.oci.image.manifest.v1+json")
        #expect(manifest.config.mediaType == "application/vnd.imgfs.config.v1+json")
        let chunks = manifest.layers.filter { $0.mediaType == "application/vnd.imgfs.disk.chunk.v1+gzip" }
        #expect(chunks.count == summary.chunkLayers)
        #expect(chunks.count > 1, "an 8 GiB corpus with 512 MiB chunks has several chunk layers")
        // The summary names the frame size push chose, as the manifest does.
        #expect(manifest.annotations?["dev.imgfs.disk.frame-size"] == String(summary.frameSize))
        #expect(summary.frames == Int((summary.diskSize + UInt64(summary.frameSize) - 1) / UInt64(summary.frameSize)))

        let scratch = try TestEnvironment.scratchDirectory("reassemble")
        defer { TestEnvironment.remove(scratch) }
        let out = scratch + "/disk.img"
        let annotated = try shell("python3 \(TestEnvironment.repositoryRoot)/contrib/test/reassemble.py \(registry.address) \(repository) v1 \(out)")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try shell("cmp \(corpus) \(out)")
        let expected = try shell("fsverity digest --compact \(corpus)").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(annotated == "sha256:" + expected)
        #expect(summary.fsverityDigest == "sha256:" + expected)
        // Holes stay holes: the reassembled file allocates about what the source does, not 8 GiB.
        let allocated = try shell("du -k \(out) | cut -f1").trimmingCharacters(in: .whitespacesAndNewlines)
        let apparent = try shell("du -k --apparent-size \(out) | cut -f1").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect((Int(allocated) ?? .max) < (Int(apparent) ?? 0) / 2)
    }

    @Test func singleLayerGunzipsToTheExactDisk() throws {
        let registry = try TestRegistry.shared()
        let corpus = try Corpus.path()
        let repository = TestEnvironment.repository("single")
        _ = try push(corpus, "\(registry.address)/\(repository):v1", ["--single-layer"])
        let manifest = try inspect("\(registry.address)/\(repository):v1")
        let chunks = manifest.layers.filter { $0.mediaType == "application/vnd.imgfs.disk.chunk.v1+gzip" }
        try #require(chunks.count == 1)
        try shell("curl -fsS http://\(registry.address)/v2/\(repository)/blobs/\(chunks[0].digest) | gunzip -c | cmp - \(corpus)")
    }

    @Test func repushUploadsNothingAndAOneBlockEditUploadsOneChunk() throws {
        let registry = try TestRegistry.shared()
        let corpus = try Corpus.path()
        let repository = TestEnvironment.repository("edit")
        let first = try push(corpus, "\(registry.address)/\(repository):v1")
        #expect(first.blobsUploaded > 0)

        let again = try push(corpus, "\(registry.address)/\(repository):v1")
        #expect(again.blobsUploaded == 0, "a re-push must upload no blob")
        #expect(again.manifestDigest == first.manifestDigest)

        // Change one 4 KiB block inside the data the corpus holds.
        let scratch = try TestEnvironment.scratchDirectory("edit")
        defer { TestEnvironment.remove(scratch) }
        let copy = scratch + "/disk.img"
        try shell("cp --sparse=always \(corpus) \(copy)")
        let dataStart = try shell("python3 -c 'import os; f=os.open(\"\(copy)\", os.O_RDONLY); print(os.lseek(f, 64<<20, os.SEEK_DATA))'")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let block = (Int(dataStart) ?? 0) / 4096 + 3
        try shell("head -c 4096 /dev/urandom | dd of=\(copy) bs=4096 seek=\(block) conv=notrunc status=none")

        let edited = try push(copy, "\(registry.address)/\(repository):v2")
        #expect(edited.blobsUploaded == 2, "one chunk layer and the index; got \(edited.blobsUploaded)")
        let v1 = try inspect("\(registry.address)/\(repository):v1")
        let v2 = try inspect("\(registry.address)/\(repository):v2")
        let changed = Set(v2.layers.map(\.digest)).subtracting(v1.layers.map(\.digest))
        #expect(changed.count == 2, "index and one chunk layer differ: \(changed)")
        #expect(v1.config.digest == v2.config.digest)
    }

    @Test func credentialsComeFromTheDockerConfigAndWrongOnesFailFast() throws {
        let (registry, user, password) = try TestRegistry.sharedWithAuth()
        let scratch = try TestEnvironment.scratchDirectory("auth")
        defer { TestEnvironment.remove(scratch) }
        try shell("truncate -s 4M \(scratch)/disk.img && head -c 100000 /dev/urandom | dd of=\(scratch)/disk.img conv=notrunc status=none")
        let reference = "\(registry.address)/it/auth:1"

        let good = try registry.dockerConfig(user: user, password: password, in: scratch + "/good")
        let accepted = try imgfs(["push", "--quiet", scratch + "/disk.img", reference], environment: ["DOCKER_CONFIG": good], timeout: 60)
        #expect(accepted.status == 0, "\(accepted)")
        #expect(accepted.stdout.hasPrefix("sha256:"))

        // `imgfs login` checks the password before storing it, and what it stores is what push reads.
        let loginConfig = scratch + "/login"
        let refusedLogin = try runCommand(TestEnvironment.imgfs, ["login", "-u", user, "--password-stdin", registry.address],
                                          environment: ["DOCKER_CONFIG": loginConfig], timeout: 60, standardInput: "wrong\n")
        #expect(refusedLogin.status != 0, "\(refusedLogin)")
        #expect(!FileManager.default.fileExists(atPath: loginConfig + "/config.json"))
        let login = try runCommand(TestEnvironment.imgfs, ["login", "-u", user, "--password-stdin", registry.address],
                                   environment: ["DOCKER_CONFIG": loginConfig], timeout: 60, standardInput: password + "\n")
        #expect(login.status == 0, "\(login)")
        let afterLogin = try imgfs(["push", "--quiet", scratch + "/disk.img", reference], environment: ["DOCKER_CONFIG": loginConfig], timeout: 60)
        #expect(afterLogin.status == 0, "\(afterLogin)")

        let bad = try registry.dockerConfig(user: user, password: "wrong-" + password, in: scratch + "/bad")
        for environment in [["DOCKER_CONFIG": bad], ["DOCKER_CONFIG": scratch + "/none"]] {
            let refused = try imgfs(["push", "--quiet", scratch + "/disk.img", reference], environment: environment, timeout: 60)
            #expect(refused.status != 0, "\(refused)")
            #expect(refused.seconds < 30)
            #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
            #expect(refused.stderr.contains(registry.address), "\(refused.stderr)")
            #expect(refused.stderr.contains("401"), "\(refused.stderr)")
        }
    }

    @Test func badInputFailsFastWithOneLine() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("errors")
        defer { TestEnvironment.remove(scratch) }
        try shell("mkdir -p \(scratch)/empty-vm \(scratch)/dir-vm/disk.img && ln -s /nonexistent \(scratch)/dangling.img && truncate -s 1M \(scratch)/ok.img")

        let cases: [(arguments: [String], mentions: String)] = [
            (["push", "\(scratch)/missing.img", "\(registry.address)/it/err:1"], "missing.img"),
            (["push", "\(scratch)/empty-vm", "\(registry.address)/it/err:1"], "disk.img"),
            (["push", "\(scratch)/dir-vm", "\(registry.address)/it/err:1"], "disk.img"),
            (["push", "\(scratch)/dangling.img", "\(registry.address)/it/err:1"], "dangling.img"),
            (["push", "\(scratch)/ok.img", "127.0.0.1:9/it/err:1"], "127.0.0.1:9"),
            (["push", "\(scratch)/ok.img", "Bad//Reference::x"], "Bad//Reference::x"),
            (["push", "--frame-size", "3000", "\(scratch)/ok.img", "\(registry.address)/it/err:1"], "frame"),
        ]
        for (arguments, mention) in cases {
            let result = try imgfs(arguments, timeout: 60)
            #expect(result.status != 0, "\(arguments): \(result)")
            #expect(result.seconds < 30, "\(arguments) took \(result.seconds) s")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(arguments): one line expected: \(result.stderr)")
            #expect(result.stderr.contains(mention), "\(arguments): should name \(mention): \(result.stderr)")
            #expect(!result.stderr.contains("Fatal error"), "\(arguments) crashed: \(result.stderr)")
        }
    }
}
