import Foundation
import Synchronization
import Testing
import Threading
@testable import Fetch

/// The gate's rules, without a network: background holds still while demand runs, for at most
/// `maxPause` a time; not at all when urgent or when no demand runs; and wakes when demand ends.
@Suite struct DemandGateTests {
    @Test func backgroundPassesAtOnceWithoutDemand() {
        let gate = DemandGate()
        let start = monotonicNow()
        gate.yieldToDemand(urgent: { false })
        gate.waitForNoDemand(urgent: { false }, upTo: 5)
        #expect(monotonicNow() - start < DemandGate.maxPause)
        #expect(gate.pausedSeconds == 0)
    }

    @Test func backgroundHoldsStillWhileDemandRunsButNotWhenUrgent() {
        let gate = DemandGate()
        gate.demand {
            #expect(gate.isDemandRunning)
            let start = monotonicNow()
            gate.yieldToDemand(urgent: { false })
            let paused = monotonicNow() - start
            #expect(paused >= DemandGate.maxPause * 0.9)
            #expect(gate.pausedSeconds > 0)
            let urgentStart = monotonicNow()
            gate.yieldToDemand(urgent: { true })
            gate.waitForNoDemand(urgent: { true }, upTo: 5)
            #expect(monotonicNow() - urgentStart < DemandGate.maxPause)
        }
        #expect(!gate.isDemandRunning)
    }

    @Test func aWaitingBackgroundTransferStartsWhenDemandEnds() {
        let gate = DemandGate()
        let entered = Atomic<Bool>(false)
        let demand = Thread {
            gate.demand {
                entered.store(true, ordering: .relaxed)
                Thread.sleep(forTimeInterval: 0.6)
            }
        }
        demand.start()
        while !entered.load(ordering: .relaxed) { Thread.sleep(forTimeInterval: 0.01) }
        let start = monotonicNow()
        gate.waitForNoDemand(urgent: { false }, upTo: 10)
        let waited = monotonicNow() - start
        #expect(!gate.isDemandRunning)
        // Completes within 5 s: it waits for the demand transfer (0.6 s), not for `upTo`.
        #expect(waited < 5)
        #expect(waited > 0.3)
    }
}
