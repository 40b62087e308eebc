@testable import Mount
import Testing

@Suite struct ReadaheadLedgerTests {
    @Test func framesReadAfterOrWhileReadaheadFetchedThemAreHitsTheRestUnread() {
        let ledger = ReadaheadLedger()
        #expect(ledger.read(0..<4) == 0)
        ledger.scheduled([10, 11, 12, 13])
        // The reader caught up: 10 is read while its fetch is queued.
        #expect(ledger.read(10..<11) == 0)
        let (hits, unread) = ledger.finished([10, 11, 12, 13], fetched: [10, 11, 12])  // 13 was cached already
        #expect(hits == 1)
        #expect(unread == 2)
        #expect(ledger.read(11..<13) == 2)
        #expect(ledger.read(11..<14) == 0)  // counted once; 13 was not readahead's
    }

    @Test func aReadOfAFrameReadaheadDidNotFetchIsNoHit() {
        let ledger = ReadaheadLedger()
        ledger.scheduled([5, 6])
        #expect(ledger.read(5..<7) == 0)
        // The reader fetched both itself before readahead got to them.
        let (hits, unread) = ledger.finished([5, 6], fetched: [])
        #expect(hits == 0 && unread == 0)
        ledger.scheduled([5])
        #expect(ledger.finished([5], fetched: [5]) == (0, 1))
    }
}
