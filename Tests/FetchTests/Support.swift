import Foundation
import Testing
import Verity
@testable import Fetch

/// Finds or starts the registries the tests talk to, and cleans up what it started.
///
/// `IMGFS_TEST_REGISTRY` (host:port) names an existing registry; `IMGFS_TEST_AUTH_REGISTRY`
/// with `IMGFS_TEST_AUTH_USER`/`IMGFS_TEST_AUTH_PASSWORD` one with basic auth. Otherwise
/// `contrib/test/registry.sh` starts one for the test and stops it afterwards. With
/// `CI=true` a registry that cannot be had fails the test instead of skipping it.
struct TestRegistry {
    var host: String
    var user: String?
    var password: String?
    /// Set when this process started the registry and must stop it.
    var directory: URL?

    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let script = packageRoot.appendingPathComponent("contrib/test/registry.sh").path
    static let proxyScript = packageRoot.appendingPathComponent("Tests/FetchTests/Fixtures/proxy.py").path
    static let hostileScript = packageRoot.appendingPathComponent("Tests/FetchTests/Fixtures/hostile_registry.py").path
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    struct Unavailable: Error, CustomStringConvertible {
        var description: String
    }

    static func start(withAuth: Bool) throws -> TestRegistry {
        let env = ProcessInfo.processInfo.environment
        if withAuth, let host = env["IMGFS_TEST_AUTH_REGISTRY"], let user = env["IMGFS_TEST_AUTH_USER"], let password = env["IMGFS_TEST_AUTH_PASSWORD"] {
            return TestRegistry(host: host, user: user, password: password)
        }
        if !withAuth, let host = env["IMGFS_TEST_REGISTRY"] {
            return TestRegistry(host: host)
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("imgfs-registry-\(UUID().uuidString)")
        var arguments = ["start", directory.path]
        let (user, password) = withAuth ? ("imgfs", "s3cret-\(Int.random(in: 1000...9999))") : (nil, nil)
        if let user, let password { arguments += ["--htpasswd", "\(user):\(password)"] }
        let (status, output) = try run("/bin/bash", [script] + arguments)
        guard status == 0, let host = output.split(separator: "\n").last.map(String.init), host.contains(":") else {
            try? FileManager.default.removeItem(at: directory)
            throw Unavailable(description: "registry.sh start failed (\(status)): \(output)")
        }
        return TestRegistry(host: host, user: user, password: password, directory: directory)
    }

    func stop() {
        guard let directory else { return }
        _ = try? Self.run("/bin/bash", [Self.script, "stop", directory.path])
        try? FileManager.default.removeItem(at: directory)
    }

    var log: String {
        guard let directory else { return "" }
        return (try? String(contentsOf: directory.appendingPathComponent("registry.log"), encoding: .utf8)) ?? ""
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// Runs `body` with a registry; when none can be had, fails under CI and skips (with a note) elsewhere.
func withRegistry(auth: Bool = false, _ body: (TestRegistry) throws -> Void) throws {
    let registry: TestRegistry
    do {
        registry = try TestRegistry.start(withAuth: auth)
    } catch {
        if TestRegistry.isCI { throw error }
        print("note: skipping, no test registry: \(error)")
        return
    }
    defer { registry.stop() }
    try body(registry)
}

/// The Python fixture proxy (Fixtures/proxy.py) in front of a registry; terminated on return.
final class FixtureProxy {
    let process = Process()
    let host: String

    init(upstream: String, arguments: [String] = []) throws {
        host = try startFixture(process, [TestRegistry.proxyScript, "--upstream", upstream] + arguments)
        guard host.hasPrefix("127.0.0.1:") else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TestRegistry.Unavailable(description: "proxy.py did not start: \(host)")
        }
    }

    func stop() {
        // SIGKILL: children of Foundation's Process may start with SIGTERM blocked.
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Calls an /_admin/ endpoint and returns its JSON object.
    @discardableResult
    func admin(_ path: String) throws -> [String: Int] {
        let (_, output) = try TestRegistry.run("/usr/bin/curl", ["-s", "--noproxy", "*", "http://\(host)/_admin/\(path)"])
        return (try? JSONDecoder().decode([String: Int].self, from: Data(output.utf8))) ?? [:]
    }
}

/// Starts a Python fixture script and returns the first line it prints (its address).
func startFixture(_ process: Process, _ arguments: [String]) throws -> String {
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3"] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
        let chunk = pipe.fileHandleForReading.availableData
        if chunk.isEmpty { break }
        line.append(chunk)
    }
    return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

func withProxy(upstream: String, _ arguments: [String] = [], _ body: (FixtureProxy) throws -> Void) throws {
    let proxy = try FixtureProxy(upstream: upstream, arguments: arguments)
    defer { proxy.stop() }
    try body(proxy)
}

/// A repository name no other test uses, so tests can share an external registry.
func uniqueRepository(_ prefix: String = "test") -> String {
    "imgfs-\(prefix)/r\(UInt32.random(in: 0...UInt32.max))"
}

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var bytes = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        var word = generator.next() as UInt64
        for _ in 0..<8 where i < count {
            bytes[i] = UInt8(truncatingIfNeeded: word)
            word >>= 8
            i += 1
        }
    }
    return bytes
}

func fastOptions(_ customize: (inout RegistryOptions) -> Void = { _ in }) -> RegistryOptions {
    var options = RegistryOptions(connectTimeout: .seconds(3), lowSpeedTimeout: .seconds(10), retryBaseDelay: .milliseconds(50), mirrors: [])
    customize(&options)
    return options
}

func client(_ host: String, credentials: Credentials? = nil, _ customize: (inout RegistryOptions) -> Void = { _ in }) -> RegistryClient {
    RegistryClient(
        registry: host, options: fastOptions(customize),
        credentials: StaticCredentials(credentials.map { [host: $0] } ?? [:]))
}

/// Uploads a small config + one layer and returns the manifest bytes pushed.
func pushImage(_ c: RegistryClient, repository: String, tag: String, layer: [UInt8]) throws -> [UInt8] {
    let config = Array(#"{"architecture":"amd64","os":"linux"}"#.utf8)
    let configDigest = SHA256Hasher.digest(config)
    let layerDigest = SHA256Hasher.digest(layer)
    try c.uploadBlob(repository, digest: configDigest, size: Int64(config.count), body: .bytes(config))
    try c.uploadBlob(repository, digest: layerDigest, size: Int64(layer.count), body: .bytes(layer))
    let manifest = """
    {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",\
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(configDigest)","size":\(config.count)},\
    "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\(layerDigest)","size":\(layer.count)}]}
    """
    let bytes = Array(manifest.utf8)
    try c.putManifest(repository, reference: tag, bytes: bytes, mediaType: .ociManifest)
    return bytes
}
