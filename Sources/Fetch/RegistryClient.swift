import Glibc
import Logging
import OCI
import Synchronization
import Threading
import Verity

/// A client for one OCI distribution registry, over libcurl.
///
/// Synchronous and thread-safe: FUSE worker threads and upload workers call it concurrently.
/// Each request checks a libcurl handle out of a bounded pool (reusing its connections) and
/// runs on the caller's thread. Mutable state (auth, statistics) is behind `Mutex`es that are
/// never held across network I/O and never nested.
///
/// Split by concern: auth in `+Auth`, manifests in `+Manifests`, blob reads in `+Blobs`,
/// uploads in `+Upload`; this file holds the request loop (auth retry, redirects, backoff).
public final class RegistryClient: Sendable {
    /// The registry as the user named it (`docker.io`, `localhost:5000`); used in errors.
    public let registry: String
    public let options: RegistryOptions
    let credentials: any CredentialProvider
    let logger: Logger
    let pool: HandlePool
    /// Background transfers' handles, so that their small-buffered connections (`Transfer.background`)
    /// never carry a reader's transfer, and a reader's transfer never waits for one of them.
    let backgroundPool: HandlePool
    let settings: TransportSettings
    let upstream: Endpoint
    let mirrorEndpoints: [Endpoint]
    let auth = Mutex(AuthState())
    let stats = Mutex(TransferStatistics())
    let mirrorHealth = Mutex(MirrorHealth())
    /// Demand transfers first on this registry's link: callers that know who waits for a blob
    /// range (the mount) pass their transfers through it.
    public let demandGate = DemandGate()

    public init(
        registry: String,
        options: RegistryOptions = .init(),
        credentials: any CredentialProvider = DockerConfigCredentials(),
        logger: Logger = Logger(label: "imgfs.fetch")
    ) {
        self.registry = registry
        self.options = options
        self.credentials = credentials
        self.logger = logger
        self.pool = HandlePool(maxIdle: options.maxIdleHandles)
        self.backgroundPool = HandlePool(maxIdle: options.maxIdleHandles)
        let apiHost = (registry == Reference.dockerHub || registry == "index.docker.io") ? Reference.dockerHubAPIHost : registry
        self.upstream = Endpoint(host: apiHost, credentialKey: registry, plainHTTP: options.plainHTTP ?? Reference.isLoopback(registry: registry))
        func endpoint(_ mirror: RegistryOptions.Mirror, canResolve: Bool) -> Endpoint {
            let plainHTTP = mirror.plainHTTP ?? options.plainHTTP ?? Reference.isLoopback(registry: mirror.host)
            return Endpoint(host: mirror.host, credentialKey: mirror.host, plainHTTP: plainHTTP, isMirror: true, canResolve: canResolve)
        }
        var mirrors: [Endpoint] = options.mirrors.compactMap { text in
            switch RegistryOptions.parseMirror(text) {
            case .success(let mirror):
                return endpoint(mirror, canResolve: true)
            case .failure(let refusal):
                logger.error("ignoring registry mirror", metadata: ["mirror": "\(text)", "reason": "\(refusal)"])
                return nil
            }
        }
        if let directory = options.hostsDirectory {
            do {
                for host in try ContainerdHosts.load(registry: registry, directory: directory)?.hosts ?? [] where host.pull {
                    let added = endpoint(host.mirror, canResolve: host.resolve)
                    if !mirrors.contains(where: { $0.host == added.host }) { mirrors.append(added) }
                }
            } catch {
                logger.error("ignoring a hosts.toml imgfs cannot use", metadata: ["error": "\(error)"])
            }
        }
        self.mirrorEndpoints = mirrors
        self.settings = TransportSettings(
            connectTimeoutMilliseconds: max(1, options.connectTimeout.milliseconds),
            lowSpeedSeconds: max(1, options.lowSpeedTimeout.milliseconds / 1000),
            userAgent: options.userAgent,
            caBundle: options.caBundle,
            insecureSkipTLSVerify: options.insecureSkipTLSVerify,
            noProxy: Self.noProxyList(),
            httpProxy: environment("http_proxy") ?? environment("HTTP_PROXY") ?? environment("all_proxy") ?? environment("ALL_PROXY"),
            httpsProxy: environment("https_proxy") ?? environment("HTTPS_PROXY") ?? environment("all_proxy") ?? environment("ALL_PROXY"))
    }

    /// Counters since the client was made, for `imgfs status` and for tests of connection reuse.
    public var statistics: TransferStatistics { stats.withLock { $0 } }

    /// `GET /v2/`: checks that the registry answers and that credentials (if any) work.
    public func ping() throws(FetchError) {
        let context = ErrorContext(operation: .ping, registry: registry)
        let response = try send(upstream, scopes: [], context: context) { Transfer(method: "GET", url: self.upstream.url("/v2/")) }
        guard (200..<300).contains(response.status) else { throw statusError(response, context) }
    }

    // MARK: - The request loop

