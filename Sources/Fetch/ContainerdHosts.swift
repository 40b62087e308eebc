import Glibc
import OCI

/// Per-registry mirrors as containerd reads them: `DIR/<registry>/hosts.toml` (falling back to
/// `DIR/_default/hosts.toml`), DIR usually `/etc/containerd/certs.d`. A fleet that already runs
/// containerd (Kubernetes nodes, CI runners) has written these files; imgfs reads them rather
/// than asking for a second copy of the same settings. containers' `registries.conf` was the
/// other choice; it keeps every registry in one file with a much larger grammar (prefix
/// matching, `blocked`, `insecure`, short-name aliases) of which a mirror list is a small part,
/// and imgfs would have to refuse most of it.
///
/// What is understood:
/// ```toml
/// server = "https://registry.example.com"          # must be the registry itself
/// [host."http://10.0.0.5:5000"]                    # mirrors, tried in file order
///   capabilities = ["pull", "resolve"]             # no "pull": not used; no "resolve": not for tags
/// ```
/// `skip_verify = false`, `override_path = false` and `dial_timeout` are accepted (imgfs's own
/// timeouts apply). What imgfs cannot honour per host is refused with the file and line rather
/// than ignored, since ignoring it would talk to a mirror differently from containerd:
/// `skip_verify = true`, `ca`, `client`, `override_path = true`, `[host."…".header]`.
/// The parser is a TOML subset of its own (strings, booleans, arrays of strings, tables), so
/// imgfs needs no TOML package for one small file.
public struct ContainerdHosts: Sendable, Equatable {
    public struct Host: Sendable, Equatable {
        public var mirror: RegistryOptions.Mirror
        /// Blob and manifest-by-digest reads.
        public var pull: Bool
        /// Tag to digest resolution (manifest by tag).
        public var resolve: Bool
    }

    public var server: String?
    public var hosts: [Host]

    /// The hosts file that applies to `registry`, or nil when there is none.
    public static func path(for registry: String, directory: String) -> String? {
        for name in [registry, "_default"] {
            let path = directory + "/" + name + "/hosts.toml"
            if access(path, F_OK) == 0 { return path }
        }
        return nil
    }

    /// Mirrors for `registry` from the hosts directory; nil when no file applies.
    public static func load(registry: String, directory: String) throws(HostsFileError) -> ContainerdHosts? {
        guard let path = path(for: registry, directory: directory) else { return nil }
        guard let file = fopen(path, "r") else {
            throw HostsFileError(file: path, line: 0, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[0..<count]
            if bytes.count > 1 << 20 { throw HostsFileError(file: path, line: 0, reason: "larger than 1 MiB") }
        }
        let hosts = try parse(String(decoding: bytes, as: UTF8.self), file: path)
        if let server = hosts.server {
            let apiHost = registry == Reference.dockerHub ? Reference.dockerHubAPIHost : registry
            guard case .success(let parsed) = RegistryOptions.parseMirror(server),
                  parsed.host == apiHost || parsed.host == registry else {
                throw HostsFileError(file: path, line: 0, reason: "server = \"\(server)\" is not \(registry); imgfs sends what no mirror answers to the registry the reference names")
            }
        }
        return hosts
    }

    /// Parses the text of a hosts.toml.
    public static func parse(_ text: String, file: String) throws(HostsFileError) -> ContainerdHosts {
        var result = ContainerdHosts(server: nil, hosts: [])
        var current: Int? = nil  // index into result.hosts of the [host."…"] table being read
        var pending = ""         // a value continued on following lines (a multi-line array)
        var pendingLine = 0
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = number + 1
            func fail(_ reason: String) -> HostsFileError { HostsFileError(file: file, line: pending.isEmpty ? lineNumber : pendingLine, reason: reason) }
            var line = stripComment(String(rawLine)).trimmingSpaces()
            if !pending.isEmpty {
                pending += " " + line
                guard balanced(pending) else { continue }
                line = pending
                pending = ""
            }
            if line.isEmpty { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), !line.hasPrefix("[[") else { throw fail("unsupported table header \(line)") }
                let path = try splitKeyPath(String(line.dropFirst().dropLast()).trimmingSpaces(), fail: fail)
                guard path.count == 2, path[0] == "host" else {
                    if path.count == 3, path[0] == "host", path[2] == "header" {
                        throw fail("[host.\"\(path[1])\".header]: imgfs does not send extra headers to mirrors")
                    }
                    throw fail("unsupported table [\(path.joined(separator: "."))]; only [host.\"URL\"] is understood")
                }
                let mirror: RegistryOptions.Mirror
                switch RegistryOptions.parseMirror(path[1]) {
                case .success(let parsed): mirror = parsed
                case .failure(let error): throw fail(error.description)
                }
                result.hosts.append(Host(mirror: mirror, pull: true, resolve: true))
                current = result.hosts.count - 1
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { throw fail("expected key = value") }
            let key = String(line[..<equals]).trimmingSpaces()
            let valueText = String(line[line.index(after: equals)...]).trimmingSpaces()
            if valueText.hasPrefix("[") && !balanced(valueText) {
                pending = line
                pendingLine = lineNumber
                continue
            }
            let value = try parseValue(valueText, fail: fail)
            switch (key, current) {
            case ("server", nil):
                guard case .string(let server) = value else { throw fail("server must be a string") }
                result.server = server
            case ("capabilities", let index?):
                guard case .strings(let capabilities) = value else { throw fail("capabilities must be an array of strings") }
                for capability in capabilities where !["pull", "resolve", "push"].contains(capability) {
                    throw fail("unknown capability \"\(capability)\"")
                }
                result.hosts[index].pull = capabilities.contains("pull")
                result.hosts[index].resolve = capabilities.contains("resolve")
            case ("capabilities", nil):
                // The server's own capabilities: the upstream registry is always used for everything.
                guard case .strings = value else { throw fail("capabilities must be an array of strings") }
            case ("skip_verify", _), ("override_path", _):
                guard case .bool(let on) = value else { throw fail("\(key) must be true or false") }
                if on {
                    throw fail(key == "skip_verify"
                        ? "skip_verify = true: imgfs verifies every mirror's TLS certificate (frames are verified too, but credentials are not)"
                        : "override_path = true: imgfs speaks the registry API (/v2/) to mirrors, not a custom path")
                }
            case ("dial_timeout", _):
                guard case .string = value else { throw fail("dial_timeout must be a string") }
            case ("ca", _), ("client", _):
                throw fail("\(key): imgfs has no per-mirror TLS certificates; use the system's CA store")
            default:
                throw fail("unknown key \(key)")
            }
        }
        if !pending.isEmpty { throw HostsFileError(file: file, line: pendingLine, reason: "unterminated array") }
        return result
    }

