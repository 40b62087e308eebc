import Foundation
import Testing
import Verity
@testable import Fetch

/// A mirror may make pulls faster, never fail them and never multiply what upstream serves.
/// Each test puts proxy.py, made to misbehave as one kind of mirror does, in front of the test
/// registry and reads through it as a mount does.
@Suite struct MirrorTests {
    /// A range of `blob` read through `c` into memory.
    func read(_ c: RegistryClient, _ repository: String, _ digest: Digest, _ range: Range<Int64>, mirrors: Bool = true) throws -> [UInt8] {
        var bytes: [UInt8] = []
        try c.blob(repository, digest: digest, range: range, mirrors: mirrors) { bytes.append(contentsOf: $0) }
        return bytes
    }

    @Test func rangesWaitForAFillingMirrorThenUseIt() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { mirror in
                let repository = uniqueRepository("mirror")
                let layer = randomBytes(3 << 20)
                _ = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: layer)
                let digest = SHA256Hasher.digest(layer)
                try mirror.admin("mirror?whole_blob=1")
                // The mirror "finishes filling" the blob 0.6 s from now.
                let admin = "http://\(mirror.host)/_admin/mirror?whole_blob=0"
                let filled = Thread {
                    Thread.sleep(forTimeInterval: 0.6)
                    _ = try? TestRegistry.run("/usr/bin/curl", ["-s", "--noproxy", "*", admin])
                }
                filled.start()
                let c = client(registry.host) {
                    $0.mirrors = [mirror.host]; $0.wholeBlobProbeInterval = .milliseconds(200); $0.wholeBlobWait = .seconds(10)
                }
                let start = ContinuousClock.now
                let range: Range<Int64> = (1 << 20)..<(1 << 20) + 4096
                #expect(try read(c, repository, digest, range) == Array(layer[Int(range.lowerBound)..<Int(range.upperBound)]))
                // It waited for the mirror, looking every 0.2 s, instead of reading upstream.
                #expect(ContinuousClock.now - start >= .milliseconds(500))
                #expect(c.statistics.mirrorHits == 1)
                #expect(c.statistics.mirrorSkips == 0)
                let answers = try mirror.admin("stats")["whole_blob_answers"] ?? 0
                #expect(answers >= 2 && answers <= 5, "\(answers) probes")
                // Filled: later ranges go to the mirror at once.
                for _ in 0..<3 { #expect(try read(c, repository, digest, 0..<100) == Array(layer[0..<100])) }
                #expect(c.statistics.mirrorHits == 4)
            }
        }
    }

    @Test func aMirrorThatNeverFillsCostsAtMostTheWait() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { mirror in
                let repository = uniqueRepository("mirror")
                let layer = randomBytes(2 << 20)
                _ = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: layer)
                let digest = SHA256Hasher.digest(layer)
                try mirror.admin("mirror?whole_blob=1")
                let c = client(registry.host) {
                    $0.mirrors = [mirror.host]; $0.wholeBlobProbeInterval = .milliseconds(300); $0.wholeBlobWait = .seconds(1)
                }
                let start = ContinuousClock.now
                #expect(try read(c, repository, digest, 1000..<2000) == Array(layer[1000..<2000]))
                #expect(ContinuousClock.now - start < .seconds(3))
                #expect(c.statistics.mirrorSkips == 1)
                // Past the wait, ranges go upstream without waiting again.
                let second = ContinuousClock.now
                #expect(try read(c, repository, digest, 5000..<6000) == Array(layer[5000..<6000]))
                #expect(ContinuousClock.now - second < .milliseconds(900))
            }
        }
    }

    @Test func failingMirrorIsAskedOnceThenSkipped() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { mirror in
                let repository = uniqueRepository("mirror")
                let bytes = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: [7])
                try mirror.admin("fault?status=503&count=100")
                let c = client(registry.host) { $0.mirrors = [mirror.host]; $0.maxAttempts = 5 }
                let start = ContinuousClock.now
                for _ in 0..<4 { #expect(try c.manifest(repository, reference: "v1").bytes == bytes) }
                // One attempt, no retries with backoff, then the mirror is left alone for the cooldown.
                #expect(try mirror.admin("stats")["faults_served"] == 1)
                #expect(c.statistics.mirrorFailures == 1)
                #expect(c.statistics.retries == 0)
                #expect(ContinuousClock.now - start < .seconds(5))
            }
        }
    }

    @Test func stalledMirrorFallsThroughWithinTheTimeout() throws {
        try withRegistry { registry in
            // A listening socket that never accepts: connect succeeds, no answer ever comes.
            let stalled = try ListeningSocket()
            defer { stalled.close() }
            let repository = uniqueRepository("mirror")
            let bytes = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: [8])
            let c = client(registry.host) { $0.mirrors = ["127.0.0.1:\(stalled.port)"]; $0.lowSpeedTimeout = .seconds(2) }
            let start = ContinuousClock.now
            #expect(try c.manifest(repository, reference: "v1").bytes == bytes)
            #expect(ContinuousClock.now - start < .seconds(6))
            // Skipped for the cooldown: the next pull does not wait at all.
            let second = ContinuousClock.now
            #expect(try c.manifest(repository, reference: "v1").bytes == bytes)
            #expect(ContinuousClock.now - second < .seconds(1))
        }
    }

    @Test func wrongBytesFromAMirrorAreBypassed() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { mirror in
                let repository = uniqueRepository("mirror")
                let layer = randomBytes(64 << 10)
                _ = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: layer)
                let digest = SHA256Hasher.digest(layer)
                try mirror.admin("mirror?corrupt=1")
                let c = client(registry.host) { $0.mirrors = [mirror.host] }
                // Ranges are unverified here (the mount checks frames): the mirror's bad byte
                // arrives, and the retry a mount makes after a failed frame asks upstream only.
                #expect(try read(c, repository, digest, 0..<100) != Array(layer[0..<100]))
                let gets = try mirror.admin("stats")["blob_gets"] ?? 0
                #expect(try read(c, repository, digest, 0..<100, mirrors: false) == Array(layer[0..<100]))
                #expect(try mirror.admin("stats")["blob_gets"] == gets)
                // A whole small blob is verified here: the mismatch sends it upstream.
                #expect(try c.blob(repository, digest: digest, maxSize: 1 << 20) == layer)
                #expect((try mirror.admin("stats")["corrupted"] ?? 0) >= 2)
            }
        }
    }

    @Test func aWrongManifestFromAMirrorIsBypassed() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { mirror in
                let repository = uniqueRepository("mirror")
                let bytes = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: randomBytes(4 << 10))
                let digest = SHA256Hasher.digest(bytes)
                try mirror.admin("mirror?corrupt_manifests=1")
                let c = client(registry.host) { $0.mirrors = [mirror.host] }
                // Pinned by digest: the mirror's bytes fail the check and upstream answers.
                let fetched = try c.manifest(repository, reference: digest.description)
                #expect(fetched.bytes == bytes)
                #expect(fetched.digest == digest)
                #expect((try mirror.admin("stats")["corrupted"] ?? 0) >= 1)
            }
        }
    }
}

