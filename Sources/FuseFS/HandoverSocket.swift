#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Unix `SOCK_SEQPACKET` sockets between the descriptor holder and the processes that talk to
/// it. Seqpacket keeps message boundaries, so each request, answer and handover is one
/// `send`/`recv` and no framing is needed; a descriptor travels as `SCM_RIGHTS` ancillary data.
public enum HandoverSocket {
    /// Largest packet either side sends (a handover is a few hundred bytes).
    static let maximumPacket = 4096

    /// Binds and listens on `path` (an old socket file there is replaced), mode 0600.
    public static func listen(path: String) throws(FuseError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure(path, "socket") }
        unlink(path)
        let previousMask = umask(0o077)
        defer { umask(previousMask) }
        let bound = withAddress(path) { address, length in bind(fd, address, length) }
        guard bound == 0, Glibc.listen(fd, 8) == 0 else {
            let error = failure(path, "bind/listen")
            close(fd)
            throw error
        }
        return fd
    }

    /// Connects to the socket at `path`.
    public static func connect(path: String) throws(FuseError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure(path, "socket") }
        let connected = withAddress(path) { address, length in Glibc.connect(fd, address, length) }
        guard connected == 0 else {
            let error = failure(path, "connect")
            close(fd)
            throw error
        }
        return fd
    }

    /// Accepts a connection, close-on-exec (`accept4` is a GNU extension Swift's Glibc lacks;
    /// the holder is single-threaded and spawns only between accepts).
    public static func accept(_ listenFD: Int32) -> Int32 {
        let fd = retryingEINTR { Glibc.accept(listenFD, nil, nil) }
        if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return fd
    }

    /// Sends one packet, with `descriptor` attached when given.
    public static func send(_ fd: Int32, _ bytes: [UInt8], passing descriptor: Int32? = nil) -> Bool {
        var payload = bytes
        // struct cmsghdr { size_t len; int level; int type; } then the data, 8-byte aligned:
        // CMSG_SPACE(sizeof(int)) is 24 and CMSG_LEN(sizeof(int)) is 20 on LP64.
        var control = [UInt8](repeating: 0, count: 24)
        return payload.withUnsafeMutableBytes { payloadBytes -> Bool in
            control.withUnsafeMutableBytes { controlBytes -> Bool in
                var vector = iovec(iov_base: payloadBytes.baseAddress, iov_len: payloadBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer -> Bool in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    if let descriptor {
                        controlBytes.storeBytes(of: 20, toByteOffset: 0, as: Int.self)
                        controlBytes.storeBytes(of: SOL_SOCKET, toByteOffset: 8, as: Int32.self)
                        controlBytes.storeBytes(of: Int32(SCM_RIGHTS), toByteOffset: 12, as: Int32.self)
                        controlBytes.storeBytes(of: descriptor, toByteOffset: 16, as: Int32.self)
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = 24
                    }
                    return retryingEINTR { sendmsg(fd, &message, Int32(MSG_NOSIGNAL)) } == payloadBytes.count
                }
            }
        }
    }

    /// Receives one packet and the descriptor sent with it, if any (close-on-exec). Nil at
    /// end of stream or on error; waits at most `timeoutMilliseconds` (-1: forever).
    public static func receive(_ fd: Int32, timeoutMilliseconds: Int32 = -1) -> (bytes: [UInt8], descriptor: Int32?)? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard retryingEINTR({ poll(&poller, 1, timeoutMilliseconds) }) > 0 else { return nil }
        var payload = [UInt8](repeating: 0, count: maximumPacket)
        var control = [UInt8](repeating: 0, count: 64)
        var received = 0
        var descriptor: Int32?
        payload.withUnsafeMutableBytes { payloadBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: payloadBytes.baseAddress, iov_len: payloadBytes.count)
                withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    let count = retryingEINTR { recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC)) }
                    received = count
                    // Only one SCM_RIGHTS message with one descriptor is ever sent.
                    if count >= 0, message.msg_controllen >= 20 {
                        let level = controlBytes.load(fromByteOffset: 8, as: Int32.self)
                        let type = controlBytes.load(fromByteOffset: 12, as: Int32.self)
                        if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                            descriptor = controlBytes.load(fromByteOffset: 16, as: Int32.self)
                        }
                    }
                }
            }
        }
        guard received > 0 else {
            if let descriptor { close(descriptor) }
            return nil
        }
        return (Array(payload[..<received]), descriptor)
    }

    /// The process id and user id of the peer of a connected socket (`SO_PEERCRED`).
    public static func peer(_ fd: Int32) -> (pid: pid_t, uid: uid_t)? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else { return nil }
        return (credentials.0, credentials.1)
    }

    private static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(capacity - 1))
            raw.copyBytes(from: bytes)
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    private static func failure(_ path: String, _ operation: String) -> FuseError {
        FuseError(mountpoint: path, reason: .handoverFailed("\(operation) \(path): \(describeErrno(errno))"))
    }
}
