import Foundation
import Testing
import Verity
@testable import Fetch

@Suite struct AuthTests {
    @Test func basicAuthWithRightCredentials() throws {
        try withRegistry(auth: true) { registry in
            let c = client(registry.host, credentials: .basic(username: registry.user ?? "", password: registry.password ?? ""))
            let repository = uniqueRepository()
            let bytes = try pushImage(c, repository: repository, tag: "v1", layer: randomBytes(100))
            #expect(try c.manifest(repository, reference: "v1").bytes == bytes)
        }
    }

    @Test func basicAuthWithWrongPasswordFailsFast() throws {
        try withRegistry(auth: true) { registry in
            let c = client(registry.host, credentials: .basic(username: registry.user ?? "", password: "wrong"))
            let start = ContinuousClock.now
            do throws(FetchError) {
                _ = try c.manifest("vm/disk", reference: "v1")
                Issue.record("expected 401")
            } catch {
                #expect(error.kind == .unauthorized)
                #expect(error.status == 401)
                #expect(error.description == "registry \(registry.host) refused credentials for vm/disk (HTTP 401 UNAUTHORIZED: authentication required)")
            }
            #expect(ContinuousClock.now - start < .seconds(2))
            #expect(c.statistics.retries == 0)
        }
    }

    @Test func basicAuthWithoutCredentialsSaysSo() throws {
        try withRegistry(auth: true) { registry in
            let c = client(registry.host)
            do throws(FetchError) {
                _ = try c.blobSize("vm/disk", digest: SHA256Hasher.digest([1]))
                Issue.record("expected 401")
            } catch {
                #expect(error.kind == .authenticationRequired)
                #expect(error.description.contains("requires credentials for vm/disk"))
            }
        }
    }

    @Test(arguments: [false, true])
    func bearerTokenFlow(accessToken: Bool) throws {
        try withRegistry { registry in
            var extra = ["--bearer", "--user", "alice", "--password", "pw"]
            if accessToken { extra.append("--access-token") }
            try withProxy(upstream: registry.host, extra) { proxy in
                let c = client(proxy.host, credentials: .basic(username: "alice", password: "pw"))
                let repository = uniqueRepository()
                let bytes = try pushImage(c, repository: repository, tag: "v1", layer: randomBytes(5000))
                #expect(try c.manifest(repository, reference: "v1").bytes == bytes)
                let issued = try proxy.admin("stats")["tokens_issued"] ?? 0
                // One push token and one pull token would be ideal; a push token covers pulls.
                #expect(issued >= 1 && issued <= 3)
                // Cached: more requests need no more tokens.
                _ = try c.manifest(repository, reference: "v1")
                #expect(try proxy.admin("stats")["tokens_issued"] == issued)
            }
        }
    }

    @Test func bearerTokenWithWrongPasswordFailsFast() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host, ["--bearer", "--user", "alice", "--password", "pw"]) { (proxy: FixtureProxy) throws in
                let c = client(proxy.host, credentials: .basic(username: "alice", password: "nope"))
                let start = ContinuousClock.now
                do throws(FetchError) {
                    _ = try c.manifest("vm/disk", reference: "v1")
                    Issue.record("expected 401")
                } catch {
                    #expect(error.kind == .unauthorized)
                    #expect(error.operation == .token)
                    #expect(error.description.contains("refused credentials for vm/disk (HTTP 401 UNAUTHORIZED: invalid username or password)"))
                }
                #expect(ContinuousClock.now - start < .seconds(2))
                #expect(try proxy.admin("stats")["token_denied"] == 1)
            }
        }
    }

    @Test func expiredTokenIsRefreshed() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host, ["--bearer", "--token-ttl", "2"]) { proxy in
                let c = client(proxy.host)
                let repository = uniqueRepository()
                let bytes = try pushImage(c, repository: repository, tag: "v1", layer: [1, 2, 3])
                let before = try proxy.admin("stats")["tokens_issued"] ?? 0
                Thread.sleep(forTimeInterval: 2.2)
                #expect(try c.manifest(repository, reference: "v1").bytes == bytes)
                #expect((try proxy.admin("stats")["tokens_issued"] ?? 0) > before)
            }
        }
    }

    @Test func revokedTokenIsReplacedAfterOne401() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host, ["--bearer"]) { proxy in
                let c = client(proxy.host)
                let repository = uniqueRepository()
                let bytes = try pushImage(c, repository: repository, tag: "v1", layer: [1, 2, 3])
                _ = try c.manifest(repository, reference: "v1")
                let before = try proxy.admin("stats")
                try proxy.admin("revoke")
                #expect(try c.manifest(repository, reference: "v1").bytes == bytes)
                let after = try proxy.admin("stats")
                #expect(after["tokens_issued"] == (before["tokens_issued"] ?? 0) + 1)
                #expect(after["unauthorized"] == (before["unauthorized"] ?? 0) + 1)
            }
        }
    }

    @Test func redirectDoesNotLeakAuthorization() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host, ["--bearer"]) { proxy in
                let c = client(proxy.host)
                let repository = uniqueRepository()
                let layer = randomBytes(50_000)
                _ = try pushImage(c, repository: repository, tag: "v1", layer: layer)
                try proxy.admin("redirect?on=1")
                let digest = SHA256Hasher.digest(layer)
                #expect(try c.blob(repository, digest: digest, maxSize: 1 << 20) == layer)
                var part: [UInt8] = []
                try c.blob(repository, digest: digest, range: 100..<200) { part.append(contentsOf: $0) }
                #expect(part == Array(layer[100..<200]))
                let stats = try proxy.admin("stats")
                #expect(stats["blobstore_requests"] == 2)
                #expect(stats["blobstore_auth_headers"] == 0)
            }
        }
    }
}
