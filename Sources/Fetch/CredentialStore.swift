import FoundationEssentials
import Glibc
import SystemIO

/// What a client may present to a registry.
public enum Credentials: Sendable, Equatable {
    case basic(username: String, password: String)
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token realm.
    case identityToken(String)
}

/// Where credentials come from; a small protocol so tests and the command line can supply their own.
public protocol CredentialProvider: Sendable {
    func credentials(forRegistry registry: String) -> Credentials?
}

/// Credentials fixed at construction, by registry host (for tests and `--username`/`--password`).
public struct StaticCredentials: CredentialProvider {
    public var byRegistry: [String: Credentials]
    public init(_ byRegistry: [String: Credentials]) { self.byRegistry = byRegistry }
    public func credentials(forRegistry registry: String) -> Credentials? { byRegistry[registry] }
}

/// Reads docker's `config.json` (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`) on
/// each lookup, so `imgfs login` in another shell takes effect without a restart.
public struct DockerConfigCredentials: CredentialProvider {
    /// Explicit config file; nil means the docker default location.
    public var configPath: String?
    /// Helpers are run as `<helperPrefix><name>`, searched in PATH unless the prefix has a '/'.
    var helperPrefix = "docker-credential-"

    public init(configPath: String? = nil) { self.configPath = configPath }

    public func credentials(forRegistry registry: String) -> Credentials? {
        guard let path = configPath ?? DockerConfig.defaultPath(),
              let config = DockerConfig.load(path: path) else { return nil }
        let keys = DockerConfig.keys(for: registry)
        // Per-registry helpers first, as docker does, then the global store, then inline auths.
        if let helpers = config.credHelpers {
            for key in keys {
                if let helper = helpers[key], let found = CredentialHelper.get(helper: helperPrefix + helper, serverURL: key) { return found }
            }
        }
        if let entry = keys.lazy.compactMap({ config.auths?[$0] }).first, let found = entry.credentials {
            return found
        }
        if let store = config.credsStore {
            for key in keys {
                if let found = CredentialHelper.get(helper: helperPrefix + store, serverURL: key) { return found }
            }
        }
        return nil
    }
}

/// The parts of docker's config.json imgfs reads.
struct DockerConfig: Decodable {
    struct AuthEntry: Decodable {
        var auth: String?
        var username: String?
        var password: String?
        var identitytoken: String?

        var credentials: Credentials? {
            if let token = identitytoken, !token.isEmpty { return .identityToken(token) }
            if let username, let password, !username.isEmpty { return .basic(username: username, password: password) }
            guard let auth, let data = Data(base64Encoded: auth) else { return nil }
            let text = String(decoding: data, as: UTF8.self)
            guard let colon = text.firstIndex(of: ":") else { return nil }
            return .basic(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
        }
    }

    var auths: [String: AuthEntry]?
    var credHelpers: [String: String]?
    var credsStore: String?

    static func defaultPath() -> String? {
        if let dir = environment("DOCKER_CONFIG") { return dir + "/config.json" }
        guard let home = environment("HOME") else { return nil }
        return home + "/.docker/config.json"
    }

    static func load(path: String) -> DockerConfig? {
        guard let bytes = readFile(path) else { return nil }
        return try? JSONDecoder().decode(DockerConfig.self, from: Data(bytes))
    }

    /// The spellings docker uses as keys for one registry.
    static func keys(for registry: String) -> [String] {
        var keys = [registry, "https://\(registry)", "https://\(registry)/v1/", "https://\(registry)/v2/", "http://\(registry)"]
        if registry == "docker.io" || registry == "registry-1.docker.io" || registry == "index.docker.io" {
            keys = ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"] + keys
        }
        return keys
    }
}

/// Runs `docker-credential-<name> get` with the server URL on stdin, as docker does.
enum CredentialHelper {
    /// `helper` is the full executable name, `docker-credential-<name>`.
    static func get(helper: String, serverURL: String) -> Credentials? {
        guard let output = run(executable: helper, arguments: ["get"], input: Array(serverURL.utf8)) else {
            return nil
        }
        struct Reply: Decodable { var Username: String?; var Secret: String? }
        guard let reply = try? JSONDecoder().decode(Reply.self, from: Data(output)), let secret = reply.Secret else { return nil }
        // Helpers mark identity tokens with this username.
        if reply.Username == "<token>" { return .identityToken(secret) }
        return .basic(username: reply.Username ?? "", password: secret)
    }

