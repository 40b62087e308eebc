import ImgfsFormat
import Glibc

/// How `imgfs push` cuts, compresses and uploads a disk.
public struct PushOptions: Sendable {
    public var frameSize: Int = DiskGeometry.defaultFrameSize
    /// Uncompressed disk bytes per chunk layer; a multiple of `frameSize`.
    public var chunkSize: UInt64 = 512 * 1024 * 1024
    /// True when the user chose neither size: the push may then raise them so that the image's
    /// index and manifest stay within what readers accept (`ImagePlan`); otherwise it refuses.
    public var frameSizeIsAutomatic = true
    public var chunkSizeIsAutomatic = true
    /// libdeflate level, 1–12 (6 is gzip's default trade-off; see docs/CODEC-NOTES.md).
    public var compressionLevel: Int = 6
    public var singleLayer: Bool = false
    /// Compression threads; defaults to every core.
    public var compressionThreads: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    /// Blobs uploaded at once.
    public var uploadThreads: Int = 3
    /// Directory for chunk spool files (removed as soon as each chunk is uploaded).
    public var spoolDirectory: String = PushOptions.defaultSpoolDirectory

    public init() {}

    public static var defaultSpoolDirectory: String {
        if let dir = getenv("TMPDIR") { return String(cString: dir) }
        return "/var/tmp"
    }

    public func validated() throws(PushError) -> PushOptions {
        do { _ = try DiskGeometry(diskSize: 0, frameSize: frameSize) } catch { throw .format(error) }
        guard chunkSize >= UInt64(frameSize), chunkSize % UInt64(frameSize) == 0 else {
            throw .invalidOption("chunk size \(chunkSize) must be a positive multiple of the frame size \(frameSize)")
        }
        guard (1...12).contains(compressionLevel) else {
            throw .invalidOption("compression level \(compressionLevel) is out of range 1–12")
        }
        guard compressionThreads >= 1, uploadThreads >= 1 else {
            throw .invalidOption("thread counts must be at least 1")
        }
        return self
    }
}
