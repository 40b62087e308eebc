import Cache
import Glibc
import ImgfsFormat
import Testing
import Verity

/// A 16 TiB disk is within the format's limit but not within ext4's file size limit: the
/// cache must say so, not fail with a bare "ftruncate: File too large".
@Suite struct FileSystemLimitTests {
    @Test func diskLargerThanTheFileSystemAllowsIsNamed() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        // Does this file system refuse such a file at all? ext4 (with 4 KiB blocks) does; XFS,
        // btrfs and tmpfs hold it, which is the fix the message suggests.
        let probe = directory.path + "/probe"
        let fd = open(probe, O_RDWR | O_CREAT, 0o600)
        #expect(fd >= 0)
        let refused = ftruncate(fd, off_t(FormatLimits.maximumDiskSize)) != 0 && errno == EFBIG
        close(fd)
        unlink(probe)
        guard refused else {
            print("note: \(directory.path) holds a 16 TiB file; the EFBIG path is not reachable on this file system")
            return
        }
        let geometry = try DiskGeometry(diskSize: FormatLimits.maximumDiskSize, frameSize: DiskGeometry.maximumFrameSize)
        let digests = [Digest](repeating: SHA256Hasher.digest([UInt8](repeating: 0, count: 1)), count: geometry.frameCount)
        let key = CacheKey(digest: SHA256Hasher.digest([UInt8](repeating: 7, count: 8)))
        do {
            let cache = try FrameCache.open(root: directory.path, key: key, geometry: geometry, frameDigests: digests,
                                            imageReference: "test/16tib", logger: quietLogger)
            cache.close()
            Issue.record("a 16 TiB cache file was created on ext4")
        } catch {
            guard case .fileTooLargeForFileSystem(_, let size) = error else {
                Issue.record("unexpected error: \(error)")
                return
            }
            #expect(size == FormatLimits.maximumDiskSize)
            #expect(error.description.contains("--cache-dir"))
        }
    }
}