    /// What an error should name, filled in by each operation, and the operation's deadline.
    struct ErrorContext {
        var operation: FetchError.Operation
        var registry: String
        var repository: String? = nil
        var digest: Digest? = nil
        var reference: String? = nil
        var range: Range<Int64>? = nil
        /// Every request made for the operation (token, mirror, upstream, retries) ends by then;
        /// it travels here because this context already reaches each of them.
        /// CLOCK_MONOTONIC seconds, as `monotonicNow()`.
        var deadline: Double? = nil

        func error(_ kind: FetchError.Kind, status: Int? = nil, body: [UInt8] = [], underlying: (any Error)? = nil) -> FetchError {
            let parsed = FetchError.parseBody(body)
            return FetchError(
                kind, operation: operation, registry: registry, repository: repository, digest: digest,
                reference: reference, range: range, status: status, registryErrors: parsed.errors, body: parsed.raw,
                underlying: underlying)
        }
    }

    /// Sends a request to `endpoint` with authentication, redirects and retries, and returns
    /// the final response whatever its status (callers decide what a status means).
    ///
    /// `makeTransfer` is called for every attempt, so a resumed download can ask for the
    /// bytes it still lacks and an upload body starts again from its first byte.
    func send(
        _ endpoint: Endpoint, scopes: [AuthScope], context: ErrorContext, makeTransfer: () -> Transfer
    ) throws(FetchError) -> TransferResult {
        var authRetries = 0
        // A mirror gets one attempt: retrying it would delay a read that upstream can serve now.
        let attempts = endpoint.isMirror ? 1 : options.maxAttempts
        while true {
            let authorization = try authorization(for: endpoint, scopes: scopes, context: context)
            let response = try performWithRetries(endpoint: endpoint, context: context, maxAttempts: attempts) {
                var transfer = makeTransfer()
                if let header = authorization?.header { transfer.headers.append("Authorization: " + header) }
                return transfer
            }
            guard response.status == 401, authRetries < 2 else {
                if response.status == 401 {
                    throw context.error(authorization == nil ? .authenticationRequired : .unauthorized, status: 401, body: response.body)
                }
                return response
            }
            authRetries += 1
            try handleUnauthorized(endpoint: endpoint, response: response, sent: authorization, scopes: scopes, context: context)
        }
    }

