import Foundation
import Testing
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
