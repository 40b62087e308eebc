import Verity

/// A docker-style image reference: `[registry/]repository[:tag][@sha256:...]`.
///
/// Parsed with the same rules as docker and containerd so that a reference a user copies
/// from another tool means the same registry, repository and tag here: the first path
/// component is the registry only when it looks like a host (contains `.` or `:`, is
/// `localhost`, or has uppercase letters); otherwise the registry is Docker Hub and
/// single-component names live under `library/`.
public struct Reference: Hashable, Sendable, CustomStringConvertible {
    /// The registry as written by the user, normalized (`docker.io` for Docker Hub): `localhost:5000`, `ghcr.io`.
    public var registry: String
    /// The repository path inside the registry: `vm/ubuntu`, `library/alpine`.
    public var repository: String
    /// The tag, if given (or `latest` when neither tag nor digest was given).
    public var tag: String?
    /// The pinned manifest digest, if given.
    public var digest: Digest?

    /// Docker Hub's name in references and its API host, which differ.
    public static let dockerHub = "docker.io"
    public static let dockerHubAPIHost = "registry-1.docker.io"
    public static let defaultTag = "latest"

    public init(registry: String, repository: String, tag: String? = nil, digest: Digest? = nil) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    public init(parsing text: String) throws(ReferenceError) {
        guard !text.isEmpty else { throw ReferenceError(text, .empty) }
        var rest = Substring(text)

        // The digest comes last and may itself contain ':', so split it off first.
        var digest: Digest? = nil
        if let at = rest.firstIndex(of: "@") {
            let digestText = String(rest[rest.index(after: at)...])
            do {
                digest = try Digest(parsing: digestText)
            } catch {
                throw ReferenceError(text, .invalidDigest(error.description))
            }
            rest = rest[..<at]
        }

        // A ':' after the last '/' separates the tag; one before it belongs to a registry port.
        var tag: String? = nil
        let lastSlash = rest.lastIndex(of: "/")
        let tagSearchStart = lastSlash.map { rest.index(after: $0) } ?? rest.startIndex
        if let colon = rest[tagSearchStart...].lastIndex(of: ":") {
            let tagText = String(rest[rest.index(after: colon)...])
            guard Self.isValidTag(tagText) else { throw ReferenceError(text, .invalidTag(tagText)) }
            tag = tagText
            rest = rest[..<colon]
        }

        // The registry is the first component only when it looks like a host.
        var registry = Self.dockerHub
        var repository = String(rest)
        if let slash = rest.firstIndex(of: "/") {
            let first = rest[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" || first.contains(where: \.isUppercase) {
                registry = String(first)
                repository = String(rest[rest.index(after: slash)...])
                guard Self.isValidRegistry(registry) else { throw ReferenceError(text, .invalidRegistry(registry)) }
            }
        }
        if registry == "index.docker.io" || registry == "registry-1.docker.io" { registry = Self.dockerHub }

        guard !repository.isEmpty else { throw ReferenceError(text, .missingRepository) }
        if repository.contains(where: \.isUppercase) { throw ReferenceError(text, .uppercaseRepository(repository)) }
        for component in repository.split(separator: "/", omittingEmptySubsequences: false) {
            guard Self.isValidPathComponent(component) else {
                throw ReferenceError(text, .invalidRepositoryComponent(String(component)))
            }
        }
        if registry == Self.dockerHub && !repository.contains("/") { repository = "library/" + repository }
        guard registry.utf8.count + 1 + repository.utf8.count <= 255 else { throw ReferenceError(text, .nameTooLong) }

        if tag == nil && digest == nil { tag = Self.defaultTag }
        self.init(registry: registry, repository: repository, tag: tag, digest: digest)
    }

    /// What goes into `/v2/<repository>/manifests/<reference>`: the digest when pinned, else the tag.
    public var manifestReference: String {
        if let digest { return digest.description }
        return tag ?? Self.defaultTag
    }

    /// The host that serves the registry API (Docker Hub's differs from its name).
    public var apiHost: String { registry == Self.dockerHub ? Self.dockerHubAPIHost : registry }

    /// Loopback registries speak plain HTTP, as docker and containerd assume.
    public var isLoopback: Bool { Self.isLoopback(registry: registry) }

    /// The canonical form, `registry/repository[:tag][@digest]`.
    public var description: String {
        var out = registry + "/" + repository
        if let tag { out += ":" + tag }
        if let digest { out += "@" + digest.description }
        return out
    }

    /// The same reference pinned to `digest` (tag kept for display).
    public func pinned(to digest: Digest) -> Reference {
        Reference(registry: registry, repository: repository, tag: tag, digest: digest)
    }

