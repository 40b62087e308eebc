#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFuse3
import Logging
import Synchronization

/// Everything a FUSE handler may touch, reached only through the session's userdata
/// (`fuse_req_userdata(req)`), never through globals: handlers run on libfuse's threads.
///
/// Locks (all leaves; no lock is held while calling the backend or replying to FUSE):
/// 1. `lookupCounts`: the kernel's references per inode (lookup/forget accounting).
/// There is no other lock; `entries`, `names` and `options` are immutable after init.
///
/// Every identity the kernel holds is derived from the backend's fixed entry list, so a
/// serving process started on an adopted descriptor after another one died presents the same
/// tree without any saved state: the root is inode 1, entry `i` is inode `i + 2`, every
/// generation is 1 (inodes are never reused), file handles are 0 (opens keep no state; reads
/// and writes name the inode), and the root's times are the mount's time, which the holder
/// hands over. Only the lookup counts start again from zero, so an adopted session accepts
/// forgets for lookups it never answered.
final class FuseSessionState: Sendable {
    static let rootInode: fuse_ino_t = 1
    static let firstFileInode: fuse_ino_t = 2

    let backend: any FileSystemBackend
    let options: FuseMountOptions
    let logger: Logger
    /// The directory as read at mount; index = inode - 2.
    let entries: [FileEntry]
    /// Name → index into `entries`.
    let names: [String: Int]
    let ownerUID: uid_t
    let ownerGID: gid_t
    let mountTime: Int64
    /// Per-thread read buffers of `options.maxRead` bytes.
    let readBuffers: ThreadLocalBuffer
    /// Local-extent replies of at least this many bytes are spliced (libfuse copies smaller
    /// ones anyway: two pages), or `Int.max` when splicing is off.
    let spliceMinimum: Int
    /// The source of spliced zeros (holes), at least `options.maxRead` bytes; nil without memfd.
    let zeroPages: ZeroPages?
    /// The kernel's lookup count per inode (index = inode); see `forget`.
    let lookupCounts: Mutex<[UInt64]>
    /// `/sys/class/bdi/<major:minor>/read_ahead_kb` of this mount, set by FuseMount after
    /// mounting (nil where it cannot be written), and the readahead last written to it. Written
    /// at opens, after INIT (which would otherwise cap it at 128 KiB).
    let readaheadSetting = Mutex<(path: String?, applied: Int?)>((nil, nil))

    /// Whether another process answered this connection's lookups before (see above).
    let adopted: Bool

    init(backend: any FileSystemBackend, options: FuseMountOptions, logger: Logger, mountTime: Int64? = nil, adopted: Bool = false) throws(FileSystemError) {
        self.adopted = adopted
        self.backend = backend
        self.options = options
        self.logger = logger
        let entries = backend.entries()
        var names: [String: Int] = [:]
        for (index, entry) in entries.enumerated() {
            let name = entry.name
            if name.isEmpty || name == "." || name == ".." || name.contains("/") || name.contains("\0") || name.utf8.count > 255 {
                throw .invalid("file name \"\(name)\" cannot be a directory entry")
            }
            if names.updateValue(index, forKey: name) != nil {
                throw .invalid("file name \"\(name)\" appears twice")
            }
        }
        self.entries = entries
        self.names = names
        ownerUID = getuid()
        ownerGID = getgid()
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        self.mountTime = mountTime ?? Int64(now.tv_sec)
        readBuffers = ThreadLocalBuffer(capacity: options.maxRead)
        spliceMinimum = options.spliceReplies ? 2 * SplicePipe.page : Int.max
        zeroPages = options.spliceReplies ? ZeroPages(size: options.maxRead) : nil
        lookupCounts = Mutex([UInt64](repeating: 0, count: entries.count + 2))
    }

    /// The index into `entries` for a file inode, or nil for the root and unknown inodes.
    func fileIndex(_ inode: fuse_ino_t) -> Int? {
        guard inode >= Self.firstFileInode, inode - Self.firstFileInode < UInt64(entries.count) else { return nil }
        return Int(inode - Self.firstFileInode)
    }

    /// The entry as it is now: immutable entries from the mount-time table, others asked
    /// again so a writable file's size is current.
    func currentEntry(_ index: Int) -> FileEntry {
        let entry = entries[index]
        if entry.immutable { return entry }
        let fresh = backend.entries()
        guard index < fresh.count, fresh[index].name == entry.name else { return entry }
        return fresh[index]
    }

    func timeout(for entry: FileEntry?) -> Double {
        guard let entry else { return options.mutableTimeout }
        return entry.immutable ? options.immutableTimeout : options.mutableTimeout
    }

