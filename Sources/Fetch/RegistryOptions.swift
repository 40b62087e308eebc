import Glibc

/// How a `RegistryClient` talks to its registry. Every limit has a default that keeps a
/// request from hanging forever, since FUSE reads wait on these requests.
public struct RegistryOptions: Sendable {
    /// nil = automatic: plain HTTP for loopback registries (as docker does), TLS for every other host.
    public var plainHTTP: Bool?
    public var connectTimeout: Duration
    /// A transfer that moves less than 1 KiB/s for this long is aborted (and retried).
    public var lowSpeedTimeout: Duration
    /// Attempts per request, counting the first; retried on 5xx, 429 and dropped connections.
    public var maxAttempts: Int
    /// First backoff delay; doubled per attempt, with jitter.
    public var retryBaseDelay: Duration
    /// Upper bound for one backoff sleep, including a registry's Retry-After.
    public var maxRetryDelay: Duration
    /// Mirrors ("host:port") tried first for pulls (manifest and blob GET/HEAD), e.g. a pull-through cache.
    public var mirrors: [String]
    /// A containerd hosts directory (`DIR/<registry>/hosts.toml`) whose mirrors are tried
    /// after `mirrors`; nil for none. See `ContainerdHosts`.
    public var hostsDirectory: String?
    /// How long a mirror that failed (no connection, timeout, 5xx, 429) is skipped.
    public var mirrorCooldown: Duration
    /// How often a process asks (HEAD) whether a whole-blob mirror has finished filling a blob.
    public var wholeBlobProbeInterval: Duration
    /// How long a range waits for a whole-blob mirror to fill its blob before going upstream.
    public var wholeBlobWait: Duration
    public var userAgent: String
    /// A PEM file of CA certificates to trust instead of the system's.
    public var caBundle: String?
    public var insecureSkipTLSVerify: Bool
    /// Blobs larger than this are uploaded in chunks (PATCH) rather than one PUT.
    public var chunkedUploadThreshold: Int64
    public var chunkSize: Int64
    /// Manifests larger than this are refused (the OCI distribution spec suggests 4 MiB).
    public var maxManifestSize: Int
    /// Idle libcurl handles kept for reuse; each keeps its connections alive.
    public var maxIdleHandles: Int

    public init(
        plainHTTP: Bool? = nil,
        connectTimeout: Duration = .seconds(10),
        lowSpeedTimeout: Duration = .seconds(30),
        maxAttempts: Int = 5,
        retryBaseDelay: Duration = .milliseconds(200),
        maxRetryDelay: Duration = .seconds(30),
        mirrors: [String] = RegistryOptions.environmentMirrors(),
        hostsDirectory: String? = RegistryOptions.defaultHostsDirectory(),
        mirrorCooldown: Duration = .seconds(30),
        wholeBlobProbeInterval: Duration = .seconds(1),
        wholeBlobWait: Duration = .seconds(20),
        userAgent: String = "imgfs/0.1",
        caBundle: String? = nil,
        insecureSkipTLSVerify: Bool = false,
        chunkedUploadThreshold: Int64 = 64 << 20,
        chunkSize: Int64 = 16 << 20,
        maxManifestSize: Int = 4 << 20,
        maxIdleHandles: Int = 16
    ) {
        self.plainHTTP = plainHTTP
        self.connectTimeout = connectTimeout
        self.lowSpeedTimeout = lowSpeedTimeout
        self.maxAttempts = max(1, maxAttempts)
        self.retryBaseDelay = retryBaseDelay
        self.maxRetryDelay = maxRetryDelay
        self.mirrors = mirrors
        self.hostsDirectory = hostsDirectory
        self.mirrorCooldown = mirrorCooldown
        self.wholeBlobProbeInterval = wholeBlobProbeInterval
        self.wholeBlobWait = wholeBlobWait
        self.userAgent = userAgent
        self.caBundle = caBundle
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.chunkedUploadThreshold = chunkedUploadThreshold
        self.chunkSize = max(1, chunkSize)
        self.maxManifestSize = maxManifestSize
        self.maxIdleHandles = max(1, maxIdleHandles)
    }

    /// `IMGFS_HOSTS_DIR` ("none" for no directory), else containerd's `/etc/containerd/certs.d`
    /// when it exists.
    public static func defaultHostsDirectory() -> String? {
        if let value = environment("IMGFS_HOSTS_DIR") { return value == "none" ? nil : value }
        let containerd = "/etc/containerd/certs.d"
        return access(containerd, F_OK) == 0 ? containerd : nil
    }

    /// `IMGFS_REGISTRY_MIRRORS`, comma-separated `host:port` entries.
    public static func environmentMirrors() -> [String] {
        guard let value = environment("IMGFS_REGISTRY_MIRRORS") else { return [] }
        return value.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
    }
}

extension RegistryOptions {
    /// A mirror as the user wrote it: `host[:port]`, or `http://host[:port]` / `https://host[:port]`
    /// to choose the scheme (a trailing `/` is allowed; a path is not, mirrors serve `/v2/`).
    public struct Mirror: Sendable, Equatable {
        public var host: String
        /// nil when no scheme was written: the registry's rule then decides (plain HTTP on loopback).
        public var plainHTTP: Bool?
    }

    /// The error text for a mirror imgfs will not use, or the mirror.
    public static func parseMirror(_ text: String) -> Result<Mirror, MirrorError> {
        var rest = Substring(text.trimmingSpaces())
        var plainHTTP: Bool? = nil
        if let scheme = URLPolicy.scheme(of: String(rest)), rest.contains("://") {
            guard scheme == "http" || scheme == "https" else {
                return .failure(MirrorError(mirror: text, reason: "a \(scheme): URL; a mirror is host:port or an http(s):// URL"))
            }
            plainHTTP = scheme == "http"
            rest = rest[rest.index(rest.startIndex, offsetBy: scheme.count + 3)...]
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.isEmpty, !rest.contains(where: { $0 == "/" || $0 == "@" || $0 == "?" || $0 == "#" || $0 == " " }) else {
            return .failure(MirrorError(mirror: text, reason: "not host[:port]"))
        }
        return .success(Mirror(host: String(rest), plainHTTP: plainHTTP))
    }
}

/// A mirror setting that names no usable registry host.
public struct MirrorError: Error, CustomStringConvertible, Sendable {
    public var mirror: String
    public var reason: String
    public var description: String { "registry mirror \"\(mirror)\" is \(reason)" }
}

func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let text = String(cString: value)
    return text.isEmpty ? nil : text
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

extension String {
    func trimmingSpaces() -> String { self[...].trimmingSpaces() }
}

extension Duration {
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
