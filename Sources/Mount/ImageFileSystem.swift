import FuseFS
import Glibc
import ImageFormat
import Logging

/// The directory a mount shows: `disk.img` (the lazy disk, read-only, immutable), and
/// `nvram.bin` and `config.json` when the image has them. FuseFS owns inodes and attributes;
/// this only moves bytes and answers `SEEK_DATA`/`SEEK_HOLE`.
public final class ImageFileSystem: FileSystemBackend {
    enum Content: Sendable {
        case disk(LazyDisk)
        case bytes([UInt8])
    }

    let files: [(entry: FileEntry, content: Content)]
    let logger: Logger

    public init(session: MountSession, logger: Logger) {
        let resolved = session.resolved
        let time = Int64(time(nil))
        var files: [(FileEntry, Content)] = [
            (FileEntry(name: "disk.img", size: resolved.index.geometry.diskSize, writable: false, mode: 0o444,
                       modificationTime: time, immutable: true), .disk(session.disk)),
        ]
        if let nvram = resolved.nvram {
            files.append((FileEntry(name: "nvram.bin", size: UInt64(nvram.count), writable: false, mode: 0o444,
                                    modificationTime: time, immutable: true), .bytes(nvram)))
        }
        if let config = resolved.vmConfig {
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
                // LazyDisk has logged the details (blob, frame, digests); the message names the cause.
                throw .io(error.description)
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

    /// Holes at frame granularity, from the index's hole flags: what `cp --sparse=always` and
    /// `qemu-img map` use to skip zeros without reading them.
    public func seek(file: Int, offset: UInt64, whence: SeekWhence) throws(FileSystemError) -> UInt64? {
        guard files.indices.contains(file) else { throw .notFound }
        let size = files[file].entry.size
        guard offset < size else { return nil }
        guard case .disk(let disk) = files[file].content else {
            return whence == .data ? offset : size
        }
        let frames = disk.index.frames
        let geometry = disk.index.geometry
        var frame = geometry.frame(containing: offset)
        while frame < frames.count {
            let isHole = frames[frame].isHole
            if (whence == .data && !isHole) || (whence == .hole && isHole) {
                return max(offset, geometry.offset(ofFrame: frame))
            }
            frame += 1
        }
        // No more data: ENXIO. No more holes: the end of the file is one.
        return whence == .data ? nil : size
    }

    public func write(file: Int, offset: UInt64, data: UnsafeRawBufferPointer) throws(FileSystemError) -> Int {
        throw .readOnly
    }
}