    /// Spawns `executable` from PATH; nil if it cannot be started or exits non-zero.
    static func run(executable: String, arguments: [String], input: [UInt8]) -> [UInt8]? {
        var stdinPipe: [Int32] = [0, 0]
        var stdoutPipe: [Int32] = [0, 0]
        guard pipe(&stdinPipe) == 0 else { return nil }
        guard pipe(&stdoutPipe) == 0 else {
            close(stdinPipe[0]); close(stdinPipe[1])
            return nil
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, stdinPipe[1])
        posix_spawn_file_actions_addclose(&actions, stdoutPipe[0])

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, executable, &actions, nil, argv, environ)
        close(stdinPipe[0])
        close(stdoutPipe[1])
        guard spawned == 0 else {
            close(stdinPipe[1]); close(stdoutPipe[0])
            return nil
        }
        // Small input: the helper reads it whole before writing, so writing first cannot deadlock.
        input.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(stdinPipe[1], buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
        }
        close(stdinPipe[1])
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while output.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(stdoutPipe[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output.append(contentsOf: chunk[0..<n])
        }
        close(stdoutPipe[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED && WEXITSTATUS == 0, spelled out because the macros do not import.
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else { return nil }
        return output
    }
}

/// Writes credentials for `imgfs login` into docker's config.json, keeping every other key.
public enum DockerConfigWriter {
    public struct WriteError: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "cannot update \(path): \(reason)" }
    }

    public static func store(registry: String, username: String, password: String, configPath: String? = nil) throws(WriteError) {
        guard let path = configPath ?? DockerConfig.defaultPath() else {
            throw WriteError(path: "~/.docker/config.json", reason: "neither DOCKER_CONFIG nor HOME is set")
        }
        var root: [String: JSONValue] = [:]
        if let bytes = readFile(path), !bytes.isEmpty {
            guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else {
                throw WriteError(path: path, reason: "it is not a JSON object")
            }
            root = object
        }
        var auths: [String: JSONValue] = [:]
        if case .object(let existing)? = root["auths"] { auths = existing }
        let key = registry == "docker.io" ? "https://index.docker.io/v1/" : registry
        var entry: [String: JSONValue] = [:]
        if case .object(let existing)? = auths[key] { entry = existing }
        entry["auth"] = .string(Data("\(username):\(password)".utf8).base64EncodedString())
        entry.removeValue(forKey: "username")
        entry.removeValue(forKey: "password")
        entry.removeValue(forKey: "identitytoken")
        auths[key] = .object(entry)
        root["auths"] = .object(auths)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(JSONValue.object(root)) else {
            throw WriteError(path: path, reason: "cannot encode JSON")
        }
        // A private temporary file renamed over the config, so a crash never leaves half of one.
        do {
            try FileIO.makeDirectories(FileIO.parent(of: path), mode: 0o700)
            try FileIO.writeAtomically([UInt8](data) + [UInt8(ascii: "\n")], to: path, mode: 0o600, durable: true)
        } catch {
            throw WriteError(path: path, reason: "\(error)")
        }
    }
}

/// The whole file, or nil if it cannot be read. Config files are small.
func readFile(_ path: String) -> [UInt8]? { (try? FileIO.readFile(path, limit: 16 << 20)) ?? nil }

/// Any JSON value, so config.json keys imgfs does not know survive a rewrite.
enum JSONValue: Codable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let v = try? container.decode(Bool.self) { self = .bool(v) }
        else if let v = try? container.decode(Int64.self) { self = .integer(v) }
        else if let v = try? container.decode(Double.self) { self = .number(v) }
        else if let v = try? container.decode(String.self) { self = .string(v) }
        else if let v = try? container.decode([JSONValue].self) { self = .array(v) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let v): try container.encode(v)
        case .integer(let v): try container.encode(v)
        case .number(let v): try container.encode(v)
        case .string(let v): try container.encode(v)
        case .array(let v): try container.encode(v)
        case .object(let v): try container.encode(v)
        }
    }
}
