@testable import Mount
import Testing

@Suite struct StreamDetectorTests {
    @Test func contiguousReadsGrowTheWindowAndScheduleFramesAhead() {
        let detector = StreamDetector(frameCount: 1000, maxWindow: 32)
        #expect(detector.note(0..<1) == nil)    // a new stream
        #expect(detector.note(1..<2) == 2..<4)  // window 2
        #expect(detector.note(2..<3) == 4..<7)  // window 4, topped up past what was scheduled
        var scheduled = 7
        for frame in 3..<40 {
            if let ahead = detector.note(frame..<frame + 1) {
                #expect(ahead.lowerBound == scheduled)
                scheduled = ahead.upperBound
            }
        }
        #expect(scheduled > 40 && scheduled <= 40 + 32)
    }

    @Test func readsDeliveredSlightlyOutOfOrderStayOneStream() {
        let detector = StreamDetector(frameCount: 1000, maxWindow: 32)
        _ = detector.note(10..<11)
        #expect(detector.note(12..<13) != nil)  // 11 is still on another FUSE thread
        #expect(detector.note(11..<12) == nil)  // behind the stream: nothing new to schedule
        #expect(detector.note(13..<14) != nil || detector.note(14..<15) != nil)
    }
}
