import CCurl
import Glibc
import Threading

/// libcurl must be initialised once per process before any handle is made, and
/// `curl_global_init` is not thread-safe; a lazily initialised static runs it exactly once.
enum CurlGlobal {
    static let initialized: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
}

/// Response header fields in arrival order; names compare case-insensitively.
struct HTTPHeaders: Sendable {
    var fields: [(name: String, value: String)] = []

    subscript(_ name: String) -> String? {
        let lower = name.lowercased()
        return fields.first { $0.name.lowercased() == lower }?.value
    }

    func values(_ name: String) -> [String] {
        let lower = name.lowercased()
        return fields.filter { $0.name.lowercased() == lower }.map(\.value)
    }
}

/// A request body read on demand, so a multi-gigabyte blob never has to be in memory.
/// `read(offset, buffer)` fills the buffer from `offset` (relative to this body) and returns the count.
struct RequestBody {
    var size: Int64
    var read: (Int64, UnsafeMutableRawBufferPointer) throws -> Int

    static func bytes(_ bytes: [UInt8]) -> RequestBody {
        RequestBody(size: Int64(bytes.count)) { offset, buffer in
            let start = Int(offset)
            let n = min(buffer.count, bytes.count - start)
            guard n > 0 else { return 0 }
            bytes.withUnsafeBytes { src in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[start..<(start + n)]))
            }
            return n
        }
    }
}

/// One HTTP exchange, without redirects, retries or auth (those live in `RegistryClient`).
struct Transfer {
    var method: String
    var url: String
    var headers: [String] = []
    var body: RequestBody? = nil
    /// How many body bytes to keep when the response is not streamed to `sink`.
    var collectLimit: Int = 64 * 1024
    /// Receives the body of a 2xx response with its status and headers; returns false to stop
    /// the transfer early (not an error).
    var sink: ((Int, HTTPHeaders, UnsafeRawBufferPointer) throws -> Bool)? = nil
    /// The whole exchange, body included, ends by then (CURLOPT_TIMEOUT_MS): a body that trickles
    /// in faster than the low-speed limit would otherwise hold the caller without bound.
    /// CLOCK_MONOTONIC seconds, as `monotonicNow()`.
    var deadline: Double? = nil
    /// Nobody waits for this transfer's bytes yet: it runs on the background handles, whose new
    /// connections get a `backgroundReceiveBuffer` (see `DemandGate`).
    var background = false
    /// SO_RCVBUF of a background connection: small enough that a paused background transfer has
    /// little in flight ahead of a reader's, large enough for tens of MB/s at LAN round trips.
    static let backgroundReceiveBuffer = 128 * 1024
}

struct TransferResult {
    var status: Int
    var headers: HTTPHeaders
    /// The collected body (for non-2xx responses, or when there is no sink).
    var body: [UInt8]
    /// True when the body was longer than `collectLimit` and the transfer was cut short.
    var bodyTruncated: Bool
    /// Absolute URL of the `Location` header, resolved by libcurl against the request URL.
    var redirectURL: String?
    /// Connections libcurl had to open for this transfer (0 when one was reused).
    var newConnections: Int
    var bytesDelivered: Int64
}

/// A transfer that failed below HTTP, or whose callback threw.
enum TransportFailure: Error {
    case curl(CurlFailure)
    case callback(any Error)
    /// A URL the registry sent was not followed (see `URLPolicy`).
    case refused(URLPolicy.Refusal)
}

/// A libcurl error, classified here so that no other file needs libcurl's constants.
struct CurlFailure: Error {
    enum Kind { case connect, timeout, other }
    var code: Int
    var message: String
    /// errno of the failed socket call, for a plain "Connection refused".
    var osErrno: Int32
    var kind: Kind
    /// Worth another attempt: the connection failed or dropped, not the request itself.
    var retriable: Bool

