import FuseFS
import Glibc
import ImgfsFormat
import Logging

/// The directory a mount shows: `disk.img` (the lazy disk, read-only, immutable; `disk.qcow2`
/// when the image's disk is a qcow2 file, as a KubeVirt containerDisk's may be), and
/// `nvram.bin` and `config.json` when the image has them. FuseFS owns inodes and attributes;
/// this only moves bytes and answers `SEEK_DATA`/`SEEK_HOLE`. A disk's `MountError` goes to
/// FuseFS whole (`FileSystemError.failed`), which logs it once and picks the errno.
public final class ImageFileSystem: FileSystemBackend {
    enum Content: Sendable {
        case disk(any VirtualDisk)
        case bytes([UInt8])
    }

    let files: [(entry: FileEntry, content: Content)]
    let logger: Logger

    public convenience init(session: FrameSession, logger: Logger) {
        self.init(disk: session.disk, nvram: session.resolved.nvram, vmConfig: session.resolved.vmConfig, logger: logger)
    }

    /// `modificationTime` defaults to now; a server that takes over a mount passes the mount's
    /// time, so the files look the same to the kernel as before.
    public init(disk: any VirtualDisk, nvram: [UInt8]?, vmConfig: [UInt8]?, diskName: String = "disk.img", modificationTime: Int64? = nil,
                logger: Logger) {
        let time = modificationTime ?? Int64(time(nil))
        // A writable disk changes under the kernel, so it must not be cached as immutable.
        var files: [(FileEntry, Content)] = [
            (FileEntry(name: diskName, size: disk.size, writable: disk.isWritable, mode: disk.isWritable ? 0o644 : 0o444,
                       modificationTime: time, immutable: !disk.isWritable), .disk(disk)),
        ]
        if let nvram {
            files.append((FileEntry(name: "nvram.bin", size: UInt64(nvram.count), writable: false, mode: 0o444,
                                    modificationTime: time, immutable: true), .bytes(nvram)))
        }
        if let config = vmConfig {
            files.append((FileEntry(name: "config.json", size: UInt64(config.count), writable: false, mode: 0o444,
                                    modificationTime: time, immutable: true), .bytes(config)))
        }
        self.files = files
        self.logger = logger
    }

    public func entries() -> [FileEntry] { files.map(\.entry) }

    public func read(file: Int, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FileSystemError) -> Int {
        guard files.indices.contains(file) else { throw .notFound }
        switch files[file].content {
        case .disk(let disk):
            do { return try disk.read(at: offset, into: buffer) } catch {
                throw .failed(error)
            }
        case .bytes(let bytes):
            guard offset < UInt64(bytes.count) else { return 0 }
            let start = Int(offset)
            let count = min(buffer.count, bytes.count - start)
            bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<start + count]))
            }
            return count
        }
    }

    public func localExtent(file: Int, offset: UInt64, count: Int) -> LocalExtent? {
        guard files.indices.contains(file), case .disk(let disk) = files[file].content else { return nil }
        return disk.localExtent(at: offset, count: count)
    }

    public func readahead(forOpening file: Int) -> Int? {
        guard files.indices.contains(file), case .disk(let disk) = files[file].content else { return nil }
        return disk.kernelReadahead
    }

    public func localPieces(file: Int, offset: UInt64, count: Int) -> [LocalPiece]? {
        guard files.indices.contains(file), case .disk(let disk) = files[file].content else { return nil }
        return disk.localPieces(at: offset, count: count)
    }

    public func seek(file: Int, offset: UInt64, whence: SeekWhence) throws(FileSystemError) -> UInt64? {
        guard files.indices.contains(file) else { throw .notFound }
        let size = files[file].entry.size
        guard offset < size else { return nil }
        guard case .disk(let disk) = files[file].content else {
            return whence == .data ? offset : size
        }
        return disk.seek(from: offset, whence: whence)
    }

    public func write(file: Int, offset: UInt64, data: UnsafeRawBufferPointer) throws(FileSystemError) -> Int {
        guard files.indices.contains(file) else { throw .notFound }
        guard case .disk(let disk) = files[file].content, disk.isWritable else { throw .readOnly }
        do { return try disk.write(at: offset, data: data) } catch {
            throw .failed(error)
        }
    }

    public func flush(file: Int) throws(FileSystemError) {
        guard files.indices.contains(file), case .disk(let disk) = files[file].content, disk.isWritable else { return }
        do { try disk.flush() } catch {
            throw .failed(error)
        }
    }
}
