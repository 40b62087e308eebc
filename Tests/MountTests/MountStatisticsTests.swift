@testable import Mount
import Testing

@Suite struct MountStatisticsTests {
    /// Bytes are counted as "while readers waited" exactly when a demand request is in flight,
    /// whichever class received them: what the slow-link test judges the prefetch's back-off by.
    @Test func bytesCountAsWhileReadersWaitedOnlyDuringADemandRequest() {
        let statistics = MountStatistics()
        statistics.countBytes(100, for: .prefetch)
        statistics.countBytes(10, for: .readahead)
        statistics.countStreamedRequest(demand: true, received: { 40 }) {
            statistics.countBytes(40, for: .demand)
            statistics.countBytes(7, for: .prefetch)
        }
        // A request that is not demand does not make the bytes beside it "while readers waited".
        statistics.countStreamedRequest(demand: false, received: { 3 }) {
            statistics.countBytes(3, for: .readahead)
            statistics.countBytes(5, for: .prefetch)
        }
        let snapshot = statistics.snapshot()
        #expect(snapshot.bytesFetchedByClass == BytesByClass(demand: 40, readahead: 13, profile: 0, prefetch: 112))
        #expect(snapshot.bytesFetchedWhileReadersWaited == BytesByClass(demand: 40, readahead: 0, profile: 0, prefetch: 7))
        #expect(statistics.foregroundBytes == 53)
    }

    @Test func readWaitsAddUp() {
        let statistics = MountStatistics()
        #expect(statistics.snapshot().readWaitSeconds == 0)
        statistics.countReadWait(seconds: 0.25)
        statistics.countReadWait(seconds: 1.5)
        #expect(statistics.snapshot().readWaitSeconds == 1.75)
    }
}