    init(code: CURLcode, message: String, osErrno: Int32) {
        self.code = Int(code.rawValue)
        self.message = message
        self.osErrno = osErrno
        switch code {
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_SSL_CONNECT_ERROR,
             CURLE_PEER_FAILED_VERIFICATION:
            kind = .connect
        case CURLE_OPERATION_TIMEDOUT:
            kind = .timeout
        default:
            kind = .other
        }
        switch code {
        case CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING,
             CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            retriable = true
        default:
            retriable = false
        }
    }

    static let noHandle = CurlFailure(code: CURLE_FAILED_INIT, message: "cannot create a libcurl handle", osErrno: 0)
    static let tooManyRedirects = CurlFailure(code: CURLE_TOO_MANY_REDIRECTS, message: "more than 10 redirects", osErrno: 0)
}

/// Settings applied to every transfer of a client.
struct TransportSettings: Sendable {
    var connectTimeoutMilliseconds: Int
    var lowSpeedSeconds: Int
    var userAgent: String
    var caBundle: String?
    var insecureSkipTLSVerify: Bool
    /// Passed as CURLOPT_NOPROXY: the environment's NO_PROXY plus loopback, which must never be proxied.
    var noProxy: String
    var httpProxy: String?
    var httpsProxy: String?
}

/// A libcurl easy handle. Not thread-safe: the pool hands each one to a single thread at a
/// time, which is why it may be `@unchecked Sendable`. Reusing a handle reuses its open
/// connections, which is the point of pooling them.
final class CurlEasy: @unchecked Sendable {
    private let handle: UnsafeMutableRawPointer

    init?() {
        guard CurlGlobal.initialized, let handle = curl_easy_init() else { return nil }
        self.handle = handle
    }

    deinit { curl_easy_cleanup(handle) }

