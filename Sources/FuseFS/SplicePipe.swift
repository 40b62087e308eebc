#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFuse3

/// What libfuse's per-thread splice pipe can carry, and so which replies it splices.
///
/// `fuse_reply_data` splices a reply only if the whole message fits in the thread's pipe at once:
/// the header, the bytes, and a page of slack per buffer (libfuse's own estimate,
/// `pagesize * (iovecs + buffers + 1) + length`). A pipe grows past `/proc/sys/fs/pipe-max-size`
/// (1 MiB by default) only for a process with `CAP_SYS_RESOURCE`, which root in a container, or
/// under a systemd unit that drops it, does not have. Without it a 1 MiB read never fits, and
/// libfuse falls back, for every reply, to `malloc`ing a buffer of the reply's size, `pread`ing
/// into it and `writev`ing it: a fresh mapping, its page faults and two copies per request.
///
/// So the kernel is asked for reads that fit (`largestSplicedRead`), and FuseFS copies through its
/// own reused buffer any reply that would not (`fits`).
enum SplicePipe {
    static let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    /// The `fuse_out_header` in front of every reply.
    static let headerBytes = 16
    /// Descriptor runs a spliced read reply may have: a read spans at most two frames, each a run
    /// of the cache file or of zeros.
    static let plannedBuffers = 2
    /// Linux's `F_SETPIPE_SZ`, which Swift's Glibc module hides (it needs `_GNU_SOURCE`).
    static let setPipeSize: Int32 = 1031

    /// The bytes one of libfuse's pipes holds: as much as it could ask for when this process may
    /// grow pipes freely, else `/proc/sys/fs/pipe-max-size`, what libfuse falls back to.
    static let capacity: Int = probeCapacity(wanting: 2 << 20)

    /// Whether libfuse splices a reply of `count` bytes in `buffers` descriptor runs rather than
    /// copying it through a buffer it allocates.
    static func fits(count: Int, buffers: Int, capacity: Int = capacity) -> Bool {
        count + headerBytes + page * (buffers + 2) <= capacity
    }

    /// The largest read, at most `maxRead`, whose reply of `plannedBuffers` runs fits the pipe, in
    /// whole pages: `maxRead` itself where pipes can grow, 1 MiB less five pages where they can't.
    static func largestSplicedRead(upTo maxRead: Int, capacity: Int = capacity) -> Int {
        let room = capacity - headerBytes - page * (plannedBuffers + 2)
        return max(page, min(maxRead, room / page * page))
    }

    /// Tries to grow a new pipe to `wanted` bytes; what it could hold, or the system's limit.
    static func probeCapacity(wanting wanted: Int) -> Int {
        var ends: [Int32] = [-1, -1]
        guard makeCloseOnExecPipe(&ends) else { return pipeMaximumSize() }
        defer {
            close(ends[0])
            close(ends[1])
        }
        let granted = fcntl(ends[0], setPipeSize, Int32(wanted))
        return granted >= Int32(wanted) ? Int(granted) : pipeMaximumSize()
    }

    /// `/proc/sys/fs/pipe-max-size`, or Linux's default (1 MiB) when it cannot be read.
    static func pipeMaximumSize() -> Int {
        let fd = open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 1 << 20 }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 32)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 1 << 20 }
        let text = String(decoding: bytes[..<n], as: UTF8.self).trimmingPrefix(while: { $0 == " " })
        return Int(text.prefix(while: { $0.isNumber })) ?? 1 << 20
    }
}