    /// One request with transport-level retries: dropped connections, timeouts, 5xx and 429.
    func performWithRetries(
        endpoint: Endpoint?, context: ErrorContext, maxAttempts: Int? = nil, makeTransfer: () -> Transfer
    ) throws(FetchError) -> TransferResult {
        let maxAttempts = maxAttempts ?? options.maxAttempts
        var attempt = 0
        while true {
            attempt += 1
            var transfer = makeTransfer()
            if let deadline = context.deadline { transfer.deadline = min(transfer.deadline ?? deadline, deadline) }
            let outcome = performFollowingRedirects(transfer)
            let delay: Duration
            switch outcome {
            case .failure(.callback(let error)):
                throw context.error(.callback, underlying: error)
            case .failure(.refused(let refusal)):
                throw context.error(.refusedURL(refusal.description))
            case .failure(.curl(let failure)):
                let error = transportError(failure, context: context)
                guard attempt < maxAttempts, failure.retriable else { throw error }
                delay = backoff(attempt: attempt)
                // No retry that would start after the caller has stopped waiting.
                guard startsBefore(context.deadline, after: delay) else { throw error }
                logger.debug("retrying after transport error", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
            case .success(let response):
                let retriable = response.status == 429 || response.status == 500 || response.status == 502
                    || response.status == 503 || response.status == 504
                guard retriable, attempt < maxAttempts else { return response }
                delay = retryAfter(response.headers["Retry-After"]) ?? backoff(attempt: attempt)
                guard startsBefore(context.deadline, after: delay) else { return response }
                logger.debug("retrying after HTTP \(response.status)", metadata: ["attempt": "\(attempt)", "delay": "\(delay)"])
            }
            stats.withLock { $0.retries += 1 }
            sleep(for: delay)
        }
    }

    /// Whether something that first waits `delay` would still start before `deadline`.
    private func startsBefore(_ deadline: Double?, after delay: Duration) -> Bool {
        guard let deadline else { return true }
        let (seconds, attoseconds) = delay.components
        return monotonicNow() + Double(seconds) + Double(attoseconds) / 1e18 < deadline
    }

    /// Follows up to 10 redirects itself, so the Authorization header we add never reaches
    /// another origin (blob GETs are commonly redirected to pre-signed object-storage URLs).
    func performFollowingRedirects(_ first: Transfer) -> Result<TransferResult, TransportFailure> {
        var transfer = first
        for _ in 0..<10 {
            let outcome = (transfer.background ? backgroundPool : pool).withHandle { $0.perform(transfer, settings: settings) }
                ?? .failure(.curl(.noHandle))
            if case .success(let response) = outcome {
                stats.withLock {
                    $0.requests += 1
                    $0.newConnections += response.newConnections
                    $0.bytesReceived += response.bytesDelivered
                }
            }
            guard case .success(let response) = outcome, [301, 302, 303, 307, 308].contains(response.status),
                  let location = response.redirectURL else { return outcome }
            if let refusal = URLPolicy.check(location, from: transfer.url, what: "a redirect (HTTP \(response.status))") {
                logger.warning("refused a redirect", metadata: ["from": "\(transfer.url)", "reason": "\(refusal)"])
                return .failure(.refused(refusal))
            }
            if Self.origin(of: location) != Self.origin(of: transfer.url) {
                transfer.headers.removeAll { $0.lowercased().hasPrefix("authorization:") }
            }
            logger.trace("following redirect", metadata: ["from": "\(transfer.url)", "to": "\(location)"])
            if response.status == 303 && transfer.method != "HEAD" {
                transfer.method = "GET"
                transfer.body = nil
            }
            transfer.url = location
        }
        return .failure(.curl(.tooManyRedirects))
    }

    // MARK: - Errors, backoff

    /// The FetchError for an HTTP status the operation did not expect.
    func statusError(_ response: TransferResult, _ context: ErrorContext) -> FetchError {
        let kind: FetchError.Kind
        switch response.status {
        case 401: kind = .unauthorized
        case 403: kind = .forbidden
        case 404: kind = .notFound
        default: kind = .httpStatus
        }
        return context.error(kind, status: response.status, body: response.body)
    }

    func transportError(_ failure: CurlFailure, context: ErrorContext) -> FetchError {
        switch failure.kind {
        case .connect:
            let reason = failure.osErrno != 0 ? String(cString: strerror(failure.osErrno)) : failure.message
            return context.error(.connection(reason))
        case .timeout:
            return context.error(.timeout(failure.message))
        case .other:
            return context.error(.transport(failure.message))
        }
    }

    /// Exponential backoff with jitter (50–100 % of the step), so clients that failed
    /// together do not retry together.
    func backoff(attempt: Int) -> Duration {
        let step = options.retryBaseDelay * (1 << min(attempt - 1, 16))
        let capped = min(step, options.maxRetryDelay)
        return capped * Double.random(in: 0.5...1.0)
    }

    /// `Retry-After` in seconds (the HTTP-date form is rare from registries and falls back to backoff).
    func retryAfter(_ value: String?) -> Duration? {
        guard let value, let seconds = Int(value.trimmingSpaces()), seconds >= 0 else { return nil }
        return min(.seconds(seconds), options.maxRetryDelay)
    }

    /// scheme://host:port of a URL, lowercased; the unit a credential may be sent to.
    static func origin(of url: String) -> String {
        guard let separator = url.firstRange(of: "://") else { return url.lowercased() }
        let scheme = url[..<separator.lowerBound].lowercased()
        let hostPort = URLPolicy.host(of: url).lowercased()
        let hasPort = hostPort.contains("]:") || (!hostPort.hasPrefix("[") && hostPort.contains(":"))
        return scheme + "://" + hostPort + (hasPort ? "" : scheme == "https" ? ":443" : ":80")
    }

    /// NO_PROXY from the environment plus loopback: a loopback registry must never be sent
    /// through a proxy, which could not reach it.
    static func noProxyList() -> String {
        let fromEnvironment = environment("no_proxy") ?? environment("NO_PROXY")
        return ([fromEnvironment].compactMap { $0 } + ["localhost", "127.0.0.0/8", "::1"]).joined(separator: ",")
    }
}

/// A registry API host: the upstream registry or one of its mirrors.
struct Endpoint: Hashable, Sendable {
    var host: String
    /// Which name credentials are looked up under.
    var credentialKey: String
    var plainHTTP: Bool
    var isMirror = false
    /// Whether tags may be resolved here (containerd's "resolve" capability); digests always may.
    var canResolve = true

    func url(_ path: String) -> String { (plainHTTP ? "http://" : "https://") + host + path }

    /// Resolves a `Location` header (absolute, or a path as distribution sends it) against this endpoint.
    /// An absolute URL of any scheme is returned as it is, for `URLPolicy` to judge.
    func resolve(location: String) -> String {
        if URLPolicy.scheme(of: location) != nil { return location }
        return url(location.hasPrefix("/") ? location : "/" + location)
    }
}

/// Transfer counters of one client.
public struct TransferStatistics: Sendable, Equatable {
    /// HTTP exchanges, counting each redirect hop and retry.
    public var requests = 0
    /// TCP connections opened; much lower than `requests` when connections are reused.
    public var newConnections = 0
    /// Body bytes handed to streaming sinks.
    public var bytesReceived: Int64 = 0
    public var retries = 0
    /// Requests a mirror answered.
    public var mirrorHits = 0
    /// Mirror requests that failed (the mirror is then skipped for `mirrorCooldown`).
    public var mirrorFailures = 0
    /// Ranges a mirror answered with the whole blob (a pull-through cache still filling).
    public var mirrorWholeBlobAnswers = 0
    /// Requests that went past a mirror known to be down or filling that blob.
    public var mirrorSkips = 0
}