    func perform(_ transfer: Transfer, settings: TransportSettings) -> Result<TransferResult, TransportFailure> {
        // Reset clears options from the previous request but keeps live connections and caches.
        curl_easy_reset(handle)
        let context = TransferContext(transfer)
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        let userdata = unmanaged.toOpaque()

        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        // "Expect:" stops libcurl from waiting for 100-continue before every upload.
        for header in transfer.headers + ["Expect:"] {
            headerList = curl_slist_append(headerList, header)
        }
        defer { curl_slist_free_all(headerList) }

        setLong(CURLOPT_NOSIGNAL, 1)
        // Only HTTP, whatever URL a registry talks us into: libcurl would otherwise speak
        // gopher, dict, file, ftp… (see URLPolicy, which refuses such URLs before they get here).
        // Fail closed: a libcurl that cannot be limited must not run the transfer at all.
        guard imgfs_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, URLPolicy.allowedProtocols) == CURLE_OK,
              imgfs_curl_setopt_string(handle, CURLOPT_REDIR_PROTOCOLS_STR, URLPolicy.allowedProtocols) == CURLE_OK
        else {
            return .failure(.curl(CurlFailure(code: CURLE_NOT_BUILT_IN, message: "libcurl cannot be limited to http and https", osErrno: 0)))
        }
        setString(CURLOPT_URL, transfer.url)
        if transfer.background { imgfs_curl_set_receive_buffer(handle, Transfer.backgroundReceiveBuffer) }
        setLong(CURLOPT_FOLLOWLOCATION, 0)  // redirects are followed by the client, which controls the Authorization header
        setLong(CURLOPT_CONNECTTIMEOUT_MS, settings.connectTimeoutMilliseconds)
        setLong(CURLOPT_LOW_SPEED_LIMIT, 1024)
        setLong(CURLOPT_LOW_SPEED_TIME, settings.lowSpeedSeconds)
        if let deadline = transfer.deadline {
            let milliseconds = Self.remainingMilliseconds(until: deadline)
            guard milliseconds > 0 else {
                return .failure(.curl(CurlFailure(code: CURLE_OPERATION_TIMEDOUT, message: "the deadline passed before the request was sent", osErrno: 0)))
            }
            setLong(CURLOPT_TIMEOUT_MS, milliseconds)
        }
        setLong(CURLOPT_TCP_KEEPALIVE, 1)
        setString(CURLOPT_USERAGENT, settings.userAgent)
        setString(CURLOPT_NOPROXY, settings.noProxy)
        if transfer.url.hasPrefix("https:") {
            if let proxy = settings.httpsProxy { setString(CURLOPT_PROXY, proxy) }
        } else if let proxy = settings.httpProxy {
            setString(CURLOPT_PROXY, proxy)
        }
        if let caBundle = settings.caBundle { setString(CURLOPT_CAINFO, caBundle) }
        if settings.insecureSkipTLSVerify {
            setLong(CURLOPT_SSL_VERIFYPEER, 0)
            setLong(CURLOPT_SSL_VERIFYHOST, 0)
        }
        _ = imgfs_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)

        _ = imgfs_curl_setopt_header(handle, curlHeaderCallback)
        _ = imgfs_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, userdata)
        _ = imgfs_curl_setopt_write(handle, curlWriteCallback)
        _ = imgfs_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, userdata)

        switch transfer.method {
        case "GET":
            setLong(CURLOPT_HTTPGET, 1)
        case "HEAD":
            setLong(CURLOPT_NOBODY, 1)
        default:
            setString(CURLOPT_CUSTOMREQUEST, transfer.method)
            if transfer.method != "DELETE" {
                // Upload mode with a known size sends Content-Length (also 0), which registries want.
                setLong(CURLOPT_UPLOAD, 1)
                _ = imgfs_curl_setopt_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(transfer.body?.size ?? 0))
                _ = imgfs_curl_setopt_read(handle, curlReadCallback)
                _ = imgfs_curl_setopt_pointer(handle, CURLOPT_READDATA, userdata)
                // libcurl rewinds the body when it must send it again (a proxy's 407, a reused
                // connection that dropped); without this it fails with "necessary data rewind
                // wasn't possible".
                _ = imgfs_curl_setopt_seek(handle, curlSeekCallback)
                _ = imgfs_curl_setopt_pointer(handle, CURLOPT_SEEKDATA, userdata)
            }
        }

        let code = errorBuffer.withUnsafeMutableBufferPointer { buffer -> CURLcode in
            // The error buffer must stay at a fixed address for the whole transfer.
            _ = imgfs_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress)
            let code = curl_easy_perform(handle)
            _ = imgfs_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, nil)
            return code
        }

        let connects = getLong(CURLINFO_NUM_CONNECTS)
        if let error = context.callbackError { return .failure(.callback(error)) }
        let stoppedOnPurpose = context.stoppedBySink || context.bodyTruncated
        if code != CURLE_OK && !(code == CURLE_WRITE_ERROR && stoppedOnPurpose) {
            let message = errorBuffer.withUnsafeBufferPointer { buffer -> String in
                let text = buffer.baseAddress.map { String(cString: $0) } ?? ""
                return text.isEmpty ? String(cString: curl_easy_strerror(code)) : text
            }
            return .failure(.curl(CurlFailure(code: code, message: message, osErrno: Int32(getLong(CURLINFO_OS_ERRNO)))))
        }
        var redirect: UnsafeMutablePointer<CChar>? = nil
        _ = imgfs_curl_getinfo_string(handle, CURLINFO_REDIRECT_URL, &redirect)
        return .success(TransferResult(
            status: context.status, headers: context.headers, body: context.collected,
            bodyTruncated: context.bodyTruncated, redirectURL: redirect.map { String(cString: $0) },
            newConnections: connects, bytesDelivered: context.delivered))
    }

    /// What is left until `deadline` in whole milliseconds, rounded up (libcurl's timeout unit)
    /// and clamped for a far-future one; 0 once it has passed.
    private static func remainingMilliseconds(until deadline: Double) -> Int {
        let left = (deadline - monotonicNow()) * 1000
        guard left > 0 else { return 0 }
        return left >= Double(Int32.max) ? Int(Int32.max) : Int(left.rounded(.up))
    }

    private func setLong(_ option: CURLoption, _ value: Int) {
        _ = imgfs_curl_setopt_long(handle, option, value)
    }

    private func setString(_ option: CURLoption, _ value: String) {
        _ = imgfs_curl_setopt_string(handle, option, value)  // libcurl copies option strings
    }

    private func getLong(_ info: CURLINFO) -> Int {
        var value: Int = 0
        _ = imgfs_curl_getinfo_long(handle, info, &value)
        return value
    }
}

