import Foundation
import ImageFormat
@testable import Mount
import Testing

@Suite struct BootProfileTests {
    @Test func encodingRoundTripsAndDecodingDropsDuplicatesAndFramesPastTheEnd() throws {
        let bytes = BootProfile.encode([4, 9, 4, 1, 99])
        #expect(bytes.count == 16 + 20)
        #expect(BootProfile.decode(bytes, frameCount: 10) == [4, 9, 1])
        #expect(BootProfile.decode(Array(bytes.dropLast()), frameCount: 10) == nil)
    }

    @Test func profileFramesAreFetchedFirstInProfileOrderAheadOfTheSequentialPass() throws {
        let image = try TestImage.make(frames: 32, chunkFrames: 8)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path, prefetch: false)
        defer { session.stop() }
        session.start()
        let profile = [20, 21, 5, 30, 6]
        let prefetcher = Prefetcher(disk: session.disk, profile: profile, rate: nil, logger: testLogger)
        prefetcher.start()
        defer { prefetcher.stop() }
        for _ in 0..<250 where !session.cacheComplete { usleep(20_000) }
        #expect(session.cacheComplete)

        // Which frames each range request carried, in request order.
        func frames(of call: FakeRegistry.RangeCall) -> [Int] {
            image.index.frames.indices.filter { frame in
                guard let location = image.index.frames[frame].location,
                      image.index.layers[location.layer].digest == call.digest else { return false }
                return call.range.contains(location.compressedRange.lowerBound) && call.range.contains(location.compressedRange.upperBound - 1)
            }
        }
        let calls = registry.rangeCalls.map(frames)
        #expect(Array(calls.prefix(4)) == [[20, 21], [5], [30], [6]])
        // Then the sequential pass, from the start, skipping what the profile brought in.
        #expect(calls.dropFirst(4).first?.first == 0)
    }

    @Test func theRecorderNotesFirstReadsInOrderAndWritesAProfile() throws {
        let base = MemoryDisk(size: 8 * 65536)
        let directory = TemporaryDirectory()
        let path = directory.path + "/profile"
        var holes = [Bool](repeating: false, count: 8)
        holes[2] = true
        let recorder = ProfileRecorder(base: base, path: path, frameSize: 65536, holes: holes, logger: testLogger)
        recorder.start()
        for offset in [5 * 65536 + 10, 65536, 2 * 65536, 5 * 65536, 65536 - 1] {
            _ = try recorder.readAll(UInt64(offset), 2)
        }
        recorder.stop()
        // The read at 65535 spans frames 0 and 1; frame 2 is a hole and is not recorded.
        #expect(recorder.frames == [5, 1, 0])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(BootProfile.decode(bytes, frameCount: 8) == [5, 1, 0])
    }
}
