import Glibc
import ImgfsFormat
import Logging
import SystemIO
import Verity

/// Finds frames this disk needs in other cache entries under the same root, so that a frame two
/// images share is read from disk instead of fetched.
///
/// Built once per mount: the constructor reads the other entries' `frames.digests` and bitmaps
/// and remembers where each wanted digest has a set bit. `bytes(for:length:)` returns raw bytes;
/// the caller must verify them (`VerifiedFrame.verify`) before storing or serving them, since the
/// other entry is only as trustworthy as its own bitmap.
public final class SharedFrameLocator: Sendable {
    struct Location: Sendable {
        let layout: CacheLayout
        let frame: Int
        let frameSize: Int
        let diskSize: UInt64
        let frameCount: Int
    }

    let locations: [Digest: Location]
    let logger: Logger

    public init(root: String, excluding: CacheKey, wanted: Set<Digest>, logger: Logger) {
        self.logger = logger
        var found: [Digest: Location] = [:]
        if !wanted.isEmpty {
            let names = (try? FileIO.directoryEntries(CacheLayout.disksDirectory(root: root))) ?? []
            for name in names.sorted() where CacheLayout.isEntryName(name) && name != excluding.digest.hex {
                let layout = CacheLayout(root: root, keyHex: name)
                do { try Self.scan(layout, wanted: wanted, into: &found) } catch {
                    logger.debug("skipping cache entry while looking for shared frames", metadata: [
                        "entry": "\(layout.directory)", "error": "\(error)"])
                }
            }
        }
        locations = found
        logger.debug("shared frames found in other cache entries", metadata: ["count": "\(found.count)"])
    }

    /// How many wanted digests have a copy in another entry.
    public var count: Int { locations.count }

    public func contains(_ digest: Digest) -> Bool { locations[digest] != nil }

    /// The bytes of a frame with `digest` from another entry, or nil if there is none (any more).
    /// Unverified: the caller re-verifies them.
    public func bytes(for digest: Digest, length: Int) -> [UInt8]? {
        guard let location = locations[digest] else { return nil }
        do { return try Self.read(location, digest: digest, length: length) } catch {
            logger.debug("could not read a shared frame", metadata: [
                "entry": "\(location.layout.directory)", "frame": "\(location.frame)", "error": "\(error)"])
            return nil
        }
    }

    /// Frame `frame` of `index` from another entry that holds its digest, verified again (the
    /// other entry's file may have been damaged since); nil if there is none or it does not match.
    public func verifiedFrame(_ frame: Int, of index: FrameIndex) -> VerifiedFrame? {
        let digest = index.frames[frame].digest, length = index.geometry.length(ofFrame: frame)
        guard let bytes = bytes(for: digest, length: length) else { return nil }
        return try? VerifiedFrame.verify(frame: frame, bytes: bytes, expectedLength: length, expectedDigest: digest)
    }

    static func scan(_ layout: CacheLayout, wanted: Set<Digest>, into found: inout [Digest: Location]) throws(CacheError) {
        guard let (header, bitmap) = try readHeader(layout) else { return }
        defer { bitmap.close() }
        let frames = Int(header.frameCount)
        let bits = try bitmap.read(count: BitmapFormat.byteCount(frames: frames), at: UInt64(BitmapFormat.headerSize))
        guard BitmapFormat.popcount(bits) > 0 else { return }
        let digestsFile = try FileDescriptor.open(layout.digestsPath, O_RDONLY)
        defer { digestsFile.close() }
        guard Int(try digestsFile.status().st_size) == frames * 32 else { return }
        let digests = try digestsFile.read(count: frames * 32, at: 0)
        for frame in 0..<frames where BitmapFormat.isSet(bits, frame) {
            let digest = Digest(sha256Bytes: digests[frame * 32..<frame * 32 + 32])
            if wanted.contains(digest), found[digest] == nil {
                found[digest] = Location(layout: layout, frame: frame, frameSize: Int(header.frameSize),
                                         diskSize: header.diskSize, frameCount: frames)
            }
        }
    }

    /// The entry's decoded header and its open bitmap file, or nil if the header is not valid.
    static func readHeader(_ layout: CacheLayout) throws(CacheError) -> (BitmapFormat.Header, FileDescriptor)? {
        let bitmap = try FileDescriptor.open(layout.bitmapPath, O_RDONLY)
        guard case .success(let header) = BitmapFormat.Header.decode(try bitmap.read(count: BitmapFormat.headerSize, at: 0)),
              header.frameCount <= UInt64(Int32.max),
              UInt64(try bitmap.status().st_size) == BitmapFormat.fileSize(frames: Int(header.frameCount)) else {
            bitmap.close()
            return nil
        }
        return (header, bitmap)
    }

    static func read(_ location: Location, digest: Digest, length: Int) throws(CacheError) -> [UInt8]? {
        let offset = UInt64(location.frame) * UInt64(location.frameSize)
        guard length > 0, length <= location.frameSize, offset + UInt64(length) <= location.diskSize else { return nil }
        // A shared lock on the other entry while checking its bit and reading: eviction needs the
        // lock exclusively, so it cannot clear the bit and punch the frame in between. Never wait:
        // if eviction holds it now, the frame is about to go anyway.
        let lock = try FileDescriptor.open(location.layout.lockPath, O_RDONLY)
        defer { lock.close() }
        guard try lock.tryLock(LOCK_SH) else { return nil }

        // Re-check what the scan saw: the entry may have been reset or evicted since.
        guard let (header, bitmap) = try readHeader(location.layout) else { return nil }
        defer { bitmap.close() }
        guard Int(header.frameCount) == location.frameCount, Int(header.frameSize) == location.frameSize else { return nil }
        let byte = try bitmap.read(count: 1, at: BitmapFormat.byteOffset(ofFrame: location.frame))
        guard byte[0] & (1 << (location.frame & 7)) != 0 else { return nil }
        let digests = try FileDescriptor.open(location.layout.digestsPath, O_RDONLY)
        defer { digests.close() }
        guard try digests.read(count: 32, at: UInt64(location.frame) * 32) == digest.bytes else { return nil }

        let data = try FileDescriptor.open(location.layout.dataPath, O_RDONLY)
        defer { data.close() }
        return try data.read(count: length, at: offset)
    }
}
