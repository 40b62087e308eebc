import Foundation

/// A real registry (Debian's docker-registry) on loopback.
struct TestRegistry: Sendable {
    /// host:port
    var address: String
    /// The registry's storage directory (for tampering tests) and its request log.
    var storageDirectory: String
    var logFile: String

    /// The registry `contrib/test/run` started (`IMGFS_TEST_REGISTRY`, `IMGFS_TEST_REGISTRY_DIR`),
    /// or one started for this test process and stopped when it exits.
    static func shared() throws -> TestRegistry {
        try sharedRegistry.get()
    }

    /// A registry that demands basic auth (`IMGFS_TEST_AUTH_REGISTRY` with `IMGFS_TEST_AUTH_USER` and
    /// `IMGFS_TEST_AUTH_PASSWORD`), or one started for this process.
    static func sharedWithAuth() throws -> (registry: TestRegistry, user: String, password: String) {
        try sharedAuthRegistry.get()
    }

    /// A DOCKER_CONFIG directory holding the given credentials for this registry.
    func dockerConfig(user: String, password: String, in directory: String) throws -> String {
        let auth = Data("\(user):\(password)".utf8).base64EncodedString()
        let json = #"{"auths": {"\#(address)": {"auth": "\#(auth)"}}}"#
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try json.write(toFile: directory + "/config.json", atomically: true, encoding: .utf8)
        return directory
    }

    /// The registry's storage path of a blob's bytes.
    func blobDataPath(_ digest: String) -> String {
        let hex = digest.replacingOccurrences(of: "sha256:", with: "")
        return "\(storageDirectory)/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }
}

private let sharedRegistry = Result<TestRegistry, any Error> {
    let env = TestEnvironment.environment
    if let address = env["IMGFS_TEST_REGISTRY"], let directory = env["IMGFS_TEST_REGISTRY_DIR"] {
        return TestRegistry(address: address, storageDirectory: directory + "/data", logFile: directory + "/registry.log")
    }
    let directory = try TestEnvironment.scratchDirectory("registry")
    let script = TestEnvironment.repositoryRoot + "/contrib/test/registry.sh"
    let result = try runCommand(script, ["start", directory], timeout: 60)
    guard result.status == 0 else { throw ShellFailed(script: "registry.sh start", result: result) }
    let address = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    registryToStop = directory
    atexit {
        if let directory = registryToStop {
            _ = try? runCommand(TestEnvironment.repositoryRoot + "/contrib/test/registry.sh", ["stop", directory], timeout: 30)
        }
    }
    return TestRegistry(address: address, storageDirectory: directory + "/data", logFile: directory + "/registry.log")
}

private let sharedAuthRegistry = Result<(registry: TestRegistry, user: String, password: String), any Error> {
    let env = TestEnvironment.environment
    if let address = env["IMGFS_TEST_AUTH_REGISTRY"], let user = env["IMGFS_TEST_AUTH_USER"], let password = env["IMGFS_TEST_AUTH_PASSWORD"] {
        return (TestRegistry(address: address, storageDirectory: "", logFile: ""), user, password)
    }
    let directory = try TestEnvironment.scratchDirectory("auth-registry")
    let script = TestEnvironment.repositoryRoot + "/contrib/test/registry.sh"
    let result = try runCommand(script, ["start", directory, "--htpasswd", "imgfs-test:correct-horse"], timeout: 60)
    guard result.status == 0 else { throw ShellFailed(script: "registry.sh start --htpasswd", result: result) }
    authRegistryToStop = directory
    atexit {
        if let directory = authRegistryToStop {
            _ = try? runCommand(TestEnvironment.repositoryRoot + "/contrib/test/registry.sh", ["stop", directory], timeout: 30)
        }
    }
    let address = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    return (TestRegistry(address: address, storageDirectory: directory + "/data", logFile: directory + "/registry.log"), "imgfs-test", "correct-horse")
}

nonisolated(unsafe) private var registryToStop: String?
nonisolated(unsafe) private var authRegistryToStop: String?
