import FuseFS
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A fake backend: a sparse 64 MiB disk with data islands, a small config file, a file
/// whose reads always fail, and a small writable file.
final class InMemoryBackend: FileSystemBackend {
    static let diskSize: UInt64 = 64 << 20
    /// Data islands of disk.img; everything else reads as zeros and is a hole.
    static let islands: [Range<UInt64>] = [
        0..<4096,
        (1 << 20)..<((1 << 20) + 300_000),
        (10 << 20)..<(12 << 20),
        ((63 << 20) + 100)..<(64 << 20),
    ]
    static let config = Array("{\"cpus\": 4, \"memory\": \"8G\", \"disk\": \"disk.img\"}\n".utf8)
    static let scratchSize = 8192

    enum File: Int, CaseIterable {
        case disk = 0, config, broken, scratch
    }

    let readCalls = Atomic<Int>(0)
    /// What `readahead(forOpening:)` answers for disk.img (nil: the mount's).
    let diskReadahead = Mutex<Int?>(nil)
    let scratch = Mutex([UInt8](repeating: 0x5a, count: InMemoryBackend.scratchSize))

    func entries() -> [FileEntry] {
        [
            FileEntry(name: "disk.img", size: Self.diskSize, mode: 0o444, modificationTime: 1_700_000_000),
            FileEntry(name: "config.json", size: UInt64(Self.config.count), mode: 0o444, modificationTime: 1_700_000_001),
            FileEntry(name: "broken.bin", size: 1 << 20, mode: 0o444),
            FileEntry(name: "scratch.bin", size: UInt64(Self.scratchSize), writable: true, mode: 0o644),
        ]
    }

    /// disk.img's contents, built once: islands of never-zero bytes, zeros elsewhere.
    static let disk: [UInt8] = {
        var bytes = [UInt8](repeating: 0, count: Int(diskSize))
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for island in islands {
            for offset in Int(island.lowerBound)..<Int(island.upperBound) {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                bytes[offset] = UInt8(truncatingIfNeeded: state >> 56) | 1
            }
        }
        return bytes
    }()

    static func expected(_ file: File, offset: UInt64, count: Int) -> [UInt8] {
        switch file {
        case .disk:
            let end = min(offset + UInt64(count), diskSize)
            return offset >= end ? [] : Array(disk[Int(offset)..<Int(end)])
        case .config:
            let start = Int(min(offset, UInt64(config.count)))
            return Array(config[start..<min(config.count, start + count)])
        case .broken, .scratch:
            return []
        }
    }

    func read(file: Int, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FileSystemError) -> Int {
        readCalls.add(1, ordering: .relaxed)
        switch File(rawValue: file) {
        case .disk:
            let end = min(offset + UInt64(buffer.count), Self.diskSize)
            guard offset < end else { return 0 }
            Self.disk.withUnsafeBytes { disk in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: disk[Int(offset)..<Int(end)]))
            }
            return Int(end - offset)
        case .config:
            let bytes = Self.expected(.config, offset: offset, count: buffer.count)
            buffer.copyBytes(from: bytes)
            return bytes.count
        case .broken:
            throw .io("frame at \(offset) failed verification (test)")
        case .scratch:
            return scratch.withLock { data in
                let start = Int(min(offset, UInt64(data.count)))
                let count = min(buffer.count, data.count - start)
                buffer.copyBytes(from: data[start..<(start + count)])
                return count
            }
        case nil:
            throw .notFound
        }
    }

    func readahead(forOpening file: Int) -> Int? {
        file == File.disk.rawValue ? diskReadahead.withLock { $0 } : nil
    }

    func seek(file: Int, offset: UInt64, whence: SeekWhence) throws(FileSystemError) -> UInt64? {
        let size = entries()[file].size
        let islands: [Range<UInt64>] = file == File.disk.rawValue ? Self.islands : [0..<size]
        guard offset < size else { return nil }
        switch whence {
        case .data:
            if islands.contains(where: { $0.contains(offset) }) { return offset }
            return islands.first(where: { $0.lowerBound > offset })?.lowerBound
        case .hole:
            return islands.first(where: { $0.contains(offset) })?.upperBound ?? offset
        }
    }

    func write(file: Int, offset: UInt64, data: UnsafeRawBufferPointer) throws(FileSystemError) -> Int {
        guard file == File.scratch.rawValue else { throw .readOnly }
        return try scratch.withLock { bytes throws(FileSystemError) -> Int in
            guard offset + UInt64(data.count) <= UInt64(bytes.count) else {
                throw .posix(EFBIG, "scratch.bin does not grow")
            }
            bytes.replaceSubrange(Int(offset)..<(Int(offset) + data.count), with: data)
            return data.count
        }
    }

    func flush(file: Int) throws(FileSystemError) {}
}
