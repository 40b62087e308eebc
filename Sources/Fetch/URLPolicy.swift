/// Which URLs a registry may send imgfs to.
///
/// A registry is not trusted: its redirects, token realms and upload locations are URLs it
/// chooses, and libcurl speaks far more than HTTP (gopher and dict write raw bytes to any TCP
/// port; file reads local files). Every URL that came from a response, and every mirror the
/// user configured, passes `check` before a transfer is made; libcurl is also limited to
/// http and https (`CurlEasy`), so a URL that slipped past here still fails there.
enum URLPolicy {
    /// Why a URL is not followed, in words fit for an error message. It names the scheme
    /// and host only: the rest of the URL is the registry's text and may be anything.
    struct Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        var description: String
    }

    /// The protocols a transfer may use, as libcurl's CURLOPT_PROTOCOLS_STR wants them.
    static let allowedProtocols = "http,https"

    /// The lowercased scheme of an absolute URL ("https"), or nil for a relative one.
    static func scheme(of url: String) -> String? {
        guard let colon = url.firstIndex(of: ":") else { return nil }
        let candidate = url[..<colon]
        // RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); anything else is a path.
        guard let first = candidate.first, first.isASCII, first.isLetter,
              candidate.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") })
        else { return nil }
        return candidate.lowercased()
    }

    /// The authority of an absolute URL without user info: host and port as written. Used for
    /// messages and for `RegistryClient.origin`.
    static func host(of url: String) -> String {
        guard let start = url.firstRange(of: "://") else { return "" }
        let authority = url[start.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return String(authority.split(separator: "@").last ?? authority)
    }

    /// Checks a URL that `origin` (the URL of the request that produced it, or the registry's
    /// own base URL) points imgfs to: only http and https, and never from https down to http.
    /// `what` names the URL in the refusal ("a redirect", "the token realm").
    static func check(_ url: String, from origin: String, what: String) -> Refusal? {
        guard let scheme = scheme(of: url) else {
            return Refusal(description: "\(what) is not an absolute http or https URL")
        }
        guard scheme == "http" || scheme == "https" else {
            let host = host(of: url)
            return Refusal(description: "\(what) points to a \(scheme): URL\(host.isEmpty ? "" : " on \(host)"); imgfs only follows http and https")
        }
        if scheme == "http" && Self.scheme(of: origin) == "https" {
            return Refusal(description: "\(what) downgrades https to plain http (\(host(of: url))); imgfs does not follow it")
        }
        return nil
    }
}
