#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFuse3
import Logging

/// The libfuse low-level operation table. Every handler is a `@convention(c)` closure
/// without captures: it finds its state through `fuse_req_userdata`, replies exactly
/// once, and returns early on error. Nothing here is isolated to an actor.
enum FuseOperations {
    static func table() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let userdata, let conn else { return }
            FuseOperations.initialize(FuseOperations.state(userdata), conn)
        }
        ops.destroy = { userdata in
            guard let userdata else { return }
            FuseOperations.state(userdata).logger.debug("FUSE session destroyed")
        }
        ops.lookup = { req, parent, name in FuseOperations.handle(req) { FuseOperations.lookup($0, $1, parent, name) } }
        ops.forget = { req, inode, count in FuseOperations.handle(req) { $1.forget(inode, count); fuse_reply_none($0) } }
        ops.forget_multi = { req, count, forgets in
            FuseOperations.handle(req) { req, state in
                for item in UnsafeBufferPointer(start: forgets, count: forgets == nil ? 0 : count) {
                    state.forget(item.ino, item.nlookup)
                }
                fuse_reply_none(req)
            }
        }
        ops.getattr = { req, inode, _ in FuseOperations.handle(req) { FuseOperations.getattr($0, $1, inode) } }
        ops.setattr = { req, inode, attributes, toSet, _ in FuseOperations.handle(req) { FuseOperations.setattr($0, $1, inode, attributes, toSet) } }
        ops.open = { req, inode, info in FuseOperations.handle(req) { FuseOperations.open($0, $1, inode, info) } }
        ops.read = { req, inode, size, offset, _ in FuseOperations.handle(req) { FuseOperations.read($0, $1, inode, size, offset) } }
        ops.write = { req, inode, bytes, size, offset, _ in FuseOperations.handle(req) { FuseOperations.write($0, $1, inode, bytes, size, offset) } }
        ops.flush = { req, inode, _ in FuseOperations.handle(req) { FuseOperations.flush($0, $1, inode) } }
        ops.fsync = { req, inode, _, _ in FuseOperations.handle(req) { FuseOperations.flush($0, $1, inode) } }
        ops.release = { req, _, _ in FuseOperations.reply(req, errno: 0) }
        ops.opendir = { req, inode, info in FuseOperations.handle(req) { FuseOperations.opendir($0, $1, inode, info) } }
        ops.readdir = { req, inode, size, offset, _ in FuseOperations.handle(req) { FuseOperations.readdir($0, $1, inode, size, offset) } }
        ops.releasedir = { req, _, _ in FuseOperations.reply(req, errno: 0) }
        ops.statfs = { req, _ in FuseOperations.handle(req) { FuseOperations.statfs($0, $1) } }
        ops.lseek = { req, inode, offset, whence, _ in FuseOperations.handle(req) { FuseOperations.lseek($0, $1, inode, offset, whence) } }
        // The directory is fixed: every namespace change is refused here, not with ENOSYS.
        ops.mknod = { req, _, _, _, _ in FuseOperations.reply(req, errno: FileSystemError.readOnly.errno) }
        ops.mkdir = { req, _, _, _ in FuseOperations.reply(req, errno: FileSystemError.readOnly.errno) }
        ops.unlink = { req, _, _ in FuseOperations.reply(req, errno: FileSystemError.readOnly.errno) }
        ops.rmdir = { req, _, _ in FuseOperations.reply(req, errno: FileSystemError.readOnly.errno) }
        ops.symlink = { req, _, _, _ in FuseOperations.reply(req, errno: FileSystemError.readOnly.errno) }
        ops.rename = { req, _, _, _, _, _ in FuseOperations.reply(req, errno: FileSystemError.readOnly.errno) }
        ops.link = { req, _, _, _ in FuseOperations.reply(req, errno: FileSystemError.readOnly.errno) }
        ops.create = { req, _, _, _, _ in FuseOperations.reply(req, errno: FileSystemError.readOnly.errno) }
        return ops
    }

    // MARK: - State and replies

    static func state(_ userdata: UnsafeMutableRawPointer) -> FuseSessionState {
        Unmanaged<FuseSessionState>.fromOpaque(userdata).takeUnretainedValue()
    }

    /// Runs `body` with the request and its session state; libfuse never passes a nil request.
    static func handle(_ req: fuse_req_t?, _ body: (fuse_req_t, FuseSessionState) -> Void) {
        guard let req else { return }
        body(req, state(req))
    }

    static func reply(_ req: fuse_req_t?, errno: Int32) {
        if let req { fuse_reply_err(req, errno) }
    }

    static func state(_ req: fuse_req_t) -> FuseSessionState {
        guard let userdata = fuse_req_userdata(req) else {
            // FuseMount always creates the session with its state as userdata.
            preconditionFailure("FUSE session without userdata")
        }
        return state(userdata)
    }

    /// Replies with the errno for `error`, logging what the kernel will not show.
    static func reply(_ req: fuse_req_t, _ state: FuseSessionState, _ error: FileSystemError, _ operation: StaticString, inode: fuse_ino_t, offset: Int64? = nil) {
        var metadata: Logger.Metadata = ["op": "\(operation)", "inode": "\(inode)", "error": "\(error)", "errno": "\(describeErrno(error.errno))"]
        if let offset { metadata["offset"] = "\(offset)" }
        if let index = state.fileIndex(inode) { metadata["file"] = "\(state.entries[index].name)" }
        switch error {
        case .failed, .io, .posix: state.logger.error("FUSE request failed", metadata: metadata)
        case .notFound, .readOnly, .invalid: state.logger.debug("FUSE request refused", metadata: metadata)
        }
        fuse_reply_err(req, error.errno)
    }

    // MARK: - Handlers

    static func initialize(_ state: FuseSessionState, _ conn: UnsafeMutablePointer<fuse_conn_info>) {
        let options = state.options
        var info = conn.pointee
        if info.capable & UInt32(FUSE_CAP_ASYNC_READ) != 0 {
            info.want |= UInt32(FUSE_CAP_ASYNC_READ)
        }
        // Replies from local files go file -> pipe -> /dev/fuse. Not SPLICE_MOVE: the pages
        // belong to the cache file's page cache, and moving them buys nothing for reads.
        if options.spliceReplies && info.capable & UInt32(FUSE_CAP_SPLICE_WRITE) != 0 {
            info.want |= UInt32(FUSE_CAP_SPLICE_WRITE)
        }
        info.want &= ~UInt32(FUSE_CAP_SPLICE_MOVE)
        // Page-cache invalidation on size/mtime change only matters for mutable files;
        // immutable files never change, mutable ones change only through us.
        info.want &= ~UInt32(FUSE_CAP_AUTO_INVAL_DATA)
        // Must match the `max_read=` mount option given to fuse_session_new.
        info.max_read = UInt32(options.kernelMaxRead)
        info.max_write = UInt32(options.maxWrite)
        // The kernel takes the smaller of this and its own default.
        info.max_readahead = UInt32(options.maxReadahead)
        info.max_background = UInt32(max(16, options.maxThreads * 2))
        info.congestion_threshold = info.max_background * 3 / 4
        conn.pointee = info
        state.logger.debug("FUSE session initialised", metadata: [
            "proto": "\(info.proto_major).\(info.proto_minor)",
            "max_read": "\(info.max_read)", "max_write": "\(info.max_write)",
            "max_readahead": "\(info.max_readahead)",
        ])
    }

    static func lookup(_ req: fuse_req_t, _ state: FuseSessionState, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        guard parent == FuseSessionState.rootInode else {
            reply(req, state, .posix(ENOTDIR, "lookup under a file"), "lookup", inode: parent)
            return
        }
        guard let name, let index = state.names[String(cString: name)] else {
            fuse_reply_err(req, FileSystemError.notFound.errno)
            return
        }
        let entry = state.currentEntry(index)
        let timeout = state.timeout(for: entry)
        var parameters = fuse_entry_param()
        parameters.ino = FuseSessionState.firstFileInode + fuse_ino_t(index)
        parameters.generation = 1
        parameters.attr = state.fileAttributes(index, entry)
        parameters.attr_timeout = timeout
        parameters.entry_timeout = timeout
        // Count before replying: the kernel may send forget as soon as it has the reply.
        state.addLookup(parameters.ino)
        if fuse_reply_entry(req, &parameters) != 0 {
            // The kernel never saw this lookup (interrupted), so it will not forget it.
            state.forget(parameters.ino, 1)
        }
    }

    static func getattr(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t) {
        if inode == FuseSessionState.rootInode {
            var attributes = state.rootAttributes()
            fuse_reply_attr(req, &attributes, state.options.mutableTimeout)
            return
        }
        guard let index = state.fileIndex(inode) else {
            reply(req, state, .notFound, "getattr", inode: inode)
            return
        }
        let entry = state.currentEntry(index)
        var attributes = state.fileAttributes(index, entry)
        fuse_reply_attr(req, &attributes, state.timeout(for: entry))
    }

    static func setattr(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t, _ requested: UnsafeMutablePointer<stat>?, _ toSet: Int32) {
        let refusedChanges = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID
        if inode == FuseSessionState.rootInode {
            guard toSet & refusedChanges == 0, toSet & FUSE_SET_ATTR_SIZE == 0 else {
                reply(req, state, .posix(EPERM, "the root directory cannot change"), "setattr", inode: inode)
                return
            }
            var attributes = state.rootAttributes()
            fuse_reply_attr(req, &attributes, state.options.mutableTimeout)
            return
        }
        guard let index = state.fileIndex(inode) else {
            reply(req, state, .notFound, "setattr", inode: inode)
            return
        }
        var entry = state.currentEntry(index)
        if toSet & refusedChanges != 0 {
            reply(req, state, entry.writable ? .posix(EPERM, "mode and owner are fixed") : .readOnly, "setattr", inode: inode)
            return
        }
        if toSet & FUSE_SET_ATTR_SIZE != 0, let requested {
            let size = UInt64(clamping: requested.pointee.st_size)
            if size != entry.size {
                guard entry.writable else {
                    reply(req, state, .readOnly, "truncate", inode: inode)
                    return
                }
                do {
                    try state.backend.truncate(file: index, size: size)
                } catch {
                    reply(req, state, error, "truncate", inode: inode, offset: Int64(clamping: size))
                    return
                }
                entry = state.currentEntry(index)
            }
        }
        // Time changes are accepted and ignored: times come from the backend.
        var attributes = state.fileAttributes(index, entry)
        fuse_reply_attr(req, &attributes, state.timeout(for: entry))
    }

    static func open(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t, _ info: UnsafeMutablePointer<fuse_file_info>?) {
        guard let index = state.fileIndex(inode) else {
            let error: FileSystemError = inode == FuseSessionState.rootInode ? .posix(EISDIR, "open of the root directory") : .notFound
            reply(req, state, error, "open", inode: inode)
            return
        }
        guard let info else {
            reply(req, state, .invalid("open without file info"), "open", inode: inode)
            return
        }
        state.applyReadahead(state.backend.readahead(forOpening: index) ?? state.options.maxReadahead)
        let entry = state.entries[index]
        let flags = info.pointee.flags
        let wantsWrite = flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0
        if wantsWrite && !entry.writable {
            reply(req, state, .readOnly, "open", inode: inode)
            return
        }
        if flags & O_TRUNC != 0 && entry.writable {
            do {
                try state.backend.truncate(file: index, size: 0)
            } catch {
                reply(req, state, error, "open(O_TRUNC)", inode: inode)
                return
            }
        }
        info.pointee.direct_io = 0
        info.pointee.keep_cache = entry.immutable && state.options.keepPageCache ? 1 : 0
        // Nothing to flush on close of a read-only open.
        info.pointee.noflush = wantsWrite ? 0 : 1
        fuse_reply_open(req, info)
    }

    static func read(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t, _ size: Int, _ offset: off_t) {
        guard let index = state.fileIndex(inode) else {
            reply(req, state, inode == FuseSessionState.rootInode ? .posix(EISDIR, "read of a directory") : .notFound, "read", inode: inode)
            return
        }
        guard offset >= 0 else {
            reply(req, state, .invalid("negative offset"), "read", inode: inode, offset: Int64(offset))
            return
        }
        let entry = state.entries[index]
        var count = size
        if entry.immutable {
            // The size is fixed: answer EOF without the backend, and never ask past it.
            guard UInt64(offset) < entry.size else {
                fuse_reply_buf(req, nil, 0)
                return
            }
            count = Int(min(UInt64(size), entry.size - UInt64(offset)))
            if count > 0, let pieces = state.backend.localPieces(file: index, offset: UInt64(offset), count: count),
               replyFromLocalPieces(req, state, pieces, count: count) {
                return
            }
        }
        state.readBuffers.withBuffer(count: count) { buffer in
            let produced: Int
            do throws(FileSystemError) {
                produced = try state.backend.read(file: index, offset: UInt64(offset), into: buffer)
            } catch {
                reply(req, state, error, "read", inode: inode, offset: Int64(offset))
                return
            }
            guard produced >= 0, produced <= buffer.count else {
                reply(req, state, .io("backend returned \(produced) bytes for a \(buffer.count)-byte read"), "read", inode: inode, offset: Int64(offset))
                return
            }
            fuse_reply_buf(req, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), produced)
        }
    }

    /// The fast path for bytes the backend has in local files or knows are zeros: large replies
    /// are spliced (no copy through user space; zeros come from `ZeroPages` as the shared zero
    /// page), small ones are `pread` and zero-filled into this thread's buffer (libfuse would not
    /// splice under two pages anyway, and would allocate a buffer for each).
    /// Returns false, without replying, if the bytes could not be read; the caller then asks
    /// the backend.
    static func replyFromLocalPieces(_ req: fuse_req_t, _ state: FuseSessionState, _ pieces: [LocalPiece], count: Int) -> Bool {
        guard pieces.reduce(0, { $0 + $1.count }) == count else { return false }
        let needsZeroPages = pieces.contains { if case .zeros = $0 { true } else { false } }
        if count >= state.spliceMinimum && (!needsZeroPages || state.zeroPages != nil)
            && SplicePipe.fits(count: count, buffers: spliceBufferCount(pieces, zeroPages: state.zeroPages)) {
            spliceReply(req, pieces, zeroPages: state.zeroPages)
            return true
        }
        return state.readBuffers.withBuffer(count: count) { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            var at = 0
            for piece in pieces {
                switch piece {
                case .zeros(let length):
                    (base + at).initializeMemory(as: UInt8.self, repeating: 0, count: length)
                case .file(let extent, let length):
                    var done = 0
                    while done < length {
                        let n = retryingEINTR { pread(extent.descriptor, base + at + done, length - done, off_t(extent.offset) + off_t(done)) }
                        guard n > 0 else { return false }
                        done += n
                    }
                }
                at += piece.count
            }
            fuse_reply_buf(req, base.assumingMemoryBound(to: CChar.self), count)
            return true
        }
    }

    /// The descriptor runs `spliceReply` makes of `pieces`: zeros longer than `zeroPages` take several.
    static func spliceBufferCount(_ pieces: [LocalPiece], zeroPages: ZeroPages?) -> Int {
        pieces.reduce(0) { total, piece in
            guard case .zeros(let length) = piece, let size = zeroPages?.size, size > 0 else { return total + 1 }
            return total + max(1, (length + size - 1) / size)
        }
    }

    /// One reply of `pieces` as a libfuse buffer vector of descriptor runs, which libfuse splices
    /// into its pipe and on to `/dev/fuse`. Replies exactly once: with the bytes, or with the errno
    /// of a failed read from a descriptor.
    static func spliceReply(_ req: fuse_req_t, _ pieces: [LocalPiece], zeroPages: ZeroPages?) {
        var buffers: [fuse_buf] = []
        buffers.reserveCapacity(pieces.count + 1)
        let fromDescriptor = fuse_buf_flags(rawValue: FUSE_BUF_IS_FD.rawValue | FUSE_BUF_FD_SEEK.rawValue)
        for piece in pieces {
            switch piece {
            case .file(let extent, let length):
                buffers.append(fuse_buf(size: length, flags: fromDescriptor, mem: nil, fd: extent.descriptor, pos: off_t(extent.offset)))
            case .zeros(var length):
                guard let zeroPages else {
                    // The caller checks for zeroPages first; never left without a reply.
                    fuse_reply_err(req, EIO)
                    return
                }
                while length > 0 {
                    let part = min(length, zeroPages.size)
                    buffers.append(fuse_buf(size: part, flags: fromDescriptor, mem: nil, fd: zeroPages.descriptor, pos: 0))
                    length -= part
                }
            }
        }
        // fuse_bufvec ends in a one-element array that the C code indexes past: room for them all.
        let headerSize = MemoryLayout<fuse_bufvec>.offset(of: \fuse_bufvec.buf)!
        let stride = MemoryLayout<fuse_buf>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(MemoryLayout<fuse_bufvec>.size, headerSize + stride * buffers.count),
                                                   alignment: MemoryLayout<fuse_bufvec>.alignment)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: headerSize)
        let vector = raw.bindMemory(to: fuse_bufvec.self, capacity: 1)
        vector.pointee.count = buffers.count
        vector.pointee.idx = 0
        vector.pointee.off = 0
        (raw + headerSize).bindMemory(to: fuse_buf.self, capacity: buffers.count).initialize(from: buffers, count: buffers.count)
        _ = fuse_reply_data(req, vector, fuse_buf_copy_flags(rawValue: 0))
    }

    static func write(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t, _ bytes: UnsafePointer<CChar>?, _ size: Int, _ offset: off_t) {
        guard let index = state.fileIndex(inode) else {
            reply(req, state, .notFound, "write", inode: inode)
            return
        }
        guard state.entries[index].writable else {
            reply(req, state, .readOnly, "write", inode: inode)
            return
        }
        guard offset >= 0 else {
            reply(req, state, .invalid("negative offset"), "write", inode: inode, offset: Int64(offset))
            return
        }
        let written: Int
        do {
            written = try state.backend.write(file: index, offset: UInt64(offset), data: UnsafeRawBufferPointer(start: bytes, count: size))
        } catch {
            reply(req, state, error, "write", inode: inode, offset: Int64(offset))
            return
        }
        guard written >= 0, written <= size else {
            reply(req, state, .io("backend wrote \(written) of \(size) bytes"), "write", inode: inode, offset: Int64(offset))
            return
        }
        fuse_reply_write(req, written)
    }

    static func flush(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t) {
        guard let index = state.fileIndex(inode), state.entries[index].writable else {
            fuse_reply_err(req, 0)
            return
        }
        do {
            try state.backend.flush(file: index)
        } catch {
            reply(req, state, error, "flush", inode: inode)
            return
        }
        fuse_reply_err(req, 0)
    }

    static func opendir(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t, _ info: UnsafeMutablePointer<fuse_file_info>?) {
        guard inode == FuseSessionState.rootInode else {
            reply(req, state, state.fileIndex(inode) == nil ? .notFound : .posix(ENOTDIR, "opendir of a file"), "opendir", inode: inode)
            return
        }
        if let info {
            // The listing never changes while mounted.
            info.pointee.cache_readdir = 1
            info.pointee.keep_cache = 1
        }
        fuse_reply_open(req, info)
    }

    /// Directory offsets: entry k of [".", "..", files...] has offset k + 1 (the offset of
    /// the next entry), so `offset` is the number of entries already returned.
    static func readdir(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t, _ size: Int, _ offset: off_t) {
        guard inode == FuseSessionState.rootInode else {
            reply(req, state, .posix(ENOTDIR, "readdir of a file"), "readdir", inode: inode)
            return
        }
        let total = state.entries.count + 2
        guard offset >= 0, offset < total, size > 0 else {
            fuse_reply_buf(req, nil, 0)
            return
        }
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { buffer.deallocate() }
        var used = 0
        for position in Int(offset)..<total {
            var attributes = stat()
            let name: String
            switch position {
            case 0:
                name = "."
                attributes.st_ino = UInt(FuseSessionState.rootInode)
                attributes.st_mode = S_IFDIR
            case 1:
                name = ".."
                attributes.st_ino = UInt(FuseSessionState.rootInode)
                attributes.st_mode = S_IFDIR
            default:
                name = state.entries[position - 2].name
                attributes.st_ino = UInt(FuseSessionState.firstFileInode) + UInt(position - 2)
                attributes.st_mode = S_IFREG
            }
            let remaining = size - used
            let needed = name.withCString { cName in
                fuse_add_direntry(req, buffer.advanced(by: used), remaining, cName, &attributes, off_t(position + 1))
            }
            if needed > remaining { break }
            used += needed
        }
        fuse_reply_buf(req, buffer, used)
    }

    static func statfs(_ req: fuse_req_t, _ state: FuseSessionState) {
        let blockSize: UInt64 = 4096
        var totalBytes: UInt64 = 0
        for entry in state.entries { totalBytes &+= entry.size }
        var info = statvfs()
        info.f_bsize = UInt(blockSize)
        info.f_frsize = UInt(blockSize)
        info.f_blocks = fsblkcnt_t((totalBytes + blockSize - 1) / blockSize)
        info.f_bfree = 0
        info.f_bavail = 0
        info.f_files = fsfilcnt_t(state.entries.count + 1)
        info.f_ffree = 0
        info.f_favail = 0
        info.f_namemax = 255
        fuse_reply_statfs(req, &info)
    }

    static func lseek(_ req: fuse_req_t, _ state: FuseSessionState, _ inode: fuse_ino_t, _ offset: off_t, _ whence: Int32) {
        guard let index = state.fileIndex(inode) else {
            reply(req, state, .notFound, "lseek", inode: inode)
            return
        }
        let kind: SeekWhence
        switch whence {
        case seekData: kind = .data
        case seekHole: kind = .hole
        default:
            // The kernel answers SEEK_SET/CUR/END itself and only forwards these two.
            reply(req, state, .invalid("lseek whence \(whence)"), "lseek", inode: inode, offset: Int64(offset))
            return
        }
        guard offset >= 0 else {
            reply(req, state, .posix(ENXIO, "negative offset"), "lseek", inode: inode, offset: Int64(offset))
            return
        }
        let size = state.currentEntry(index).size
        guard UInt64(offset) < size else {
            fuse_reply_err(req, ENXIO)
            return
        }
        let answer: UInt64?
        do {
            answer = try state.backend.seek(file: index, offset: UInt64(offset), whence: kind)
        } catch {
            reply(req, state, error, "lseek", inode: inode, offset: Int64(offset))
            return
        }
        guard var answer else {
            fuse_reply_err(req, ENXIO)
            return
        }
        // A hole always exists at the end of the file; never answer past it.
        answer = min(answer, size)
        guard answer >= UInt64(offset), kind == .hole || answer < size else {
            if kind == .data && answer == size {
                fuse_reply_err(req, ENXIO)
            } else {
                reply(req, state, .io("backend answered seek from \(offset) with \(answer)"), "lseek", inode: inode, offset: Int64(offset))
            }
            return
        }
        fuse_reply_lseek(req, off_t(answer))
    }
}

/// Linux's `SEEK_DATA` / `SEEK_HOLE` (GNU extensions the Swift Glibc module does not export).
let seekData: Int32 = 3
let seekHole: Int32 = 4