/// A TCP socket on 127.0.0.1 that listens but never accepts (a hung server).
struct ListeningSocket {
    let fd: Int32
    let port: Int

    init() throws {
        let socket = try ServerSocketPort()
        guard listen(socket.fd, 1) == 0 else { throw TestRegistry.Unavailable(description: "cannot listen") }
        fd = socket.fd
        port = socket.port
    }

    func close() { _ = Glibc.close(fd) }
}

/// contrib/mirror's nginx slice cache, started on loopback in front of the test registry (with
/// proxy.py between them to count what reaches the registry).
@Suite struct NginxMirrorTests {
    static let script = TestRegistry.packageRoot.appendingPathComponent("contrib/mirror/nginx.sh").path

    func withNginx(upstream: String, _ body: (String) throws -> Void) throws {
        let directory = NSTemporaryDirectory() + "imgfs-nginx-" + UUID().uuidString
        let (status, output) = try TestRegistry.run("/bin/bash", [Self.script, "start", directory, "http://\(upstream)"])
        guard status == 0, output.hasPrefix("127.0.0.1:") else {
            if TestRegistry.isCI { throw TestRegistry.Unavailable(description: "nginx did not start: \(output)") }
            print("note: skipping, no nginx: \(output)")
            return
        }
        defer {
            _ = try? TestRegistry.run("/bin/bash", [Self.script, "stop", directory])
            try? FileManager.default.removeItem(atPath: directory)
        }
        try body(output)
    }

    @Test func slicesAreFetchedOnceAndManifestsPassThrough() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { counter in
                try withNginx(upstream: counter.host) { nginx in
                    let repository = uniqueRepository("nginx")
                    let layer = randomBytes(3 << 20)
                    let manifest = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: layer)
                    let digest = SHA256Hasher.digest(layer)
                    let range: Range<Int64> = (3 << 19)..<(5 << 19)  // 1.5-2.5 MiB: slices 1 and 2
                    for _ in 0..<3 {
                        let host = client(registry.host) { $0.mirrors = ["http://" + nginx] }
                        #expect(try host.manifest(repository, reference: "v1").bytes == manifest)
                        var bytes: [UInt8] = []
                        try host.blob(repository, digest: digest, range: range) { bytes.append(contentsOf: $0) }
                        #expect(bytes == Array(layer[Int(range.lowerBound)..<Int(range.upperBound)]))
                        #expect(host.statistics.mirrorHits == 2)
                    }
                    // Three hosts' ranges cost the registry two 1 MiB slices; manifests were not cached.
                    let stats = try counter.admin("stats")
                    #expect(stats["blob_gets"] == 2)
                    #expect(stats["requests"].map { $0 >= 2 + 3 } == true)
                }
            }
        }
    }
}
