/// How a ``FuseMount`` talks to the kernel.
public struct FuseMountOptions: Sendable, Equatable {
    /// Shown as the source in `/proc/mounts` and `df`.
    public var fsName: String = "imgfs"
    /// Shown as `fuse.<subtype>` in `/proc/mounts`.
    public var subtype: String? = "imgfs"
    /// Let users other than the mounter see the files (`allow_other`; needs
    /// `user_allow_other` in /etc/fuse.conf unless root).
    public var allowOther: Bool = false
    /// Upper bound on libfuse worker threads, so on concurrent backend calls.
    public var maxThreads: Int = 16
    /// Largest read request served (bytes), and so the size of the per-thread read buffers.
    /// The kernel is asked for at most `kernelMaxRead`.
    public var maxRead: Int = 1 << 20
    /// Largest write request the kernel sends (bytes).
    public var maxWrite: Int = 1 << 20
    /// Kernel readahead per file (bytes).
    public var maxReadahead: Int = 4 << 20
    /// Let the kernel keep the page cache of immutable files across opens, so warm reads
    /// never reach the daemon.
    public var keepPageCache: Bool = true
    /// Attribute and entry cache lifetime for immutable files, in seconds.
    public var immutableTimeout: Double = 86_400
    /// Attribute and entry cache lifetime for other files and the root, in seconds.
    public var mutableTimeout: Double = 1
    /// Reply to reads of ``LocalExtent``s with `splice` (file to pipe to `/dev/fuse`), which
    /// saves copying every byte through a user-space buffer.
    public var spliceReplies: Bool = true
    /// Let one `/dev/fuse` descriptor per worker thread spread the request queue.
    public var cloneFD: Bool = true
    /// libfuse's own request trace, on stderr (`-d`).
    public var debug: Bool = false

    public init() {}

    public init(fsName: String = "imgfs", subtype: String? = "imgfs", allowOther: Bool = false, maxThreads: Int = 16) {
        self.fsName = fsName
        self.subtype = subtype
        self.allowOther = allowOther
        self.maxThreads = maxThreads
    }

    /// The `max_read` the kernel is given: `maxRead`, lowered where splicing replies is on and
    /// libfuse's pipe could not carry a reply that large (`SplicePipe`). A read of a little less
    /// than a frame that is spliced costs less than a read of a whole frame copied twice.
    public var kernelMaxRead: Int {
        spliceReplies ? SplicePipe.largestSplicedRead(upTo: maxRead) : maxRead
    }

    /// The `-o` option string for `fuse_session_new`, or a reason it cannot be built.
    func mountOptionString(mountpoint: String) throws(FuseError) -> String {
        func invalid(_ detail: String) -> FuseError {
            FuseError(mountpoint: mountpoint, reason: .invalidOptions(detail))
        }
        func clean(_ value: String, _ what: String) throws(FuseError) -> String {
            if value.isEmpty || value.contains(where: { $0 == "," || $0 == "\\" || $0 == "\0" || $0.isWhitespace }) {
                throw invalid("\(what) \"\(value)\" must be non-empty without commas, backslashes or spaces")
            }
            return value
        }
        guard maxThreads >= 1, maxThreads <= 1024 else {
            throw invalid("maxThreads \(maxThreads) is not in 1...1024")
        }
        guard maxRead >= 4096, maxRead <= 1 << 20, maxWrite >= 4096, maxWrite <= 1 << 20 else {
            throw invalid("maxRead and maxWrite must be in 4 KiB...1 MiB")
        }
        guard maxReadahead >= 0, immutableTimeout >= 0, mutableTimeout >= 0 else {
            throw invalid("maxReadahead and timeouts must not be negative")
        }
        var parts = ["default_permissions", "max_read=\(kernelMaxRead)", "fsname=\(try clean(fsName, "fsName"))"]
        if let subtype { parts.append("subtype=\(try clean(subtype, "subtype"))") }
        if allowOther { parts.append("allow_other") }
        return parts.joined(separator: ",")
    }
}