    func rootAttributes() -> stat {
        var attributes = stat()
        attributes.st_ino = UInt(Self.rootInode)
        attributes.st_mode = S_IFDIR | 0o555
        attributes.st_nlink = 2
        attributes.st_uid = ownerUID
        attributes.st_gid = ownerGID
        attributes.st_size = 4096
        attributes.st_blksize = 4096
        attributes.st_blocks = 8
        attributes.st_mtim.tv_sec = Int(mountTime)
        attributes.st_ctim.tv_sec = Int(mountTime)
        attributes.st_atim.tv_sec = Int(mountTime)
        return attributes
    }

    func fileAttributes(_ index: Int, _ entry: FileEntry) -> stat {
        var attributes = stat()
        attributes.st_ino = UInt(Self.firstFileInode) + UInt(index)
        attributes.st_mode = S_IFREG | (entry.mode & 0o7777)
        attributes.st_nlink = 1
        attributes.st_uid = ownerUID
        attributes.st_gid = ownerGID
        attributes.st_size = Int(clamping: entry.size)
        attributes.st_blksize = 4096
        attributes.st_blocks = Int(clamping: (entry.size + 511) / 512)
        attributes.st_mtim.tv_sec = Int(entry.modificationTime)
        attributes.st_ctim.tv_sec = Int(entry.modificationTime)
        attributes.st_atim.tv_sec = Int(entry.modificationTime)
        return attributes
    }

    func addLookup(_ inode: fuse_ino_t) {
        lookupCounts.withLock { counts in
            if inode < UInt64(counts.count) { counts[Int(inode)] &+= 1 }
        }
    }

    func forget(_ inode: fuse_ino_t, _ count: UInt64) {
        let underflow = lookupCounts.withLock { counts -> Bool in
            guard inode < UInt64(counts.count) else { return false }
            let current = counts[Int(inode)]
            counts[Int(inode)] = current >= count ? current - count : 0
            return current < count
        }
        if underflow && !adopted {
            logger.warning("kernel forgot more lookups than it made", metadata: ["inode": "\(inode)", "count": "\(count)"])
        }
    }

    /// Sets the kernel's readahead for this mount to `bytes` for the files opened from now on,
    /// if it is not that already. The INIT reply caps it at 128 KiB (`FUSE_MAX_READAHEAD`
    /// aside), so the first open raises it; later opens may lower or raise it again
    /// (`FileSystemBackend.readahead(forOpening:)`).
    func applyReadahead(_ bytes: Int) {
        readaheadSetting.withLock { setting in
            guard let path = setting.path, setting.applied != bytes else { return }
            let text = "\(bytes / 1024)\n"
            let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else {
                logger.debug("cannot set readahead", metadata: ["path": "\(path)", "error": "\(describeErrno(errno))"])
                setting.path = nil
                return
            }
            defer { close(fd) }
            if text.withCString({ write(fd, $0, strlen($0)) }) < 0 {
                logger.debug("cannot set readahead", metadata: ["path": "\(path)", "error": "\(describeErrno(errno))"])
                setting.path = nil
            } else {
                setting.applied = bytes
                logger.debug("readahead set", metadata: ["path": "\(path)", "kilobytes": "\(bytes / 1024)"])
            }
        }
    }

    /// The kernel's lookup count for an inode (for tests and `status`).
    func lookupCount(_ inode: fuse_ino_t) -> UInt64 {
        lookupCounts.withLock { counts in inode < UInt64(counts.count) ? counts[Int(inode)] : 0 }
    }
}

/// One reusable buffer per thread (libfuse workers come and go; the buffer is freed with
/// its thread).
final class ThreadLocalBuffer: Sendable {
    let capacity: Int
    private let key: pthread_key_t

    init(capacity: Int) {
        self.capacity = capacity
        var key = pthread_key_t()
        let result = pthread_key_create(&key) { pointer in free(pointer) }
        // Without a key every read allocates: slower, still correct.
        self.key = result == 0 ? key : pthread_key_t.max
    }

    deinit {
        // Only libfuse workers use the key, and they have all exited (freeing their
        // buffers) once the session loop returned and the mount released its state.
        if key != pthread_key_t.max { pthread_key_delete(key) }
    }

    /// Runs `body` with a buffer of `count` bytes (this thread's buffer when it is big enough).
    func withBuffer<R>(count: Int, _ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        if count <= capacity, key != pthread_key_t.max {
            var pointer = pthread_getspecific(key)
            if pointer == nil, let fresh = malloc(capacity) {
                if pthread_setspecific(key, fresh) == 0 {
                    pointer = fresh
                } else {
                    free(fresh)
                }
            }
            if let pointer {
                return body(UnsafeMutableRawBufferPointer(start: pointer, count: count))
            }
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        defer { buffer.deallocate() }
        return body(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]))
    }
}
