import Foundation
import Logging
import Synchronization
import Testing
import Verity
@testable import Fetch

/// A registry must not reach past HTTP: redirects, token realms and mirrors to other protocols,
/// or from https down to http, are refused before a byte is sent (issue 17).
@Suite struct URLPolicyTests {
    // MARK: - The rule

    @Test func onlyHTTPAndHTTPSAreFollowed() {
        let origin = "http://127.0.0.1:5000/v2/r/blobs/sha256:00"
        #expect(URLPolicy.check("http://other:80/x", from: origin, what: "a redirect") == nil)
        #expect(URLPolicy.check("https://s3.example/x?sig=1", from: origin, what: "a redirect") == nil)
        #expect(URLPolicy.check("HTTPS://S3.example/x", from: origin, what: "a redirect") == nil)
        for url in ["gopher://127.0.0.1:6379/_SET%20a", "dict://127.0.0.1:11211/stats", "file:///etc/hostname",
                    "ftp://127.0.0.1/x", "ldap://h/", "scp://h/x", "telnet://h:23", "smtp://h"] {
            let refusal = URLPolicy.check(url, from: origin, what: "a redirect")
            #expect(refusal != nil, "\(url)")
            #expect(refusal?.description.contains("only follows http and https") == true)
        }
        #expect(URLPolicy.check("/relative/path", from: origin, what: "a redirect") != nil)
    }

    @Test func httpsIsNeverDowngraded() {
        let refusal = URLPolicy.check("http://auth.example/token", from: "https://registry.example/v2/", what: "the token realm")
        #expect(refusal?.description.contains("downgrades https to plain http") == true)
        #expect(URLPolicy.check("https://auth.example/token", from: "https://registry.example/v2/", what: "the token realm") == nil)
    }

    @Test func refusalsNameSchemeAndHostButNotThePath() {
        let refusal = URLPolicy.check("gopher://user:pw@10.0.0.1:6379/_SECRET-PATH", from: "http://r/", what: "a redirect")
        #expect(refusal?.description.contains("gopher") == true)
        #expect(refusal?.description.contains("10.0.0.1:6379") == true)
        #expect(refusal?.description.contains("SECRET-PATH") == false)
        #expect(refusal?.description.contains("pw") == false)
    }

    @Test func mirrorsAreHostsOrHTTPURLs() throws {
        #expect(try RegistryOptions.parseMirror("mirror.local:5000").get() == .init(host: "mirror.local:5000", plainHTTP: nil))
        #expect(try RegistryOptions.parseMirror("http://127.0.0.1:5001/").get() == .init(host: "127.0.0.1:5001", plainHTTP: true))
        #expect(try RegistryOptions.parseMirror("https://m.example").get() == .init(host: "m.example", plainHTTP: false))
        for bad in ["gopher://127.0.0.1:70", "file:///etc", "ftp://m:21", "m.example/path", "", "user@m.example"] {
            guard case .failure(let error) = RegistryOptions.parseMirror(bad) else {
                Issue.record("mirror \(bad) was accepted")
                continue
            }
            #expect(error.description.contains("registry mirror"))
        }
        // A client never sends a request to a mirror it could not parse.
        let c = RegistryClient(registry: "127.0.0.1:1", options: fastOptions { $0.mirrors = ["gopher://127.0.0.1:70", "127.0.0.1:2"] },
                               credentials: StaticCredentials([:]), logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        #expect(c.mirrorEndpoints.map(\.host) == ["127.0.0.1:2"])
    }

    // MARK: - Against a hostile registry

    static let targets = [
        "gopher://127.0.0.1:{raw}/_SET%20pwned%201%0D%0AQUIT%0D%0A",
        "dict://127.0.0.1:{raw}/SET:pwned:1",
        "ftp://127.0.0.1:{raw}/pub/file",
        "telnet://127.0.0.1:{raw}",
    ]

    @Test(arguments: targets)
    func blobRedirectToAnotherProtocolIsRefused(_ target: String) throws {
        try withRedirector(["--location", target]) { server in
            let (client, log) = server.client()
            let error = try expectRefused { _ = try client.blob("r/x", digest: Self.someDigest, maxSize: 1 << 20) }
            #expect(error.description.contains("only follows http and https"), "\(error)")
            var ranged: [UInt8] = []
            _ = try expectRefused { try client.blob("r/x", digest: Self.someDigest, range: 0..<10) { ranged += $0 } }
            #expect(ranged.isEmpty)
            #expect(try server.rawTraffic() == (connections: 0, bytes: 0))
            #expect(!log.text.contains("pwned"), "the log quotes the target URL: \(log.text)")
        }
    }

    @Test func fileRedirectDoesNotReadTheFile() throws {
        let secret = "imgfs-secret-\(UUID().uuidString)"
        let path = NSTemporaryDirectory() + "imgfs-secret-\(UUID().uuidString)"
        try secret.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try withRedirector(["--location", "file://" + path]) { server in
            let (client, log) = server.client()
            let error = try expectRefused { _ = try client.blob("r/x", digest: Self.someDigest, maxSize: 1 << 20) }
            #expect(!error.description.contains(secret))
            #expect(!log.text.contains(secret))
        }
    }

    @Test(arguments: ["gopher://127.0.0.1:{raw}/_token", "file:///etc/hostname", "dict://127.0.0.1:{raw}/x"])
    func tokenRealmOfAnotherProtocolIsRefused(_ realm: String) throws {
        try withRedirector(["--realm", realm]) { server in
            let (client, _) = server.client(credentials: .basic(username: "u", password: "p"))
            let error = try expectRefused { _ = try client.blob("r/x", digest: Self.someDigest, maxSize: 1 << 20) }
            #expect(error.operation == .token)
            #expect(error.description.contains("the token realm"), "\(error)")
            #expect(try server.rawTraffic() == (connections: 0, bytes: 0))
        }
    }

    @Test func httpsRegistryIsNotFollowedDownToHTTP() throws {
        let tls = try SelfSignedCertificate()
        defer { tls.remove() }
        // A blob redirect to plain http.
        try withRedirector(["--tls-cert", tls.certificate, "--tls-key", tls.key, "--location", "http://127.0.0.1:{raw}/blob"]) { server in
            let (client, _) = server.client(tls: tls)
            let error = try expectRefused { _ = try client.blob("r/x", digest: Self.someDigest, maxSize: 1 << 20) }
            #expect(error.description.contains("downgrades https to plain http"), "\(error)")
            #expect(try server.rawTraffic() == (connections: 0, bytes: 0))
        }
        // A token realm on plain http: the basic credentials would cross the network in clear.
        try withRedirector(["--tls-cert", tls.certificate, "--tls-key", tls.key, "--realm", "http://127.0.0.1:{raw}/token"]) { server in
            let (client, _) = server.client(credentials: .basic(username: "u", password: "secret"), tls: tls)
            let error = try expectRefused { _ = try client.blob("r/x", digest: Self.someDigest, maxSize: 1 << 20) }
            #expect(error.operation == .token)
            #expect(error.description.contains("downgrades https to plain http"), "\(error)")
            #expect(try server.rawTraffic() == (connections: 0, bytes: 0))
        }
    }

    static let someDigest = SHA256Hasher.digest([1, 2, 3])

    private func expectRefused(_ body: () throws -> Void) throws -> FetchError {
        do {
            try body()
        } catch let error as FetchError {
            guard case .refusedURL = error.kind else {
                Issue.record("expected a refused URL, got \(error)")
                return error
            }
            return error
        }
        Issue.record("the transfer succeeded")
        throw TestRegistry.Unavailable(description: "no error")
    }
}

/// Every log line a client wrote, to check nothing it should not know appears in them.
final class CapturedLog: @unchecked Sendable {
    private let lines = Mutex<[String]>([])
    var text: String { lines.withLock { $0.joined(separator: "\n") } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            log.append("\(level) \(message) \(metadata ?? [:])")
        }
    }
}

