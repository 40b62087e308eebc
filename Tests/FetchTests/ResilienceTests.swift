import Foundation
import Testing
import Threading
import Verity
@testable import Fetch

@Suite struct ResilienceTests {
    @Test func retriesOn503() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { proxy in
                let c = client(proxy.host)
                let repository = uniqueRepository()
                let bytes = try pushImage(c, repository: repository, tag: "v1", layer: [1])
                try proxy.admin("fault?status=503&count=2")
                #expect(try c.manifest(repository, reference: "v1").bytes == bytes)
                #expect(try proxy.admin("stats")["faults_served"] == 2)
                #expect(c.statistics.retries == 2)
            }
        }
    }

    @Test func honoursRetryAfterOn429() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { proxy in
                let c = client(proxy.host)
                let repository = uniqueRepository()
                let layer = randomBytes(1000)
                _ = try pushImage(c, repository: repository, tag: "v1", layer: layer)
                try proxy.admin("fault?status=429&count=1&retry_after=1")
                let start = ContinuousClock.now
                #expect(try c.blob(repository, digest: SHA256Hasher.digest(layer), maxSize: 10_000) == layer)
                #expect(ContinuousClock.now - start >= .milliseconds(950))
            }
        }
    }

    @Test func givesUpAfterMaxAttemptsWithTypedStatus() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { proxy in
                let c = client(proxy.host) { $0.maxAttempts = 3 }
                try proxy.admin("fault?status=503&count=10")
                do throws(FetchError) {
                    _ = try c.manifest("vm/disk", reference: "v1")
                    Issue.record("expected 503")
                } catch {
                    #expect(error.kind == .httpStatus)
                    #expect(error.status == 503)
                    #expect(error.isTransient)
                    #expect(error.description == "registry \(proxy.host) failed to get manifest vm/disk:v1 (HTTP 503 UNAVAILABLE: injected fault)")
                }
                #expect(try proxy.admin("stats")["faults_served"] == 3)
            }
        }
    }

    /// A body that trickles in at 2 KiB/s stays above libcurl's low-speed limit; the call's
    /// deadline, which becomes each transfer's CURLOPT_TIMEOUT_MS, is what ends it.
    @Test func aRangeFetchEndsByItsDeadlineWhenTheBodyTrickles() throws {
        try withRegistry { registry in
            let repository = uniqueRepository()
            let layer = randomBytes(64 * 1024)
            _ = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: layer)
            let process = Process()
            let host = try startFixture(process, [TestRegistry.hostileScript, "--upstream", registry.host, "--mode", "trickle", "--trickle-rate", "2048"])
            defer {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            try #require(host.hasPrefix("127.0.0.1:"), "hostile_registry.py did not start: \(host)")
            let c = client(host)
            var received = 0
            let start = ContinuousClock.now
            do throws(FetchError) {
                try c.blob(repository, digest: SHA256Hasher.digest(layer), range: 0..<Int64(layer.count), deadline: monotonicNow() + 2) {
                    received += $0.count
                }
                Issue.record("64 KiB at 2 KiB/s cannot arrive within 2 s")
            } catch {
                guard case .timeout = error.kind else { Issue.record("expected a timeout, got \(error)"); return }
            }
            let elapsed = ContinuousClock.now - start
            #expect(elapsed < .milliseconds(2500), "took \(elapsed)")
            #expect(received > 0, "the body was arriving when the deadline ended it")
            #expect(c.statistics.retries == 0, "no retry starts past the deadline")
        }
    }

    /// The client's own retries (of a 503 here) stop at the caller's deadline: none starts that
    /// could not begin before it, so the caller gets the last answer by then.
    @Test func retriesStopAtTheDeadline() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { proxy in
                let c = client(proxy.host) {
                    $0.maxAttempts = 10
                    $0.retryBaseDelay = .milliseconds(400)
                }
                try proxy.admin("fault?status=503&count=20")
                let start = ContinuousClock.now
                do throws(FetchError) {
                    try c.blob("vm/disk", digest: SHA256Hasher.digest([1]), range: 0..<1, deadline: monotonicNow() + 1) { _ in }
                    Issue.record("expected 503")
                } catch {
                    #expect(error.status == 503, "\(error)")
                }
                #expect(ContinuousClock.now - start < .milliseconds(1300))
                // Backoff of 200-400 ms, then 400-800 ms: the third attempt at the latest.
                let served = try proxy.admin("stats")["faults_served"] ?? 0
                #expect(served >= 1 && served <= 3, "\(served) attempts")
            }
        }
    }

    @Test func connectionRefusedIsClearAndQuick() throws {
        // A port that was free a moment ago and is closed now.
        let socket = try ServerSocketPort()
        let port = socket.port
        socket.close()
        let host = "127.0.0.1:\(port)"
        let c = client(host)
        let start = ContinuousClock.now
        do throws(FetchError) {
            _ = try c.blobSize("vm/disk", digest: SHA256Hasher.digest([1]))
            Issue.record("expected a connection error")
        } catch {
            #expect(error.kind == .connection("Connection refused"))
            #expect(error.description == "cannot connect to registry \(host): Connection refused")
        }
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test func mirrorIsTriedFirstAndFallsBack() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { mirror in
                let upstream = client(registry.host)
                let repository = uniqueRepository()
                let bytes = try pushImage(upstream, repository: repository, tag: "v1", layer: [1])
                // A mirror that works serves the pull.
                let viaMirror = client(registry.host) { $0.mirrors = [mirror.host] }
                #expect(try viaMirror.manifest(repository, reference: "v1").bytes == bytes)
                #expect((try mirror.admin("stats")["requests"] ?? 0) >= 1)
                // A mirror that is down is skipped.
                let dead = try ServerSocketPort()
                let deadHost = "127.0.0.1:\(dead.port)"
                dead.close()
                let viaDeadMirror = client(registry.host) { $0.mirrors = [deadHost]; $0.maxAttempts = 1 }
                #expect(try viaDeadMirror.manifest(repository, reference: "v1").bytes == bytes)
            }
        }
    }
}

/// Binds an ephemeral port on 127.0.0.1 to learn a free port number.
struct ServerSocketPort {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard bound == 0 else { throw TestRegistry.Unavailable(description: "cannot bind a port") }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}
