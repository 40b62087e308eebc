/// Where one entry's files live under the cache root:
///
///     <root>/disks/<key-hex>/data            sparse, logical size = disk size, frame i at i * frameSize
///     <root>/disks/<key-hex>/bitmap          header + 1 bit per frame (see `BitmapFormat`)
///     <root>/disks/<key-hex>/frames.digests  32 bytes per frame, written once at creation
///     <root>/disks/<key-hex>/meta.json       disk size, frame size, image reference, last use
///     <root>/disks/<key-hex>/lock            flock: shared while open (mounted), exclusive to evict or reset
///     <root>/disks/<key-hex>/claims          empty; byte i OFD-locked by the process fetching frame i (`FrameClaims`)
struct CacheLayout: Sendable {
    let directory: String

    init(root: String, keyHex: String) {
        directory = Self.disksDirectory(root: root) + "/" + keyHex
    }

    init(root: String, key: CacheKey) { self.init(root: root, keyHex: key.digest.hex) }

    static func disksDirectory(root: String) -> String { root + "/disks" }

    var dataPath: String { directory + "/data" }
    var bitmapPath: String { directory + "/bitmap" }
    var digestsPath: String { directory + "/frames.digests" }
    var metaPath: String { directory + "/meta.json" }
    var lockPath: String { directory + "/lock" }
    var claimsPath: String { directory + "/claims" }

    /// True for a 64-digit lowercase hex name: entries, not stray files or temporaries.
    static func isEntryName(_ name: String) -> Bool {
        name.utf8.count == 64 && name.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
