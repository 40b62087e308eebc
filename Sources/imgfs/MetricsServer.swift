import Glibc
import Mount

/// A blocking HTTP/1.1 server with one route, `GET /metrics`, for `imgfs metrics`: one
/// connection at a time, closed after each answer. A Prometheus server scrapes every few
/// seconds, so nothing more is needed, and no HTTP package is pulled in for it.
struct MetricsServer {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let descriptor: Int32
    /// The address it listens on, with the port the kernel chose when asked for port 0.
    let address: String

    /// Listens on `HOST:PORT` (`127.0.0.1:9456`, `[::1]:9456`; a numeric host).
    init(listen: String) throws(Failure) {
        guard let colon = listen.lastIndex(of: ":"), colon != listen.startIndex else {
            throw Failure(description: "--listen \(listen): expected HOST:PORT, e.g. 127.0.0.1:9456")
        }
        var host = String(listen[..<colon])
        let port = String(listen[listen.index(after: colon)...])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let number = UInt16(port) else {
            throw Failure(description: "--listen \(listen): the port must be a number from 0 to 65535")
        }
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var info: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(number), &hints, &info)
        guard status == 0, let first = info else {
            throw Failure(description: "--listen \(listen): \(host) is not a numeric IPv4 or IPv6 address")
        }
        defer { freeaddrinfo(info) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, Glibc.listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "--listen \(listen): \(reason)")
        }
        var bound = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let boundPort: UInt16 = withUnsafeMutablePointer(to: &bound) { storage in
            storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
            return storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
        // sin_port and sin6_port sit at the same offset, so this reads either family's port.
        descriptor = fd
        address = (host.contains(":") ? "[\(host)]" : host) + ":\(boundPort)"
    }

    /// Answers connections until the process is killed; `body` is called once per scrape.
    func serve(_ body: () -> String) -> Never {
        while true {
            let client = accept(descriptor, nil, nil)
            guard client >= 0 else { continue }
            // A client that connects and sends nothing must not stop the next scrape for long.
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            answer(client, body)
            close(client)
        }
    }

    private func answer(_ client: Int32, _ body: () -> String) {
        guard let head = readHead(client), let line = head.split(separator: "\r\n", maxSplits: 1).first else { return }
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            respond(client, "400 Bad Request", "text/plain; charset=utf-8", "bad request\n", includeBody: true)
            return
        }
        let method = parts[0], path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard method == "GET" || method == "HEAD" else {
            respond(client, "405 Method Not Allowed", "text/plain; charset=utf-8", "only GET and HEAD\n", includeBody: true)
            return
        }
        guard path == "/metrics" else {
            respond(client, "404 Not Found", "text/plain; charset=utf-8", "imgfs serves /metrics only\n", includeBody: method == "GET")
            return
        }
        respond(client, "200 OK", PrometheusExposition.contentType, body(), includeBody: method == "GET")
    }

    /// The request line and headers (up to 16 KiB), or nil if the client closed or timed out first.
    private func readHead(_ client: Int32) -> String? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 16384 {
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            bytes += buffer[0..<n]
            if let text = String(validating: bytes, as: UTF8.self), text.contains("\r\n\r\n") { return text }
        }
        return nil
    }

    private func respond(_ client: Int32, _ status: String, _ type: String, _ body: String, includeBody: Bool) {
        let payload = Array(body.utf8)
        var message = Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n\r\n".utf8)
        if includeBody { message += payload }
        var sent = 0
        while sent < message.count {
            let n = message.withUnsafeBytes { raw in
                send(client, UnsafeRawBufferPointer(rebasing: raw[sent...]).baseAddress, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            sent += n
        }
    }
}
