import FoundationEssentials
import Glibc
import Logging
import SystemIO
import Verity

/// The small blobs of mounted images (manifests, configs, frame indexes, nvram, config.json) and
/// which manifest each tag last named, kept under the cache root so that an image that was
/// mounted once can be mounted again with the registry unreachable.
///
///     <root>/blobs/sha256/<hex>                           content-addressed, re-hashed on every read
///     <root>/refs/<registry>/<repository>/<tag>           "sha256:<hex>\n": what the tag named last
///
/// Blobs are trusted only through their digest, so a damaged or tampered file is detected on
/// read, removed and fetched again. A ref record is only a hint for offline use: it says which
/// manifest to use when the registry cannot be asked.
public struct MetadataStore: Sendable {
    public let root: String
    let logger: Logger

    public init(root: String, logger: Logger) {
        self.root = root
        self.logger = logger
    }

    func blobPath(_ digest: Digest) -> String { "\(root)/blobs/sha256/\(digest.hex)" }

    /// The stored blob with `digest`, or nil if it is absent or does not hash to `digest`.
    public func blob(_ digest: Digest, limit: Int64) -> [UInt8]? {
        let path = blobPath(digest)
        guard let bytes = try? FileIO.readFile(path, limit: Int(clamping: limit)) else { return nil }
        guard SHA256Hasher.digest(bytes) == digest else {
            logger.warning("stored metadata blob does not match its digest; removing it", metadata: ["path": "\(path)"])
            unlink(path)
            return nil
        }
        return bytes
    }

    /// Stores `bytes` under `digest` (which the caller has already checked they hash to).
    public func store(_ bytes: [UInt8], digest: Digest) throws(CacheError) {
        let path = blobPath(digest)
        if access(path, F_OK) == 0 { return }
        try systemIO { () throws(IOError) in
            try FileIO.makeDirectories(FileIO.parent(of: path))
            try FileIO.writeAtomically(bytes, to: path, durable: true)
        }
    }

    func refPath(registry: String, repository: String, tag: String) throws(CacheError) -> String {
        for part in [registry] + repository.split(separator: "/").map(String.init) + [tag] {
            guard !part.isEmpty, part != ".", part != "..", !part.contains("/"), !part.contains("\0") else {
                throw .badReferenceName(reference: "\(registry)/\(repository):\(tag)", part: part)
            }
        }
        return "\(root)/refs/\(registry)/\(repository)/\(tag)"
    }

    /// The manifest digest `tag` named when it was last resolved online.
    public func reference(registry: String, repository: String, tag: String) -> Digest? {
        guard let path = try? refPath(registry: registry, repository: repository, tag: tag),
              let bytes = try? FileIO.readFile(path, limit: 256) else { return nil }
        // A digest has no spaces: the first word is the whole of it, whatever whitespace surrounds it.
        let text = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isWhitespace).first.map(String.init) ?? ""
        return try? Digest(parsing: text)
    }

    public func setReference(registry: String, repository: String, tag: String, to digest: Digest) throws(CacheError) {
        let path = try refPath(registry: registry, repository: repository, tag: tag)
        try systemIO { () throws(IOError) in
            try FileIO.makeDirectories(FileIO.parent(of: path))
            try FileIO.writeAtomically(Array((digest.description + "\n").utf8), to: path, durable: false)
        }
    }
}
