import SystemIO

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
