import Foundation
import Synchronization
import Testing
import Threading
@testable import Fetch

/// The gate's rules, without a network, with real threads: which class holds still for which;
/// a held transfer holds `maxPause` at most, and moves again as soon as what it yields to ends or a
/// reader comes to wait for it. Time bounds are upper bounds on waits that end on an event, far
/// above what the event takes, so that a loaded machine does not fail them.
@Suite struct DemandGateTests {
    @Test func theClassesYieldInOrder() {
        #expect(!TransferClass.demand.yields)
        #expect(TransferClass.readahead.yields(to: .demand))
        #expect(!TransferClass.readahead.yields(to: .profile))
        #expect(TransferClass.profile.yields(to: .demand))
        #expect(!TransferClass.profile.yields(to: .readahead))
        #expect(!TransferClass.profile.yields(to: .prefetch))
        for other in [TransferClass.demand, .readahead, .profile] { #expect(TransferClass.prefetch.yields(to: other)) }
        #expect(!TransferClass.prefetch.yields(to: .prefetch))
    }

    @Test func nothingHoldsWithoutAMoreUrgentTransfer() {
        let gate = DemandGate()
        gate.run(.prefetch) {
            let start = monotonicNow()
            gate.waitToStart(.prefetch, urgent: { false }, upTo: 5)
            gate.yield(.prefetch, urgent: { false })
            gate.waitToStart(.profile, urgent: { false }, upTo: 5)
            gate.yield(.profile, urgent: { false })
            #expect(monotonicNow() - start < DemandGate.maxPause)
        }
        #expect(gate.pausedSeconds == 0)
    }

    @Test func profileAndPrefetchHoldWhileDemandRunsButNotWhenUrgent() {
        let gate = DemandGate()
        gate.demand {
            #expect(gate.isDemandRunning)
            for transferClass in [TransferClass.readahead, .profile, .prefetch] {
                let start = monotonicNow()
                gate.yield(transferClass, urgent: { false })
                #expect(monotonicNow() - start >= DemandGate.maxPause * 0.9)
                #expect(gate.pausedSeconds(transferClass) > 0)
            }
            let start = monotonicNow()
            gate.yield(.readahead, urgent: { true })
            gate.yield(.profile, urgent: { true })
            gate.waitToStart(.prefetch, urgent: { true }, upTo: 5)
            #expect(monotonicNow() - start < DemandGate.maxPause)
        }
        #expect(!gate.isDemandRunning)
    }

    @Test func prefetchHoldsForReadaheadButProfileDoesNot() {
        #expect(!TransferClass.readahead.yields(to: .readahead))
        let gate = DemandGate()
        gate.run(.readahead) {
            #expect(gate.mustHold(.prefetch))
            #expect(!gate.mustHold(.profile))
            let start = monotonicNow()
            gate.yield(.prefetch, urgent: { false })
            #expect(monotonicNow() - start >= DemandGate.maxPause * 0.9)
        }
        // The prefetch lingers a little after readahead ends; the profile never does.
        #expect(!gate.mustHold(.profile))
        Thread.sleep(forTimeInterval: TransferClass.prefetch.linger * 1.5)
        #expect(!gate.mustHold(.prefetch))
    }

    /// The background prefetch holds still for `linger` after the last transfer it yields to has
    /// ended (a sequential reader's next request comes within it), then moves; readahead does not.
    @Test func thePrefetchLingersAfterDemandEndsAndReadaheadDoesNot() {
        let gate = DemandGate()
        gate.demand {}
        #expect(gate.mustHold(.prefetch))
        #expect(!gate.mustHold(.readahead))
        let start = monotonicNow()
        gate.yield(.prefetch, urgent: { false })
        let waited = monotonicNow() - start
        #expect(waited >= TransferClass.prefetch.linger * 0.9)
        #expect(waited < DemandGate.maxPause * 4)
        #expect(!gate.mustHold(.prefetch))
        // A reader that waits for the prefetch's bytes does not wait out the linger.
        gate.demand {}
        let urgentStart = monotonicNow()
        gate.yield(.prefetch, urgent: { true })
        #expect(monotonicNow() - urgentStart < TransferClass.prefetch.linger)
    }

    /// A transfer waiting to start, and one holding still, move again when the demand transfer on
    /// another thread ends: they wait for it (0.6 s), not for `upTo` or `maxPause` slices beyond it.
    @Test func heldTransfersMoveWhenDemandEnds() {
        let gate = DemandGate()
        let entered = Atomic<Bool>(false)
        let demand = Thread {
            gate.demand {
                entered.store(true, ordering: .releasing)
                Thread.sleep(forTimeInterval: 0.6)
            }
        }
        demand.start()
        while !entered.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: 0.005) }
        let start = monotonicNow()
        gate.waitToStart(.prefetch, urgent: { false }, upTo: 30)
        let waited = monotonicNow() - start
        #expect(!gate.isDemandRunning)
        #expect(waited > 0.3)
        #expect(waited < 10)
        #expect(gate.pausedSeconds(.prefetch) > 0.3)
    }

    /// A reader that comes to wait for a held transfer's bytes makes it move within a poll, not a
    /// whole `maxPause` (what made readers wait behind held transfers at 100 Mbit/s before).
    @Test func aHeldTransferMovesOnceAReaderWaitsForIt() {
        let gate = DemandGate()
        let awaited = Atomic<Bool>(false)
        let released = Atomic<Double>(0)
        let releasedAfterAwait = Atomic<Bool>(false)
        gate.demand {
            let held = Thread {
                // Held in `maxPause` slices until the reader arrives; then it runs.
                while !awaited.load(ordering: .acquiring) { gate.yield(.profile, urgent: { awaited.load(ordering: .acquiring) }) }
                gate.yield(.profile, urgent: { awaited.load(ordering: .acquiring) })
                released.store(monotonicNow(), ordering: .releasing)
                releasedAfterAwait.store(true, ordering: .releasing)
            }
            held.start()
            Thread.sleep(forTimeInterval: 0.1)
            let awaitedAt = monotonicNow()
            awaited.store(true, ordering: .releasing)
            let until = monotonicNow() + 10
            while !releasedAfterAwait.load(ordering: .acquiring), monotonicNow() < until { Thread.sleep(forTimeInterval: 0.002) }
            let wasReleased = releasedAfterAwait.load(ordering: .acquiring)
            #expect(wasReleased)
            // A poll is 10 ms; a loaded machine may delay the thread, but not by a whole maxPause
            // on every run: the bound is the pause slice itself.
            let delay = released.load(ordering: .acquiring) - awaitedAt
            #expect(delay < DemandGate.maxPause)
            #expect(gate.isDemandRunning)
        }
    }
}