    /// True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
    public static func isLoopback(registry: String) -> Bool {
        let host = hostPart(of: registry).lowercased()
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets[0] == "127" else { return false }
        return octets.allSatisfy { o in !o.isEmpty && o.count <= 3 && o.allSatisfy(\.isASCIIDigit) && (Int(o) ?? 256) <= 255 }
    }

    /// The host of `host[:port]` or `[v6]:port`, without brackets or port.
    public static func hostPart(of registry: String) -> String {
        if registry.hasPrefix("[") {
            guard let close = registry.firstIndex(of: "]") else { return registry }
            return String(registry[registry.index(after: registry.startIndex)..<close])
        }
        if let colon = registry.lastIndex(of: ":") { return String(registry[..<colon]) }
        return registry
    }

    // MARK: - Grammar (github.com/distribution/reference)

    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
    static func isValidPathComponent(_ s: Substring) -> Bool {
        let bytes = Array(s.utf8)
        guard let first = bytes.first, let last = bytes.last, isLowerAlnum(first), isLowerAlnum(last) else { return false }
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            if isLowerAlnum(c) { i += 1; continue }
            // A separator run: one '.', one or two '_', or any number of '-'.
            var j = i
            while j < bytes.count && !isLowerAlnum(bytes[j]) { j += 1 }
            let run = bytes[i..<j]
            let ok: Bool
            switch c {
            case UInt8(ascii: "."): ok = run.count == 1
            case UInt8(ascii: "_"): ok = run.count <= 2 && run.allSatisfy { $0 == UInt8(ascii: "_") }
            case UInt8(ascii: "-"): ok = run.allSatisfy { $0 == UInt8(ascii: "-") }
            default: ok = false
            }
            guard ok else { return false }
            i = j
        }
        return true
    }

    /// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
    static func isValidTag(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard let first = bytes.first, bytes.count <= 128 else { return false }
        guard isAlnum(first) || first == UInt8(ascii: "_") else { return false }
        return bytes.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    /// `host(:port)?` where host is dot-separated labels or a bracketed IPv6 address.
    static func isValidRegistry(_ s: String) -> Bool {
        var host = Substring(s)
        var port: Substring? = nil
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return false }
            let inner = s[s.index(after: s.startIndex)..<close]
            guard !inner.isEmpty, inner.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
            let after = s[s.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { return false }
                port = after.dropFirst()
            }
            host = ""
        } else if let colon = s.lastIndex(of: ":") {
            host = s[..<colon]
            port = s[s.index(after: colon)...]
        }
        if let port {
            guard !port.isEmpty, port.count <= 5, port.allSatisfy(\.isASCIIDigit), let p = Int(port), p <= 65535 else { return false }
        }
        if s.hasPrefix("[") { return true }
        guard !host.isEmpty else { return false }
        for label in host.split(separator: ".", omittingEmptySubsequences: false) {
            let b = Array(label.utf8)
            guard let f = b.first, let l = b.last, isAlnum(f), isAlnum(l) else { return false }
            guard b.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") }) else { return false }
        }
        return true
    }

    private static func isLowerAlnum(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        isLowerAlnum(c) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// Why a reference string was rejected; the description names the string and the part at fault.
public struct ReferenceError: Error, Equatable, CustomStringConvertible {
    public enum Problem: Equatable, Sendable {
        case empty
        case missingRepository
        case invalidDigest(String)
        case invalidTag(String)
        case invalidRegistry(String)
        case uppercaseRepository(String)
        case invalidRepositoryComponent(String)
        case nameTooLong
    }

    /// The whole string that was being parsed.
    public var text: String
    public var problem: Problem

    public init(_ text: String, _ problem: Problem) {
        self.text = text
        self.problem = problem
    }

    public var description: String {
        let why: String
        switch problem {
        case .empty: why = "it is empty"
        case .missingRepository: why = "it names no repository"
        case .invalidDigest(let detail): why = detail
        case .invalidTag(let tag): why = "tag '\(tag)' must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
        case .invalidRegistry(let registry): why = "registry '\(registry)' is not a valid host[:port]"
        case .uppercaseRepository(let repository): why = "repository '\(repository)' must be lowercase"
        case .invalidRepositoryComponent(let component):
            why = "repository component '\(component)' must be lowercase letters and digits separated by '.', '_', '__' or dashes"
        case .nameTooLong: why = "the name is longer than 255 characters"
        }
        return "invalid image reference '\(text)': \(why)"
    }
}
