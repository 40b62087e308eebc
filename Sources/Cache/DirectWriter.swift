import Glibc

/// Writes whole frames into the data file with `O_DIRECT`, bypassing the page cache.
///
/// Why: a cold read is CPU-bound on small machines, and a buffered `pwrite` costs a kernel copy
/// of every byte into the page cache plus the writeback work of the next `fdatasync`, on the same
/// cores that decompress and verify. With `O_DIRECT` the device reads the bytes itself (DMA);
/// measured on a cold sequential read of the 8 GiB corpus, the daemon used 40% less CPU
/// (BENCHMARKS.md). The reader being answered gets its frame from memory; later reads of the frame
/// go through the data file's page cache as before, filled from the device on first use.
///
/// Only frames whose offset and length are multiples of `alignment` go this way; others (a short
/// last frame) and file systems without `O_DIRECT` (`open` fails with `EINVAL`) use the buffered
/// descriptor.
struct DirectWriter: Sendable {
    /// Covers the logical block size of any device in use; the frame size is a multiple of it.
    static let alignment = 4096

    // Linux's O_DIRECT, which Swift's Glibc module hides (it needs _GNU_SOURCE); per architecture.
    #if arch(x86_64) || arch(i386)
    static let openDirect: Int32 = 0o40000
    #else
    static let openDirect: Int32 = 0o200000
    #endif

    let descriptor: FileDescriptor

    /// A direct descriptor for `path`, or nil where the file system refuses `O_DIRECT`.
    static func open(_ path: String) -> DirectWriter? {
        guard let fd = try? FileDescriptor.open(path, O_WRONLY | openDirect) else { return nil }
        return DirectWriter(descriptor: fd)
    }

    func close() { descriptor.close() }

    /// Writes `bytes` at `offset` if both are aligned, through an aligned bounce buffer; returns
    /// false, having written nothing, if they are not.
    func write(_ bytes: [UInt8], at offset: UInt64) throws(CacheError) -> Bool {
        guard !bytes.isEmpty, bytes.count % Self.alignment == 0, offset % UInt64(Self.alignment) == 0 else { return false }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: Self.alignment)
        defer { buffer.deallocate() }
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        try descriptor.write(UnsafeRawBufferPointer(buffer), at: offset)
        return true
    }
}
