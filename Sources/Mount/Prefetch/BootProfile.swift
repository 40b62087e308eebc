/// The boot profile layer (docs/FORMAT.md, "Boot profiles"): frame numbers in first-read order.
public enum BootProfile {
    static let magic = Array("IMGFSPRF".utf8)

    /// The frames to prefetch first, without duplicates or numbers past `frameCount`;
    /// nil if the blob is not a version-1 profile.
    public static func decode(_ bytes: [UInt8], frameCount: Int) -> [Int]? {
        guard bytes.count >= 16, Array(bytes[0..<8]) == magic, u32(bytes, 8) == 1 else { return nil }
        let count = Int(u32(bytes, 12))
        guard bytes.count == 16 + 4 * count else { return nil }
        var seen = Set<Int>()
        var frames: [Int] = []
        for i in 0..<count {
            let frame = Int(u32(bytes, 16 + 4 * i))
            if frame < frameCount, seen.insert(frame).inserted { frames.append(frame) }
        }
        return frames
    }

    private static func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }
}
