import FoundationEssentials
import Logging

/// One `repository:<name>:<actions>` scope of a bearer token request.
struct AuthScope: Hashable, Sendable, Comparable {
    var repository: String
    var actions: String  // "pull" or "pull,push"

    static func pull(_ repository: String) -> AuthScope { AuthScope(repository: repository, actions: "pull") }
    static func push(_ repository: String) -> AuthScope { AuthScope(repository: repository, actions: "pull,push") }

    var scopeString: String { "repository:\(repository):\(actions)" }

    static func < (lhs: AuthScope, rhs: AuthScope) -> Bool { lhs.scopeString < rhs.scopeString }

    /// A push token serves pulls too.
    func covers(_ other: AuthScope) -> Bool {
        repository == other.repository && (actions == other.actions || actions == "pull,push")
    }
}

/// How a registry asked to be authenticated (`WWW-Authenticate`).
enum AuthChallenge: Equatable, Sendable {
    case basic
    case bearer(realm: String, service: String?)

    /// Parses `Basic realm="x"` or `Bearer realm="https://auth",service="registry",scope="..."`.
    init?(header: String) {
        let trimmed = header.trimmingSpaces()
        guard let space = trimmed.firstIndex(of: " ") else {
            if trimmed.lowercased() == "basic" { self = .basic; return }
            return nil
        }
        let scheme = trimmed[..<space].lowercased()
        let parameters = Self.parameters(String(trimmed[trimmed.index(after: space)...]))
        switch scheme {
        case "basic": self = .basic
        case "bearer":
            guard let realm = parameters["realm"], !realm.isEmpty else { return nil }
            self = .bearer(realm: realm, service: parameters["service"])
        default: return nil
        }
    }

    /// `key="value", key=value` pairs; quoted values may contain commas.
    static func parameters(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        var chars = Substring(text)
        while !chars.isEmpty {
            chars = chars.drop { $0 == " " || $0 == "," }
            guard let equals = chars.firstIndex(of: "=") else { break }
            let key = chars[..<equals].trimmingSpaces().lowercased()
            chars = chars[chars.index(after: equals)...]
            var value = ""
            if chars.first == "\"" {
                chars = chars.dropFirst()
                var escaped = false
                while let c = chars.first {
                    chars = chars.dropFirst()
                    if escaped { value.append(c); escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { break } else { value.append(c) }
                }
            } else {
                let end = chars.firstIndex(of: ",") ?? chars.endIndex
                value = chars[..<end].trimmingSpaces()
                chars = chars[end...]
            }
            result[key] = value
        }
        return result
    }
}

struct CachedToken: Sendable {
    var token: String
    var scopes: [AuthScope]
    /// Refreshed from here on, ahead of the real expiry, so no request races the deadline.
    var refreshAt: ContinuousClock.Instant
}

/// What the client has learned about authenticating to each endpoint.
struct AuthState: Sendable {
    var challenges: [String: AuthChallenge] = [:]
    var tokens: [String: [CachedToken]] = [:]
    var tokensIssued = 0
}

/// The Authorization header value sent with one request, and whether it was minted for it.
struct SentAuthorization {
    var header: String
    /// A cached bearer token that failed may just be revoked; a fresh one that failed is final.
    var fresh: Bool
}

extension RegistryClient {
    /// The header to send: nil until the registry has asked for auth (anonymous first).
    func authorization(for endpoint: Endpoint, scopes: [AuthScope], context: ErrorContext) throws(FetchError) -> SentAuthorization? {
        let now = ContinuousClock.now
        let (challenge, cached) = auth.withLock { state -> (AuthChallenge?, String?) in
            let token = state.tokens[endpoint.host]?.first { token in
                now < token.refreshAt && scopes.allSatisfy { wanted in token.scopes.contains { $0.covers(wanted) } }
            }
            return (state.challenges[endpoint.host], token?.token)
        }
        switch challenge {
        case nil:
            return nil
        case .basic:
            guard case .basic(let user, let password)? = credentials.credentials(forRegistry: endpoint.credentialKey) else { return nil }
            return SentAuthorization(header: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString(), fresh: true)
        case .bearer(let realm, let service):
            if let cached { return SentAuthorization(header: "Bearer " + cached, fresh: false) }
            let token = try fetchToken(endpoint: endpoint, realm: realm, service: service, scopes: scopes, context: context)
            return SentAuthorization(header: "Bearer " + token, fresh: true)
        }
    }

