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
        // Once the prefetch's linger after the readahead is over, it moves again.
        Thread.sleep(forTimeInterval: TransferClass.prefetch.linger * 1.5)
        #expect(!gate.mustHold(.prefetch))
    }

    /// The rule itself, at given times: the prefetch holds for `linger` after a transfer it
    /// yields to ended (readahead's or demand's), no longer; readahead and profile never linger.
    @Test func onlyThePrefetchLingersAfterAMoreUrgentTransferEnds() {
        let linger = TransferClass.prefetch.linger
        #expect(linger > 0)
        #expect(TransferClass.readahead.linger == 0 && TransferClass.profile.linger == 0)
        for ended in [TransferClass.demand, .readahead, .profile] {
            var state = DemandGate.State()
            state.lastEnded[ended.rawValue] = 10
            #expect(state.mustHold(.prefetch, now: 10 + linger / 2), "\(ended)")
            #expect(!state.mustHold(.prefetch, now: 10 + linger * 1.01), "\(ended)")
            #expect(!state.mustHold(.readahead, now: 10))
            #expect(!state.mustHold(.profile, now: 10))
        }
    }

    /// With real threads: a prefetch transfer that asks to move right after a demand transfer
    /// ended waits out the linger (measured from before the demand transfer began, so a delayed
    /// thread cannot make it look shorter), and one a reader waits for does not.
    @Test func thePrefetchWaitsOutItsLingerUnlessAReaderWaitsForIt() {
        let gate = DemandGate()
        let start = monotonicNow()
        gate.demand {}
        gate.yield(.prefetch, urgent: { false })
        #expect(monotonicNow() - start >= TransferClass.prefetch.linger)
        gate.demand {}
        let urgentStart = monotonicNow()
        gate.yield(.prefetch, urgent: { true })
        #expect(monotonicNow() - urgentStart < DemandGate.maxPause)
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