    enum Value {
        case string(String)
        case bool(Bool)
        case strings([String])
    }

    static func parseValue(_ text: String, fail: (String) -> HostsFileError) throws(HostsFileError) -> Value {
        if text == "true" { return .bool(true) }
        if text == "false" { return .bool(false) }
        if text.hasPrefix("[") {
            guard text.hasSuffix("]") else { throw fail("unterminated array") }
            var items: [String] = []
            var rest = Substring(text.dropFirst().dropLast())
            while true {
                rest = Substring(rest.drop { $0 == " " || $0 == "\t" })
                if rest.isEmpty { break }
                let (item, after) = try scanString(rest, fail: fail)
                items.append(item)
                rest = Substring(after.drop { $0 == " " || $0 == "\t" })
                if rest.isEmpty { break }
                guard rest.first == "," else { throw fail("expected , in array") }
                rest = rest.dropFirst()
            }
            return .strings(items)
        }
        let (string, after) = try scanString(Substring(text), fail: fail)
        guard after.allSatisfy({ $0 == " " || $0 == "\t" }) else { throw fail("unexpected text after a string") }
        return .string(string)
    }

    /// A "basic" (with \" \\ \n \t escapes) or 'literal' string at the start of `text`.
    static func scanString(_ text: Substring, fail: (String) -> HostsFileError) throws(HostsFileError) -> (String, Substring) {
        guard let quote = text.first, quote == "\"" || quote == "'" else {
            throw fail("expected a string, true, false or an array of strings, found \(text)")
        }
        var result = ""
        var index = text.index(after: text.startIndex)
        while index < text.endIndex {
            let c = text[index]
            if c == quote { return (result, text[text.index(after: index)...]) }
            if c == "\\" && quote == "\"" {
                index = text.index(after: index)
                guard index < text.endIndex else { break }
                switch text[index] {
                case "\"": result.append("\"")
                case "\\": result.append("\\")
                case "n": result.append("\n")
                case "t": result.append("\t")
                default: throw fail("unsupported escape \\\(text[index])")
                }
            } else {
                result.append(c)
            }
            index = text.index(after: index)
        }
        throw fail("unterminated string")
    }

    /// `host."https://m:5000".header` → ["host", "https://m:5000", "header"].
    static func splitKeyPath(_ text: String, fail: (String) -> HostsFileError) throws(HostsFileError) -> [String] {
        var parts: [String] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            rest = Substring(rest.drop { $0 == " " || $0 == "\t" })
            if rest.first == "\"" || rest.first == "'" {
                let (part, after) = try scanString(rest, fail: fail)
                parts.append(part)
                rest = after
            } else {
                let bare = rest.prefix { $0 != "." && $0 != " " }
                guard !bare.isEmpty else { throw fail("bad table name [\(text)]") }
                parts.append(String(bare))
                rest = rest.dropFirst(bare.count)
            }
            rest = Substring(rest.drop { $0 == " " || $0 == "\t" })
            if rest.first == "." { rest = rest.dropFirst() } else if !rest.isEmpty { throw fail("bad table name [\(text)]") }
        }
        return parts
    }

    /// The line without a `#` comment that is outside any string.
    static func stripComment(_ line: String) -> String {
        var quote: Character? = nil
        var escaped = false
        for (offset, c) in line.enumerated() {
            if let q = quote {
                if escaped { escaped = false } else if c == "\\" && q == "\"" { escaped = true } else if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "#" {
                return String(line.prefix(offset))
            }
        }
        return line
    }

    /// Whether every `[` outside strings is closed.
    static func balanced(_ text: String) -> Bool {
        var depth = 0
        var quote: Character? = nil
        for c in text {
            if let q = quote { if c == q { quote = nil } } else if c == "\"" || c == "'" { quote = c } else if c == "[" { depth += 1 } else if c == "]" { depth -= 1 }
        }
        return depth <= 0
    }
}

/// A hosts.toml imgfs cannot use as written: which file, which line, and why.
public struct HostsFileError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String
    public var line: Int
    public var reason: String
    public var description: String { line > 0 ? "\(file):\(line): \(reason)" : "\(file): \(reason)" }
}
