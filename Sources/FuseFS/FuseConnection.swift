#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFuse3
import Logging

/// A mounted `/dev/fuse` connection owned by the descriptor holder, which outlives the
/// processes that serve it.
///
/// The holder mounts and then reads the kernel's first request, `FUSE_INIT`, itself, without
/// answering it. Every serving process gets the descriptor and those raw bytes
/// (``FuseHandover``) and feeds them to a fresh libfuse session (`FuseMount(adopting:)`),
/// so libfuse negotiates exactly as the first time and reaches the state it would have after
/// a real handshake. The first server's reply answers the kernel's pending INIT; later
/// servers get the request with a unique id no kernel request carries, and the kernel
/// rejects their reply (ENOENT), which libfuse ignores: the kernel never repeats INIT.
// @unchecked: `session` is only used on the holder's one thread; the pointer is kept so
// libfuse never closes the descriptor.
public final class FuseConnection: @unchecked Sendable {
    public let mountpoint: String
    /// The connection's `/dev/fuse` descriptor (close-on-exec).
    public let descriptor: Int32
    /// `FUSE_INIT` exactly as the kernel sent it.
    public let initRequest: [UInt8]
    /// When the mount was made (seconds since the epoch): the root directory's times.
    public let mountTime: Int64
    private let session: OpaquePointer

    /// The unique id of replayed INIT requests. Kernel ids count up in steps of two from
    /// zero (bit 0 marks interrupts, bit 63 resent requests), so none ever reaches bit 62.
    static let replayUnique: UInt64 = 1 << 62

    /// Mounts `mountpoint` (as `FuseMount` would) and reads the kernel's INIT request.
    public init(mountpoint: String, options: FuseMountOptions, logger: Logger) throws(FuseError) {
        self.mountpoint = mountpoint
        let optionString = try options.mountOptionString(mountpoint: mountpoint)
        try FuseMount.checkMountpoint(mountpoint)
        LibfuseLog.install()
        let session = try FuseMount.newSession(mountpoint: mountpoint, arguments: ["imgfs", "-o", optionString],
                                               operations: fuse_lowlevel_ops(), userdata: nil, logger: logger)
        let mounted = LibfuseLog.capturing(logger) { fuse_session_mount(session, mountpoint) }
        guard mounted.value == 0 else {
            fuse_session_destroy(session)
            throw FuseError(mountpoint: mountpoint, reason: .mountFailed(mounted.lastError ?? "fuse_session_mount failed"))
        }
        self.session = session
        let descriptor = fuse_session_fd(session)
        self.descriptor = descriptor
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        mountTime = Int64(now.tv_sec)

        // The kernel queues INIT while mounting; the read buffer must be at least
        // FUSE_MIN_READ_BUFFER and hold the largest write, so give it room for any.
        var buffer = [UInt8](repeating: 0, count: (1 << 20) + 2 * 4096 + 4096)
        let count = retryingEINTR { buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) } }
        // fuse_in_header: len u32, opcode u32, unique u64, nodeid u64, uid, gid, pid, padding.
        guard count >= 40, buffer.withUnsafeBytes({ $0.load(fromByteOffset: 4, as: UInt32.self) }) == 26 /* FUSE_INIT */ else {
            let detail = count < 0 ? describeErrno(errno) : "the first request was not FUSE_INIT"
            fuse_session_unmount(session)
            fuse_session_destroy(session)
            throw FuseError(mountpoint: mountpoint, reason: .mountFailed("reading FUSE_INIT: \(detail)"))
        }
        initRequest = Array(buffer[..<count])
    }

    /// The INIT request for a server after the first: the kernel will not find its unique id.
    public var replayedInitRequest: [UInt8] {
        var bytes = initRequest
        withUnsafeBytes(of: Self.replayUnique.littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
        return bytes
    }

    /// Whether the kernel still has the connection (not unmounted or aborted). `/dev/fuse`
    /// reports POLLERR once it is gone; no events are asked for, so pending requests do not
    /// make this return early.
    public var isConnected: Bool {
        var poller = pollfd(fd: descriptor, events: 0, revents: 0)
        let ready = poll(&poller, 1, 0)
        return !(ready > 0 && poller.revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0)
    }

    /// Asks the kernel to queue again every request a server read but did not answer
    /// (`FUSE_NOTIFY_RESEND`, Linux 6.9). False when the kernel does not know the notification.
    public func resendUnanswered() -> Bool {
        // fuse_out_header { len u32, error i32 (the notify code when unique is 0), unique u64 }.
        // FUSE_NOTIFY_RESEND is 7; Debian 12's <linux/fuse.h> predates it.
        var header = [UInt8](repeating: 0, count: 16)
        header.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(16).littleEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: Int32(7).littleEndian, toByteOffset: 4, as: Int32.self)
        }
        return retryingEINTR { header.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) } } == 16
    }

    /// Detaches the mount (`umount2(MNT_DETACH)` or `fusermount3 -z`): the kernel aborts the
    /// connection once no file is open, and the server's loop ends.
    public func detach() throws(FuseError) {
        try Daemon.unmount(mountpoint, lazy: true)
    }
}

/// What the holder gives a serving process along with the descriptor: one packet.
public struct FuseHandover: Sendable, Equatable {
    /// Restarts after the serving process died, and upgrades asked for, since the mount.
    public var restarts: UInt32
    public var upgrades: UInt32
    public var holderPID: Int32
    public var mountTime: Int64
    /// The raw FUSE_INIT request to feed the new session.
    public var initRequest: [UInt8]

    public init(restarts: UInt32, upgrades: UInt32, holderPID: Int32, mountTime: Int64, initRequest: [UInt8]) {
        self.restarts = restarts
        self.upgrades = upgrades
        self.holderPID = holderPID
        self.mountTime = mountTime
        self.initRequest = initRequest
    }

    static let magic = Array("IMGFSHO1".utf8)

    public func encoded() -> [UInt8] {
        var bytes = Self.magic
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        append(restarts)
        append(upgrades)
        append(holderPID)
        append(mountTime)
        append(UInt32(initRequest.count))
        bytes += initRequest
        return bytes
    }

    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= 32, Array(bytes[0..<8]) == Self.magic else { return nil }
        func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        restarts = load(8, UInt32.self)
        upgrades = load(12, UInt32.self)
        holderPID = load(16, Int32.self)
        mountTime = load(20, Int64.self)
        let length = Int(load(28, UInt32.self))
        guard length >= 40, bytes.count == 32 + length else { return nil }
        initRequest = Array(bytes[32...])
    }
}
