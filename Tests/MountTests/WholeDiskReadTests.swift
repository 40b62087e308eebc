import FuseFS
import Glibc
@testable import Mount
import Testing

/// The whole-disk read path (`dd`, `cat`, backups): holes answered from the index as zeros, cached
/// data as runs of the cache file between them, and readahead that looks past runs of holes.
@Suite struct WholeDiskReadTests {
    let frameSize = TestImage.frameSize

    /// What a reader would get for `pieces`: the cache file's bytes for file runs, zeros for the rest.
    func materialise(_ pieces: [LocalPiece]) -> [UInt8] {
        var out: [UInt8] = []
        for piece in pieces {
            switch piece {
            case .zeros(let count):
                out += [UInt8](repeating: 0, count: count)
            case .file(let extent, let count):
                var bytes = [UInt8](repeating: 0xAA, count: count)
                let n = bytes.withUnsafeMutableBytes { pread(extent.descriptor, $0.baseAddress, count, off_t(extent.offset)) }
                #expect(n == count)
                out += bytes
            }
        }
        return out
    }

    @Test func anAllHoleRangeIsZerosFromTheIndexAloneEvenWithNothingCached() throws {
        let image = try TestImage.make(frames: 8, holes: [2, 3, 4])
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }

        let pieces = session.disk.localPieces(at: UInt64(2 * frameSize) + 100, count: 3 * frameSize - 100)
        #expect(pieces == [.zeros(count: 3 * frameSize - 100)])
        // A range that touches an uncached data frame goes through `read`, which fetches it.
        #expect(session.disk.localPieces(at: UInt64(2 * frameSize), count: 4 * frameSize) == nil)
        #expect(registry.rangeCalls.isEmpty)
    }

    @Test func aCachedRangeAcrossHolesIsFileRunsBetweenZeros() throws {
        let image = try TestImage.make(frames: 10, holes: [0, 3, 4, 7, 9])
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }
        #expect(try session.disk.bytes(at: 0, count: image.disk.count) == image.disk)

        // hole | data data | hole hole | data data | hole, starting and ending inside frames.
        let offset = UInt64(frameSize / 2)
        let count = 8 * frameSize - frameSize / 4 - Int(offset)
        let pieces = try #require(session.disk.localPieces(at: offset, count: count))
        #expect(pieces.count == 5)
        #expect(pieces.map(\.count).reduce(0, +) == count)
        guard case .zeros = pieces[0], case .file = pieces[1], case .zeros = pieces[2], case .file = pieces[3], case .zeros = pieces[4] else {
            Issue.record("unexpected pieces \(pieces)")
            return
        }
        #expect(materialise(pieces) == Array(image.disk[Int(offset)..<Int(offset) + count]))

        // One frame of data: a single run of the cache file.
        #expect(session.disk.localPieces(at: UInt64(frameSize), count: frameSize) ==
            [.file(LocalExtent(descriptor: pieces[1].descriptor!, offset: UInt64(frameSize)), count: frameSize)])
    }

    @Test func readaheadLooksPastALongRunOfHoles() throws {
        // Data, 40 frames of holes (more than the readahead window), data.
        let holes = Set(6..<46)
        let image = try TestImage.make(frames: 60, holes: holes, chunkFrames: 60)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        var options = DiskOptions()
        options.readaheadThreads = 1
        options.readaheadMaxFrames = 8
        // The test's 64 KiB frames stand for 1 MiB ones: a readahead unit each.
        options.readaheadUnitBytes = frameSize
        let session = try openSession(registry, root: directory.path, options: options)
        defer { session.stop() }
        session.start()
        // Six frames: readahead opens once two frames read in a row are `settle` frames behind.
        for frame in 0..<6 {
            _ = try session.disk.bytes(at: UInt64(frame * frameSize), count: frameSize)
        }
        // The frames after the holes are fetched before the reader gets there.
        waitUntil { session.disk.cache.contains(46) }
        #expect(session.disk.cache.contains(46))
        #expect(session.disk.statistics.snapshot().readaheadFrames > 0)
        #expect(session.disk.dataRank(of: 0) == 0)
        #expect(session.disk.dataRank(of: 6) == 6)
        #expect(session.disk.dataRank(of: 45) == 6)
        #expect(session.disk.dataRank(of: 46) == 6)
        #expect(session.disk.dataRank(of: 47) == 7)
        #expect(session.disk.dataRank(of: 60) == 20)
    }
}

extension LocalPiece {
    var descriptor: Int32? {
        if case .file(let extent, _) = self { extent.descriptor } else { nil }
    }
}
