import ImageLayouts
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
public struct SegmentKey: Hashable, Sendable {
    public let name: String

    public init(_ segment: Segment) {
        var name = "\(segment.blob.digest.hex)-\(segment.codec.rawValue)"
        if let digest = segment.uncompressedDigest { name += "-\(digest.hex)" }
        self.name = name
    }
}

/// The decoded, verified bytes of one layer, open for reading: only `SegmentStore.open` makes
/// one, and only for a file under its final name, which only a verified fetch gives it.
public final class VerifiedSegmentFile: Sendable {
    let fd: Int32
    public let length: UInt64
    public let path: String

    fileprivate init(fd: Int32, length: UInt64, path: String) {
        self.fd = fd
        self.length = length
        self.path = path
    }

    deinit { close(fd) }

    /// Fills `buffer` from `offset` inside the layer (holes of the sparse file read as zeros).
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer, layer: String) throws(CacheError) {
        let done: Int
        do { done = try FileIO.readFully(fd, into: buffer, at: offset, path: path) } catch { throw .layer(layer, error) }
        // A file of the right length cannot end early; someone truncated it under us.
        guard done == buffer.count else {
            throw .layer(layer, IOError(operation: "read (file shorter than the layer)", path: path, offset: offset + UInt64(done), errno: EIO))
        }
    }
}

/// The whole-layer cache of a mount: one sparse file per verified layer under
/// `<cache-root>/segments/`. A fetch writes `<key>.partial.<pid>` and renames it to `<key>` only
/// after the layer verified and the file is durable, so after a crash a complete-looking name
/// always holds verified bytes; partial files of dead processes are removed when a store opens.
public struct SegmentStore: Sendable {
    public let directory: String

    public init(cacheRoot: String, logger: Logger) throws(CacheError) {
        directory = cacheRoot + "/segments"
        try systemIO { () throws(IOError) in try FileIO.makeDirectories(directory) }
        removeStalePartials(logger: logger)
    }

    public func finalPath(_ key: SegmentKey) -> String { "\(directory)/\(key.name)" }
    public func partialPath(_ key: SegmentKey) -> String { "\(directory)/\(key.name).partial.\(getpid())" }

    /// The verified file for `key`, or nil when it has not been fetched yet (or has a length this
    /// segment does not claim: then a fetch checks the claim, and fails if it is false).
    public func open(_ key: SegmentKey, length: UInt64, layer: String) throws(CacheError) -> VerifiedSegmentFile? {
        let path = finalPath(key)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw .layer(layer, IOError(operation: "open", path: path, errno: errno))
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
    public func storeDigest(_ digest: Digest, for key: SegmentKey, layer: String) throws(CacheError) {
        do { try FileIO.writeAtomically(Array(digest.description.utf8), to: digestPath(key), durable: true) } catch {
            throw .layer(layer, error)
        }
    }

    /// `open`, for a file this daemon has not served yet: the whole file is hashed and compared
    /// with the segment's uncompressed digest (or, without one, the digest recorded when it was
    /// fetched). A file that does not match, or has no digest to match, is removed and nil is
    /// returned, so the layer is fetched again: bytes on disk are not trusted because of their name.
    public func openChecked(_ key: SegmentKey, segment: Segment, logger: Logger) throws(CacheError) -> VerifiedSegmentFile? {
        guard let file = try open(key, length: segment.length, layer: segment.name) else { return nil }
        let recorded = (try? FileIO.readFile(digestPath(key), limit: 100)).flatMap { try? Digest(parsing: String(decoding: $0, as: UTF8.self)) }
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
    static func digest(of file: VerifiedSegmentFile, layer: String) throws(CacheError) -> Digest {
        let hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: UInt64 = 0
        while offset < file.length {
            let count = Int(min(UInt64(buffer.count), file.length - offset))
            let result = buffer.withUnsafeMutableBytes { raw in
                Result { () throws(CacheError) in
                    try file.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<count]), layer: layer)
                }
            }
            try result.get()
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            offset += UInt64(count)
        }
        return hasher.finalize()
    }

    public func contains(_ key: SegmentKey, length: UInt64) -> Bool {
        var st = stat()
        return stat(finalPath(key), &st) == 0 && st.st_size == off_t(length)
    }

    /// Removes `*.partial.<pid>` files whose process is gone (a fetch interrupted by a crash).
    func removeStalePartials(logger: Logger) {
        let stale = ((try? FileIO.directoryEntries(directory)) ?? []).filter { name in
            guard let marker = name.firstRange(of: ".partial."), let pid = Int32(name[marker.upperBound...]) else { return false }
            return pid != getpid() && !ProcessLiveness.isAlive(pid)
        }
        for name in stale {
            unlink("\(directory)/\(name)")
            logger.info("removed an interrupted layer download", metadata: ["file": "\(name)"])
        }
    }
}
