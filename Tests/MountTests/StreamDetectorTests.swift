@testable import Mount
import Testing
import TestSupport

@Suite struct StreamDetectorTests {
    /// Plays `trace` (one frame range a read) and returns the frames handed to readahead.
    static func play(_ trace: [Range<Int>], on detector: StreamDetector, limit: Int = .max) -> [Range<Int>] {
        trace.compactMap { detector.note($0, limit: limit) }
    }

    @Test func contiguousReadsGrowTheWindowAndScheduleFramesAhead() {
        let detector = StreamDetector(frameCount: 1000, maxWindow: 32)
        #expect(detector.note(0..<1) == nil)    // a new stream
        for frame in 1..<5 { #expect(detector.note(frame..<frame + 1) == nil) }  // nothing judged, then one frame
        #expect(detector.note(5..<6) == 6..<7)  // frames 0 and 1 were read: window 1
        #expect(detector.note(6..<7) == 7..<9)  // frame 2 too: window 2, topped up past what was scheduled
        var scheduled = 9
        for frame in 7..<40 {
            if let ahead = detector.note(frame..<frame + 1) {
                #expect(ahead.lowerBound == scheduled)
                scheduled = ahead.upperBound
            }
        }
        #expect(scheduled > 40 && scheduled <= 40 + 32)
    }

    @Test func aSequentialReaderReachesTheWholeWindow() {
        let detector = StreamDetector(frameCount: 10_000, maxWindow: 32)
        var furthestAhead = 0
        for frame in 0..<500 {
            if let ahead = detector.note(frame..<frame + 1) { furthestAhead = max(furthestAhead, ahead.upperBound - (frame + 1)) }
        }
        #expect(furthestAhead == 32)
    }

    @Test func readsDeliveredSlightlyOutOfOrderStayOneStreamAndKeepGrowing() {
        let detector = StreamDetector(frameCount: 10_000, maxWindow: 32)
        // The kernel's readahead in flight on several FUSE threads: pairs arrive swapped.
        var trace: [Range<Int>] = []
        for pair in stride(from: 0, to: 400, by: 2) { trace += [pair + 1..<pair + 2, pair..<pair + 1] }
        let scheduled = Self.play(trace, on: detector)
        #expect(scheduled.map(\.count).max() ?? 0 >= 16)
        // Each frame is handed out once.
        for (a, b) in zip(scheduled, scheduled.dropFirst()) { #expect(a.upperBound <= b.lowerBound) }
    }

    /// 256 KiB frames: the kernel's 4 MiB of readahead is 16 frames, sent as 1 MiB requests that
    /// FUSE threads may deliver last first. The distances that judge a stream are counted in
    /// bytes (`framesPerUnit`), so such a reader is one stream whose window opens fully; counted
    /// in frames, as for 1 MiB frames, the same reads look scattered.
    @Test func smallFramesKeepTheKernelsReorderedWindowOneStream() {
        var trace: [Range<Int>] = []
        for window in stride(from: 0, to: 1600, by: 16) {
            for request in stride(from: 12, through: 0, by: -4) { trace.append(window + request..<window + request + 4) }
        }
        func furthestAhead(framesPerUnit: Int) -> Int {
            let detector = StreamDetector(frameCount: 10_000, maxWindow: 128, framesPerUnit: framesPerUnit)
            var furthest = 0
            for read in trace {
                if let ahead = detector.note(read) { furthest = max(furthest, ahead.upperBound - read.upperBound) }
            }
            return furthest
        }
        #expect(furthestAhead(framesPerUnit: 4) >= 112)
        #expect(furthestAhead(framesPerUnit: 1) < 16)
    }

    /// The window opens as fast in bytes at 256 KiB frames as at 1 MiB ones: the same 24 MiB
    /// read in 1 MiB requests end with the same bytes scheduled ahead (doubling per frame, the
    /// 256 KiB window would be sixteen times further ahead after a few MiB).
    @Test func theWindowOpensPerUnitNotPerFrame() {
        func bytesAhead(framesPerUnit: Int, after mebibytes: Int) -> Int {
            let detector = StreamDetector(frameCount: 10_000, maxWindow: 64 * framesPerUnit, framesPerUnit: framesPerUnit)
            var scheduled = 0
            for mib in 0..<mebibytes {
                let read = mib * framesPerUnit..<(mib + 1) * framesPerUnit
                if let ahead = detector.note(read) { scheduled = ahead.upperBound }
            }
            return (scheduled - mebibytes * framesPerUnit) * (1024 / framesPerUnit)  // KiB
        }
        for mebibytes in [8, 12, 16, 24] {
            let large = bytesAhead(framesPerUnit: 1, after: mebibytes)
            let small = bytesAhead(framesPerUnit: 4, after: mebibytes)
            #expect(small <= 2 * max(large, 1024), "after \(mebibytes) MiB: \(small) KiB ahead at 256 KiB, \(large) KiB at 1 MiB")
            #expect(small * 2 >= large, "after \(mebibytes) MiB: \(small) KiB ahead at 256 KiB, \(large) KiB at 1 MiB")
        }
    }

    /// A boot: reads of scattered frames, many a few frames apart (so within a stream's reach),
    /// now and then two adjacent ones. Readahead stays at a frame or two now and then.
    @Test func aScatteredBootLikeTraceReadsAlmostNothingAhead() {
        let detector = StreamDetector(frameCount: 4096, maxWindow: 32)
        var generator = SplitMix64(seed: 20)
        var trace: [Range<Int>] = []
        var frame = 100
        for _ in 0..<600 {
            switch generator.next() % 10 {
            case 0: frame = Int(generator.next() % 4000)            // another file far away
            case 1, 2: frame += 1                                    // the next frame
            case 3: frame = max(0, frame - Int(generator.next() % 6)) // back a little
            default: frame += 2 + Int(generator.next() % 6)          // a few frames on
            }
            frame = min(frame, 4095)
            trace.append(frame..<frame + 1)
        }
        let scheduled = Self.play(trace, on: detector)
        let frames = scheduled.reduce(0) { $0 + $1.count }
        let read = Set(trace.map(\.lowerBound))
        let wasted = scheduled.flatMap { Array($0) }.filter { !read.contains($0) }.count
        // The old policy (any forward read within 8 frames doubled the window) scheduled more
        // frames than the trace reads.
        #expect(frames < trace.count / 2)
        #expect(frames < trace.count / 10)
        #expect(scheduled.allSatisfy { $0.count <= 8 })
        #expect(wasted < trace.count / 20)
    }

    @Test func scatteredReadsShrinkAnOpenWindowToZero() {
        let detector = StreamDetector(frameCount: 10_000, maxWindow: 32)
        for frame in 0..<100 { _ = detector.note(frame..<frame + 1) }
        // Now skipping 4 frames at a time: past what was scheduled, then nothing more.
        var frame = 200
        _ = detector.note(frame..<frame + 1)  // beyond the stream's reach: a new stream
        var scheduledAfter: [Range<Int>] = []
        for _ in 0..<20 {
            frame += 5
            if let ahead = detector.note(frame..<frame + 1) { scheduledAfter.append(ahead) }
        }
        #expect(scheduledAfter.isEmpty)
        // The sequential stream, skipped past, stops reading ahead after a few skips.
        frame = 99
        var late: [Range<Int>] = []
        for _ in 0..<10 {
            frame += 3
            if let ahead = detector.note(frame..<frame + 1) { late.append(ahead) }
        }
        #expect(late.count <= 1)
    }

    @Test func theLinkCapsFramesAheadOfTheReader() {
        let slow = StreamDetector.limit(bytesPerSecond: 3_000_000, horizon: 1, frameBytes: 300_000, maxWindow: 32)
        let fast = StreamDetector.limit(bytesPerSecond: 500_000_000, horizon: 1, frameBytes: 300_000, maxWindow: 32)
        let unmeasured = StreamDetector.limit(bytesPerSecond: nil, horizon: 1, frameBytes: 300_000, maxWindow: 32)
        let stalled = StreamDetector.limit(bytesPerSecond: 10, horizon: 1, frameBytes: 300_000, maxWindow: 32)
        #expect(slow == 10)
        #expect(fast == .max)
        #expect(unmeasured == .max)
        #expect(stalled == 1)

        for (limit, expected) in [(slow, 10), (fast, 32)] {
            let detector = StreamDetector(frameCount: 10_000, maxWindow: 32)
            var furthestAhead = 0
            for frame in 0..<300 {
                if let ahead = detector.note(frame..<frame + 1, limit: limit) {
                    furthestAhead = max(furthestAhead, ahead.upperBound - (frame + 1))
                }
            }
            #expect(furthestAhead == expected)
        }
    }
}
