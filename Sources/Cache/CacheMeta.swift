import Glibc
import SystemIO
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import FoundationEssentials
#endif

/// `meta.json`: what `imgfs status` shows and what eviction sorts by. Advisory only:
/// nothing in it is trusted for correctness (the bitmap header is), so it is rewritten
/// atomically but not fsynced.
struct CacheMeta: Codable, Sendable {
    var key: String
    var diskSize: UInt64
    var frameSize: Int
    var imageReference: String
    /// Seconds since the epoch of the last open or close.
    var lastUsed: Double

    static func load(_ path: String) -> CacheMeta? {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return nil }
        defer { fd.close() }
        guard let size = try? fd.status().st_size, size > 0, size < 1 << 20,
              let bytes = try? fd.read(count: Int(size), at: 0) else { return nil }
        return try? JSONDecoder().decode(CacheMeta.self, from: Data(bytes))
    }

    func save(_ path: String) throws(CacheError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(self) else { return }
        try systemIO { () throws(IOError) in try FileIO.writeAtomically(Array(data), to: path, durable: false) }
    }
}
