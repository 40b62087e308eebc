import Foundation
import Testing

/// Issue 11 ("Trust nothing"), against the real registry, real FUSE mounts and the real `imgfs`
/// binary. Every test unmounts what it mounted, even when it fails.
@Suite(.serialized, .enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
struct TrustIntegrationTests {
    /// A disk of random bytes (no blob shared with another test), 1 MiB frames, a hole at the end.
    static func randomImage(_ scratch: String, name: String) throws -> PushedImage {
        let source = scratch + "/disk.img"
        try shell("head -c 12582912 /dev/urandom > \(source) && truncate -s 16M \(source)")
        return try PushedImage.push(source, repository: TestEnvironment.repository(name), extra: ["--chunk-size", "4M"])
    }

    // MARK: - Verified cache reads

    @Test func aFlippedByteInTheCacheIsNeverServedAndIsRepairedByARefetch() throws {
        let scratch = try TestEnvironment.scratchDirectory("trust-cache")
        defer { TestEnvironment.remove(scratch) }
        let image = try Self.randomImage(scratch, name: "trust-cache")
        let cache = scratch + "/cache"
        do {
            let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
            defer { mount.unmount() }
            try shell("cat \(mount.disk) > /dev/null", timeout: 600)
        }
        let data = try shell("ls \(cache)/disks/*/data").trimmingCharacters(in: .whitespacesAndNewlines)
        // One byte in the middle of frame 5 (a data frame), flipped on disk behind imgfs's back.
        let frame = 5
        let offset = frame * image.frameSize + 4321
        try shell("""
            python3 - <<'PY'
            with open('\(data)', 'r+b') as f:
                f.seek(\(offset)); b = f.read(1); f.seek(\(offset)); f.write(bytes([b[0] ^ 0x20]))
            PY
            """)
        #expect(try shell("cmp \(image.source) \(data) || true").contains("differ"), "the cache file really is damaged")

        let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        // Sequential (the kernel's large reads and splice) and then every frame again.
        try shell("cmp \(image.source) \(mount.disk)", timeout: 600)
        try shell("cmp \(image.source) \(mount.disk)", timeout: 600)
        let status = try mount.settledStatus()
        #expect(status.statistics.framesFetched == 1, "only the damaged frame was fetched again")
        #expect(status.statistics.cacheVerificationFailures == 1)
        #expect(status.statistics.readErrors == 0)
        // The cache is repaired, not only the reply.
        try shell("cmp \(image.source) \(data)")
        let log = try String(contentsOfFile: mount.logFile, encoding: .utf8)
        #expect(log.contains("cached frame does not match its digest; dropped it"), "the drop is logged")
    }
}
