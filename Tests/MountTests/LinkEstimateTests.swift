@testable import Mount
import Testing

@Suite struct LinkEstimateTests {
    static let mebibyte = 1 << 20

    @Test func nothingIsReportedUntilEnoughWasMeasured() {
        let link = LinkEstimate()
        #expect(link.bytesPerSecond == nil)
        link.started(at: 0)
        link.finished(bytes: 4096, seconds: 0.01, at: 0.01)
        #expect(link.bytesPerSecond == nil)
        #expect(link.snapshot.requests == 1)
    }

    /// The frame index's transfer stands in until the mount's own requests have measured
    /// `minimumBytes`, and then gives way to them entirely.
    @Test func aSeedStandsInUntilTheMountsOwnRequestsMeasuredEnough() {
        let link = LinkEstimate()
        link.seed(TransferSample(bytes: 250_000, seconds: 0.1))
        #expect(link.bytesPerSecond == 2_500_000)
        #expect(link.snapshot.bytesPerSecond == 2_500_000)
        link.started(at: 0)
        link.finished(bytes: 4096, seconds: 0.01, at: 0.01)
        #expect(link.bytesPerSecond == 2_500_000, "one small request is not enough to replace the seed")
        link.started(at: 1)
        link.finished(bytes: 4 * Self.mebibyte, seconds: 0.04, at: 1.04)
        // About 84 MB/s (the older request's share decays a little): the seed is gone.
        let measured = Double(4 * Self.mebibyte + 4096) / 0.05
        #expect(abs(link.bytesPerSecond! / measured - 1) < 0.02)
    }

    @Test func aTransferThatSaysNothingAboutARateIsNoSeed() {
        let link = LinkEstimate()
        link.seed(TransferSample(bytes: 0, seconds: 0.1))
        link.seed(TransferSample(bytes: 4096, seconds: 0))
        link.seed(TransferSample(bytes: Int(LinkEstimate.minimumSeedBytes) - 1, seconds: 10))
        #expect(link.bytesPerSecond == nil)
    }

    /// How the parent hands its sample to the daemon (`--link-sample`).
    @Test func aSampleRoundTripsThroughItsArgument() {
        let sample = TransferSample(bytes: 230_112, seconds: 0.0734)
        #expect(TransferSample(argument: sample.argument) == sample)
        for bad in ["", "12", "12:", ":0.5", "-1:0.5", "12:-1", "12:nan", "12:inf", "a:b", "1:2:3"] {
            #expect(TransferSample(argument: bad) == nil, "\(bad)")
        }
    }

    @Test func throughputIsBytesOverBusyTimeNotOverEachRequest() {
        let link = LinkEstimate()
        // Two requests in flight together share the link: 2 MiB in one second, not 1 MiB/s each.
        link.started(at: 0)
        link.started(at: 0)
        link.finished(bytes: Self.mebibyte, seconds: 0.5, at: 0.5)
        link.finished(bytes: Self.mebibyte, seconds: 1, at: 1)
        #expect(abs(link.bytesPerSecond! - Double(2 * Self.mebibyte)) < 1)
        // Idle time between requests is not the link's slowness.
        link.started(at: 100)
        link.finished(bytes: 2 * Self.mebibyte, seconds: 1, at: 101)
        #expect(abs(link.bytesPerSecond! - Double(2 * Self.mebibyte)) < 1)
    }

    @Test func aStalledRequestLowersTheEstimate() {
        let link = LinkEstimate()
        link.started(at: 0)
        link.finished(bytes: 4 * Self.mebibyte, seconds: 1, at: 1)
        let before = link.bytesPerSecond!
        link.started(at: 2)
        link.finished(bytes: 0, seconds: 3, at: 5)
        #expect(link.bytesPerSecond! < before / 2)
    }

    /// A streamed range request that fails after part of its body arrived still measured the
    /// link with those bytes; its duration, stall included, says nothing about latency.
    @Test func aRequestThatFailsMidwayCountsTheBytesItReceived() {
        struct Cut: Error {}
        let statistics = MountStatistics()
        var received = 0
        #expect(throws: Cut.self) {
            try statistics.countStreamedRequest(demand: true, received: { received }) { () throws(Cut) in
                received = 3 * Self.mebibyte
                throw Cut()
            }
        }
        let snapshot = statistics.link.snapshot
        #expect(snapshot.requests == 1)
        #expect(snapshot.bytesPerSecond != nil, "3 MiB received before the failure were not counted")
        #expect(snapshot.latencySeconds == nil)
        #expect(statistics.snapshot().rangeRequests == 0)
    }

    @Test func theEstimateFollowsAChangedLink() {
        let link = LinkEstimate()
        var now = 0.0
        func request(bytes: Int, seconds: Double) {
            link.started(at: now)
            now += seconds
            link.finished(bytes: bytes, seconds: seconds, at: now)
        }
        for _ in 0..<20 { request(bytes: 16 * Self.mebibyte, seconds: 0.1) }   // ~168 MB/s
        #expect(link.bytesPerSecond! > 100e6)
        for _ in 0..<60 { request(bytes: Self.mebibyte, seconds: 0.35) }       // ~3 MB/s, 21 s of it
        #expect(link.bytesPerSecond! > 2.5e6 && link.bytesPerSecond! < 4e6)
    }

    @Test func latencyIsTheTimeThroughputDoesNotExplain() {
        let link = LinkEstimate()
        var now = 0.0
        // 10 MB/s with 50 ms before the first byte of every request.
        for bytes in [8 * Self.mebibyte, 64 << 10, 8 * Self.mebibyte, 64 << 10, 8 * Self.mebibyte, 64 << 10] {
            let seconds = 0.05 + Double(bytes) / 10e6
            link.started(at: now)
            now += seconds
            link.finished(bytes: bytes, seconds: seconds, at: now)
        }
        let latency = link.snapshot.latencySeconds!
        #expect(latency > 0.02 && latency < 0.08)
    }

    @Test func aSlowLinkCapsReadaheadAndAFastOneDoesNot() {
        let slow = LinkEstimate()
        let fast = LinkEstimate()
        for i in 0..<8 {
            slow.started(at: Double(i))
            slow.finished(bytes: Self.mebibyte, seconds: 0.35, at: Double(i) + 0.35)
            fast.started(at: Double(i))
            fast.finished(bytes: 16 * Self.mebibyte, seconds: 0.05, at: Double(i) + 0.05)
        }
        let frameBytes = 300_000.0
        let slowLimit = StreamDetector.limit(bytesPerSecond: slow.bytesPerSecond, horizon: 1, frameBytes: frameBytes, maxWindow: 32)
        let fastLimit = StreamDetector.limit(bytesPerSecond: fast.bytesPerSecond, horizon: 1, frameBytes: frameBytes, maxWindow: 32)
        #expect(slowLimit >= 8 && slowLimit <= 12)
        #expect(fastLimit == .max)
    }
}