    /// Learns from a 401: records the challenge, drops a token that stopped working, or gives up.
    func handleUnauthorized(
        endpoint: Endpoint, response: TransferResult, sent: SentAuthorization?, scopes: [AuthScope], context: ErrorContext
    ) throws(FetchError) {
        let hasCredentials = credentials.credentials(forRegistry: endpoint.credentialKey) != nil
        guard let header = response.headers["WWW-Authenticate"], let challenge = AuthChallenge(header: header) else {
            throw context.error(sent == nil && !hasCredentials ? .authenticationRequired : .unauthorized, status: 401, body: response.body)
        }
        let known = auth.withLock { state -> AuthChallenge? in
            let previous = state.challenges[endpoint.host]
            state.challenges[endpoint.host] = challenge
            if sent != nil { state.tokens[endpoint.host] = nil }
            return previous
        }
        switch challenge {
        case .basic:
            guard hasCredentials else { throw context.error(.authenticationRequired, status: 401, body: response.body) }
            if sent != nil && known == challenge { throw context.error(.unauthorized, status: 401, body: response.body) }
        case .bearer:
            // A fresh token that is refused will not get better by asking again.
            if let sent, sent.fresh, known == challenge {
                throw context.error(hasCredentials ? .unauthorized : .authenticationRequired, status: 401, body: response.body)
            }
        }
        logger.debug("registry asked for authentication", metadata: ["registry": "\(endpoint.host)", "challenge": "\(header)"])
    }

    /// GET (or, with an identity token, POST) the token realm for `scopes` and cache the result.
    func fetchToken(endpoint: Endpoint, realm: String, service: String?, scopes: [AuthScope], context: ErrorContext) throws(FetchError) -> String {
        var tokenContext = context
        tokenContext.operation = .token
        // The realm is the registry's choice, and the stored credentials go to it.
        if let refusal = URLPolicy.check(realm, from: endpoint.url("/v2/"), what: "the token realm") {
            throw tokenContext.error(.refusedURL(refusal.description))
        }
        var query: [String] = []
        if let service { query.append("service=" + percentEncode(service)) }
        for scope in scopes { query.append("scope=" + percentEncode(scope.scopeString)) }
        let stored = credentials.credentials(forRegistry: endpoint.credentialKey)

        let response = try performWithRetries(endpoint: nil, context: tokenContext) {
            switch stored {
            case .identityToken(let refreshToken):
                // docker's OAuth2 refresh-token grant.
                var form = ["grant_type=refresh_token", "refresh_token=" + percentEncode(refreshToken), "client_id=imgfs"]
                form += query
                let body = Array(form.joined(separator: "&").utf8)
                return Transfer(method: "POST", url: realm, headers: ["Content-Type: application/x-www-form-urlencoded"], body: .bytes(body))
            case .basic(let user, let password):
                let basic = Data("\(user):\(password)".utf8).base64EncodedString()
                return Transfer(method: "GET", url: realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&"), headers: ["Authorization: Basic " + basic])
            case nil:
                return Transfer(method: "GET", url: realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&"))
            }
        }
        guard response.status == 200 else {
            let kind: FetchError.Kind = response.status == 401 ? (stored == nil ? .authenticationRequired : .unauthorized) : (response.status == 403 ? .forbidden : .httpStatus)
            throw tokenContext.error(kind, status: response.status, body: response.body)
        }
        struct TokenReply: Decodable {
            var token: String?
            var access_token: String?
            var expires_in: Int?
        }
        guard let reply = try? JSONDecoder().decode(TokenReply.self, from: Data(response.body)),
              let token = reply.token ?? reply.access_token, !token.isEmpty else {
            throw tokenContext.error(.invalidResponse("token response has no token"), status: response.status)
        }
        // The distribution spec says 60 s when unspecified. Refresh a fifth of the lifetime
        // (at most 30 s) early.
        let lifetime = Duration.seconds(max(reply.expires_in ?? 60, 1))
        let margin = min(lifetime / 5, .seconds(30))
        let cached = CachedToken(token: token, scopes: scopes, refreshAt: ContinuousClock.now + lifetime - margin)
        auth.withLock { state in
            state.tokens[endpoint.host, default: []].removeAll { old in scopes.allSatisfy { wanted in old.scopes.contains { $0 == wanted } } }
            state.tokens[endpoint.host, default: []].append(cached)
            state.tokensIssued += 1
        }
        logger.debug("got registry token", metadata: ["registry": "\(endpoint.host)", "scopes": "\(scopes.map(\.scopeString))", "expires_in": "\(reply.expires_in ?? 60)"])
        return token
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
func percentEncode(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.append(Character(Unicode.Scalar(byte)))
        default:
            let digits = Array("0123456789ABCDEF")
            out.append("%")
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xf)])
        }
    }
    return out
}