/// A self-signed certificate for 127.0.0.1, made with the openssl command.
struct SelfSignedCertificate {
    let directory = NSTemporaryDirectory() + "imgfs-tls-\(UUID().uuidString)"
    var certificate: String { directory + "/cert.pem" }
    var key: String { directory + "/key.pem" }

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let (status, output) = try TestRegistry.run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", certificate,
        ])
        guard status == 0 else { throw TestRegistry.Unavailable(description: "openssl req failed: \(output)") }
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// Fixtures/redirector.py: the hostile registry and the raw TCP listener it points to.
final class Redirector {
    let process = Process()
    let host: String
    let rawPort: Int

    static let script = TestRegistry.packageRoot.appendingPathComponent("Tests/FetchTests/Fixtures/redirector.py").path

    init(_ arguments: [String]) throws {
        let words = try startFixture(process, [Self.script] + arguments).split(separator: " ").map(String.init)
        guard words.count == 2, words[0].hasPrefix("127.0.0.1:"), let raw = Int(words[1]) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TestRegistry.Unavailable(description: "redirector.py did not start: \(words)")
        }
        host = words[0]
        rawPort = raw
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    func client(credentials: Credentials? = nil, tls: SelfSignedCertificate? = nil) -> (RegistryClient, CapturedLog) {
        let log = CapturedLog()
        let client = RegistryClient(
            registry: host,
            options: fastOptions {
                $0.maxAttempts = 2
                if let tls {
                    $0.plainHTTP = false
                    $0.caBundle = tls.certificate
                }
            },
            credentials: StaticCredentials(credentials.map { [host: $0] } ?? [:]),
            logger: Logger(label: "imgfs.fetch.tests") { _ in CapturedLog.Handler(log: log) })
        return (client, log)
    }

    /// What the raw listener received: it must stay (0, 0).
    func rawTraffic() throws -> (connections: Int, bytes: Int) {
        // Give a connection that would have been made time to be counted.
        usleep(200_000)
        let scheme = process.arguments?.contains("--tls-cert") == true ? "https" : "http"
        let (_, output) = try TestRegistry.run("/usr/bin/curl", ["-sk", "--noproxy", "*", "\(scheme)://\(host)/_admin/stats"])
        let stats = (try? JSONDecoder().decode([String: Int].self, from: Data(output.utf8))) ?? [:]
        guard let connections = stats["raw_connections"], let bytes = stats["raw_bytes"] else {
            throw TestRegistry.Unavailable(description: "redirector stats unreadable: \(output)")
        }
        return (connections, bytes)
    }
}

func withRedirector(_ arguments: [String], _ body: (Redirector) throws -> Void) throws {
    let server = try Redirector(arguments)
    defer { server.stop() }
    try body(server)
}
