#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFuse3

/// Where FuseFS splices zeros from: an in-memory file (memfd) of `size` bytes that is never
/// written, so all of it is a hole. Splicing a hole of a memory file puts references to the
/// kernel's shared zero page into the pipe (Linux 6.5 and later; older kernels copy zeros, still
/// correct), so a reply of zeros costs neither a fill nor a copy through user space: the kernel
/// copies the zero page straight into the reader's page cache.
final class ZeroPages: Sendable {
    let descriptor: Int32
    let size: Int

    /// nil when the kernel has no memfd or it cannot be sized; replies of zeros are then filled
    /// in a buffer.
    init?(size: Int) {
        let fd = imgfs_memfd_create("imgfs-zeros", 1 /* MFD_CLOEXEC */)
        guard fd >= 0 else { return nil }
        guard ftruncate(fd, off_t(size)) == 0 else {
            close(fd)
            return nil
        }
        descriptor = fd
        self.size = size
    }

    deinit { close(descriptor) }
}
