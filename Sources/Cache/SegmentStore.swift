import Formats
import Glibc
import Logging
import SystemIO
import Verity

/// What identifies the decoded bytes of a layer: its blob, how it is decoded and (when the
/// manifest gives one) the digest they must have. Two segments with the same key decode to the
/// same verified file, so a blob shared by several segments (or images) is fetched once.
///
/// The uncompressed digest is part of the key because a file verified against one claim must
/// not be served for a segment that makes another; the length is checked when the file is opened.
struct SegmentKey: Hashable, Sendable {
    let name: String

    init(_ segment: Segment) {
        var name = "\(segment.blob.digest.hex)-\(segment.codec.rawValue)"
        if let digest = segment.uncompressedDigest { name += "-\(digest.hex)" }
        self.name = name
    }
}

/// The decoded, verified bytes of one layer, open for reading: only `SegmentStore.open` makes
/// one, and only for a file under its final name, which only a verified fetch gives it.
final class VerifiedSegmentFile: Sendable {
    let fd: Int32
    let length: UInt64
    let path: String

    fileprivate init(fd: Int32, length: UInt64, path: String) {
        self.fd = fd
        self.length = length
        self.path = path
    }

    deinit { close(fd) }

    /// Fills `buffer` from `offset` inside the layer (holes of the sparse file read as zeros).
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer, layer: String) throws(MountError) {
        let done: Int
        do { done = try FileIO.readFully(fd, into: buffer, at: offset, path: path) } catch {
            throw .foreign(.cacheIO(layer: layer, operation: "read", path: path, errno: error.errno))
        }
        // A file of the right length cannot end early; someone truncated it under us.
        guard done == buffer.count else { throw .foreign(.cacheIO(layer: layer, operation: "read", path: path, errno: EIO)) }
    }
}

/// The whole-layer cache of a mount: one sparse file per verified layer under
/// `<cache-root>/segments/`. A fetch writes `<key>.partial.<pid>` and renames it to `<key>` only
/// after the layer verified and the file is durable, so after a crash a complete-looking name
/// always holds verified bytes; partial files of dead processes are removed when a store opens.
struct SegmentStore: Sendable {
    let directory: String

    init(cacheRoot: String, logger: Logger) throws(MountError) {
        directory = cacheRoot + "/segments"
        try LocalFiles.makeDirectories(directory)
        removeStalePartials(logger: logger)
    }

    func finalPath(_ key: SegmentKey) -> String { "\(directory)/\(key.name)" }
    func partialPath(_ key: SegmentKey) -> String { "\(directory)/\(key.name).partial.\(getpid())" }

    /// The verified file for `key`, or nil when it has not been fetched yet (or has a length this
    /// segment does not claim: then a fetch checks the claim, and fails if it is false).
    func open(_ key: SegmentKey, length: UInt64, layer: String) throws(MountError) -> VerifiedSegmentFile? {
        let path = finalPath(key)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw .foreign(.cacheIO(layer: layer, operation: "open", path: path, errno: errno))
        }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size == off_t(length) else {
            close(fd)
            return nil
        }
        return VerifiedSegmentFile(fd: fd, length: length, path: path)
    }

    /// Where the SHA-256 of a layer's decoded bytes is kept, written when the fetch verified them:
    /// what a later daemon checks the file against when the manifest gives no uncompressed digest.
    func digestPath(_ key: SegmentKey) -> String { finalPath(key) + ".sha256" }

    /// Records the digest of a fetched layer's decoded bytes, durably, before the layer's file is
    /// renamed into place (so a final file never lacks its digest, except one from before digests
    /// were kept, which `openChecked` discards).
    func storeDigest(_ digest: Digest, for key: SegmentKey, layer: String) throws(MountError) {
        let path = digestPath(key)
        try LocalFiles.writeAtomically(path, Array(digest.description.utf8), durable: true)
    }

    /// `open`, for a file this daemon has not served yet: the whole file is hashed and compared
    /// with the segment's uncompressed digest (or, without one, the digest recorded when it was
    /// fetched). A file that does not match, or has no digest to match, is removed and nil is
    /// returned, so the layer is fetched again: bytes on disk are not trusted because of their name.
    func openChecked(_ key: SegmentKey, segment: Segment, logger: Logger) throws(MountError) -> VerifiedSegmentFile? {
        guard let file = try open(key, length: segment.length, layer: segment.name) else { return nil }
        let recorded = (try? LocalFiles.read(digestPath(key), limit: 100)).flatMap { try? Digest(parsing: String(decoding: $0, as: UTF8.self)) }
        let expected = segment.uncompressedDigest ?? recorded
        let actual = try Self.digest(of: file, layer: segment.name)
        if let expected, actual == expected { return file }
        logger.info("cached layer does not match its digest; removing it to fetch it again", metadata: [
            "layer": "\(segment.name)", "path": "\(file.path)", "expected": "\(expected.map { "\($0)" } ?? "none recorded")",
            "actual": "\(actual)"])
        unlink(file.path)
        unlink(digestPath(key))
        return nil
    }

    /// SHA-256 of a layer file's bytes (holes read as zeros), 1 MiB at a time.
    static func digest(of file: VerifiedSegmentFile, layer: String) throws(MountError) -> Digest {
        let hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: UInt64 = 0
        while offset < file.length {
            let count = Int(min(UInt64(buffer.count), file.length - offset))
            let result = buffer.withUnsafeMutableBytes { raw in
                Result { () throws(MountError) in
                    try file.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<count]), layer: layer)
                }
            }
            try result.get()
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            offset += UInt64(count)
        }
        return hasher.finalize()
    }

    func contains(_ key: SegmentKey, length: UInt64) -> Bool {
        var st = stat()
        return stat(finalPath(key), &st) == 0 && st.st_size == off_t(length)
    }

    /// Removes `*.partial.<pid>` files whose process is gone (a fetch interrupted by a crash).
    func removeStalePartials(logger: Logger) {
        guard let handle = opendir(directory) else { return }
        var stale: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let marker = name.firstRange(of: ".partial.") else { continue }
            guard let pid = Int32(name[marker.upperBound...]), pid != getpid(), !MountStatusFiles.isAlive(pid) else { continue }
            stale.append(name)
        }
        closedir(handle)
        for name in stale {
            unlink("\(directory)/\(name)")
            logger.info("removed an interrupted layer download", metadata: ["file": "\(name)"])
        }
    }
}

/// Writes decoded layer bytes into a file that was truncated to the layer's length, skipping
/// 4 KiB blocks (aligned in the file) that are all zero: they stay holes and read as zeros, so a
/// mostly empty disk layer costs little local space.
struct SparseWriter {
    let fd: Int32
    /// The disk offset of the file's first byte.
    let base: UInt64
    let path: String
    let layer: String

    init(fd: Int32, base: UInt64, path: String, layer: String) {
        self.fd = fd
        self.base = base
        self.path = path
        self.layer = layer
    }

    func write(_ bytes: UnsafeRawBufferPointer, atDiskOffset diskOffset: UInt64) throws(MountError) {
        do {
            try FileIO.writeSkippingZeros(fd, bytes, at: diskOffset - base, path: path)
        } catch {
            throw .foreign(.cacheIO(layer: layer, operation: error.operation, path: path, errno: error.errno))
        }
    }
}