/// State shared with the C callbacks of one transfer, passed as their userdata pointer.
private final class TransferContext {
    let transfer: Transfer
    var status = 0
    var headers = HTTPHeaders()
    var collected: [UInt8] = []
    var bodyTruncated = false
    var stoppedBySink = false
    var callbackError: (any Error)?
    var delivered: Int64 = 0
    var uploadOffset: Int64 = 0

    init(_ transfer: Transfer) { self.transfer = transfer }

    func header(_ line: String) {
        if line.hasPrefix("HTTP/") {
            // A new status line (after 100 Continue or similar) starts a new header block.
            let parts = line.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = HTTPHeaders()
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = String(line[..<colon])
        let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
        headers.fields.append((name, String(value)))
    }

    /// Returns the count consumed; anything else makes libcurl abort the transfer.
    func write(_ buffer: UnsafeRawBufferPointer) -> Int {
        if let sink = transfer.sink, (200..<300).contains(status) {
            do {
                guard try sink(status, headers, buffer) else {
                    stoppedBySink = true
                    return 0
                }
                delivered += Int64(buffer.count)
                return buffer.count
            } catch {
                callbackError = error
                return 0
            }
        }
        let room = transfer.collectLimit - collected.count
        if buffer.count > room {
            collected.append(contentsOf: buffer.prefix(max(room, 0)))
            bodyTruncated = true
            return 0
        }
        collected.append(contentsOf: buffer)
        return buffer.count
    }

    /// Moves the upload back (or forward) for libcurl to send the body again; the body is
    /// repeatable by contract (`RequestBody`), so any offset inside it is fine.
    func seek(to offset: Int64, origin: Int32) -> Bool {
        guard origin == SEEK_SET, let body = transfer.body, (0...body.size).contains(offset) else { return false }
        uploadOffset = offset
        return true
    }

    func read(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let body = transfer.body else { return 0 }
        let want = min(Int64(buffer.count), body.size - uploadOffset)
        guard want > 0 else { return 0 }
        do {
            let n = try body.read(uploadOffset, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(want)]))
            guard n > 0 else { throw BodyReadError(offset: uploadOffset, expected: body.size) }
            uploadOffset += Int64(n)
            return n
        } catch {
            callbackError = error
            return Int(CURL_READFUNC_ABORT)
        }
    }
}

/// The body reader returned no bytes before the promised size was reached.
struct BodyReadError: Error, CustomStringConvertible {
    var offset: Int64
    var expected: Int64
    var description: String { "body reader returned no data at offset \(offset) of \(expected)" }
}

private let curlHeaderCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userdata in
    let total = size * count
    guard let data, let userdata else { return total }
    let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
    var bytes = UnsafeRawBufferPointer(start: data, count: total)[...]
    // Trim CR LF as bytes: as a String, "\r\n" is one Character and hasSuffix("\n") misses it.
    while let last = bytes.last, last == 0x0a || last == 0x0d { bytes = bytes.dropLast() }
    context.header(String(decoding: bytes, as: UTF8.self))
    return total
}

private let curlWriteCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userdata in
    let total = size * count
    guard let data, let userdata else { return total }
    let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
    return context.write(UnsafeRawBufferPointer(start: data, count: total))
}

private let curlReadCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userdata in
    guard let data, let userdata else { return Int(CURL_READFUNC_ABORT) }
    let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
    return context.read(UnsafeMutableRawBufferPointer(start: data, count: size * count))
}

private let curlSeekCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, Int32) -> Int32 = {
    userdata, offset, origin in
    guard let userdata else { return CURL_SEEKFUNC_FAIL }
    let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
    return context.seek(to: Int64(offset), origin: origin) ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_CANTSEEK
}
