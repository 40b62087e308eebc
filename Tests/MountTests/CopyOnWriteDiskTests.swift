import Foundation
import FuseFS
import Logging
import Mount
import Synchronization
import Testing

/// A read-only disk in memory, counting reads, standing in for the lazy image.
final class MemoryDisk: VirtualDisk, @unchecked Sendable {
    let bytes: [UInt8]
    let holes: [Range<UInt64>]
    private let lock = NSLock()
    private var _reads = 0
    var size: UInt64 { UInt64(bytes.count) }
    var reads: Int { lock.withLock { _reads } }

    init(size: Int, seed: UInt8 = 7, holes: [Range<UInt64>] = []) {
        var bytes = [UInt8](repeating: 0, count: size)
        var state = UInt32(seed)
        for i in 0..<size {
            state = state &* 1_103_515_245 &+ 12345
            bytes[i] = UInt8(truncatingIfNeeded: state >> 16)
        }
        for hole in holes { for i in hole { bytes[Int(i)] = 0 } }
        self.bytes = bytes
        self.holes = holes
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(MountError) -> Int {
        lock.withLock { _reads += 1 }
        guard offset < size else { return 0 }
        let count = min(buffer.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + count])) }
        return count
    }

    func seek(from offset: UInt64, whence: SeekWhence) -> UInt64? {
        guard offset < size else { return nil }
        var position = offset
        while position < size {
            let inHole = holes.first { $0.contains(position) }
            if whence == .hole, inHole != nil { return position }
            if whence == .data, inHole == nil { return position }
            if let hole = inHole { position = hole.upperBound } else {
                position = holes.filter { $0.lowerBound > position }.map(\.lowerBound).min() ?? size
            }
        }
        return whence == .data ? nil : size
    }
}

func temporaryDirectory(_ name: String) throws -> String {
    let path = NSTemporaryDirectory() + "imgfs-\(name)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

extension VirtualDisk {
    func readAll(_ offset: UInt64, _ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: count)
        let n = try out.withUnsafeMutableBytes { try read(at: offset, into: $0) }
        return Array(out[0..<n])
    }

    @discardableResult
    func writeBytes(_ bytes: [UInt8], at offset: UInt64) throws -> Int {
        try bytes.withUnsafeBytes { try write(at: offset, data: $0) }
    }
}

@Suite struct CopyOnWriteDiskTests {
    let logger = Logger(label: "test")

    @Test func partialBlockWritesAtOddOffsetsMergeWithTheBase() throws {
        let base = MemoryDisk(size: 64 * 1024 + 1000)
        let dir = try temporaryDirectory("cow")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
        var expected = base.bytes
        let writes: [(UInt64, Int)] = [(5, 3), (4095, 2), (10_000, 9000), (64 * 1024 + 999, 1), (8192, 4096), (40_000, 1)]
        for (i, (offset, count)) in writes.enumerated() {
            let bytes = [UInt8](repeating: UInt8(0xA0 + i), count: count)
            #expect(try disk.writeBytes(bytes, at: offset) == count)
            expected.replaceSubrange(Int(offset)..<Int(offset) + count, with: bytes)
        }
        #expect(try disk.readAll(0, expected.count + 10) == expected)
        // Reads spanning written and unwritten blocks, at odd offsets.
        for (offset, count) in [(1, 9000), (4094, 5), (30_000, 20_000), (64 * 1024, 2000)] {
            #expect(try disk.readAll(UInt64(offset), count) == Array(expected[offset..<min(expected.count, offset + count)]))
        }
        // The base is never written.
        #expect(base.bytes == MemoryDisk(size: 64 * 1024 + 1000).bytes)
        #expect(throws: MountError.self) { try disk.writeBytes([1, 2], at: disk.size - 1) }
    }

    @Test func flushedWritesSurviveReopenAndUnflushedBitsNeverAppear() throws {
        let base = MemoryDisk(size: 256 * 1024)
        let dir = try temporaryDirectory("cow-reopen")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let disk = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
            try disk.writeBytes(Array("hello".utf8), at: 100_001)
            try disk.flush()
            // Written but not flushed: its bit is not on disk, so a reopen serves the base there.
            try disk.writeBytes([UInt8](repeating: 9, count: 4096), at: 200 * 1024)
            #expect(disk.writtenBlockCount == 2)
        }
        let reopened = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
        #expect(reopened.writtenBlockCount == 1)
        #expect(try reopened.readAll(100_001, 5) == Array("hello".utf8))
        #expect(try reopened.readAll(100_000, 1) == [base.bytes[100_000]])
        #expect(try reopened.readAll(200 * 1024, 4096) == Array(base.bytes[200 * 1024..<204 * 1024]))
        let written: UInt64 = 100_001 / 4096 * 4096
        #expect(reopened.writtenRanges() == [written..<written + 4096])
        // A layer of another disk size is refused with a clear error.
        #expect(throws: MountError.self) { _ = try CopyOnWriteDisk(base: MemoryDisk(size: 4096), directory: dir, logger: logger) }
    }

    @Test func seekReportsDataWhereEitherLayerHasIt() throws {
        let base = MemoryDisk(size: 1 << 20, holes: [65536..<(1 << 20)])
        let dir = try temporaryDirectory("cow-seek")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
        #expect(disk.seek(from: 70_000, whence: .data) == nil)
        try disk.writeBytes([1], at: 500_000)
        let block = UInt64(500_000 / 4096 * 4096)
        #expect(disk.seek(from: 70_000, whence: .data) == block)
        #expect(disk.seek(from: 0, whence: .hole) == 65536)
        #expect(disk.seek(from: block, whence: .hole) == block + 4096)
        try disk.writeBytes([1], at: 65536)
        #expect(disk.seek(from: 0, whence: .hole) == 65536 + 4096)
    }

    /// Two layers over one directory would each flush their own bitmap over the other's.
    @Test func aDirectoryIsOpenedByOneDiskAtATime() throws {
        let base = MemoryDisk(size: 1 << 20)
        let dir = try temporaryDirectory("cow-lock")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let first = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
            #expect {
                _ = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
            } throws: { error in
                "\(error)".contains("\(dir) is in use by another writable mount (imgfs pid \(getpid()))")
            }
            withExtendedLifetime(first) {}
        }
        // Closed, the directory is free again.
        _ = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
    }

    @Test func concurrentPartialWritesToOneBlockAreAllKept() throws {
        let base = MemoryDisk(size: 1 << 20)
        let dir = try temporaryDirectory("cow-concurrent")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var expected = base.bytes
        for block in 0..<64 { for writer in 0..<16 {
            let at = block * 4096 + writer * 256 + 3
            expected.replaceSubrange(at..<at + 16, with: [UInt8](repeating: UInt8(writer + 1), count: 16))
        } }
        do {
            let disk = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
            // 16 writers, each owning 16 bytes of each of the first 64 blocks: read-modify-write of a
            // block must not lose another writer's bytes.
            DispatchQueue.concurrentPerform(iterations: 16) { writer in
                for block in 0..<64 {
                    _ = try? disk.writeBytes([UInt8](repeating: UInt8(writer + 1), count: 16), at: UInt64(block * 4096 + writer * 256 + 3))
                }
            }
            try disk.flush()
            #expect(try disk.readAll(0, 1 << 20) == expected)
            withExtendedLifetime(disk) {}
        }
        let reopened = try CopyOnWriteDisk(base: base, directory: dir, logger: logger)
        #expect(try reopened.readAll(0, 1 << 20) == expected)
    }
}
