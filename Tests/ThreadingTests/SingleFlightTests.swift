import Glibc
import Synchronization
import Testing
@testable import Threading

struct TestFailure: Error, Equatable, Sendable { var reason: String }

@Suite struct SingleFlightTests {
    typealias Table = SingleFlight<Int, String, TestFailure>

    @Test func aSecondClaimWaitsForTheFirstOwnersResult() throws {
        let table = Table()
        let first = table.claim([1, 2], joining: true) { _ in false }
        #expect(first.owned.map(\.key) == [1, 2])
        let second = table.claim([2, 3], joining: true) { _ in false }
        #expect(second.owned.map(\.key) == [3])
        #expect(second.waiting.map(\.key) == [2])
        let owner = WorkerThread(name: "owner") {
            usleep(20_000)
            for ticket in first.owned { table.complete(ticket, .success("value \(ticket.key)")) }
        }
        let result = table.wait(second.waiting[0], timeout: 10)
        owner.join()
        #expect(try result?.get() == "value 2")
        table.complete(second.owned[0], .success("value 3"))
        #expect(table.count == 0)
    }

    @Test func backgroundClaimsSkipRunningFlightsAndPresentKeys() {
        let table = Table()
        _ = table.claim([1], joining: true) { _ in false }
        let background = table.claim([1, 2, 3], joining: false) { $0 == 3 }
        #expect(background.owned.map(\.key) == [2])
        #expect(background.waiting.isEmpty)
    }

    @Test func aWaitTimesOutAndTheFlightGoesOn() {
        let table = Table()
        let owner = table.claim([7], joining: true) { _ in false }
        let waiter = table.claim([7], joining: true) { _ in false }
        #expect(table.wait(waiter.waiting[0], timeout: 0.05) == nil)
        #expect(table.isRunning(7))
        table.complete(owner.owned[0], .failure(TestFailure(reason: "late")))
        #expect(!table.isRunning(7))
    }

    @Test func workersTakeDemandedFlightsFirstAndFailuresReachEveryWaiter() {
        let table = Table()
        let background = table.enqueue(1, demand: false)
        let demanded = table.enqueue(2, demand: true)
        let joined = table.enqueue(2, demand: false)
        let first = table.next()
        #expect(first?.ticket.key == 2)
        #expect(first?.demanded == true)
        table.complete(first!.ticket, .failure(TestFailure(reason: "bad layer")))
        #expect(table.wait(demanded, timeout: 1) == .failure(TestFailure(reason: "bad layer")))
        #expect(table.wait(joined, timeout: 1) == .failure(TestFailure(reason: "bad layer")))
        table.close(failing: TestFailure(reason: "stopped"))
        #expect(table.wait(background, timeout: 1) == .failure(TestFailure(reason: "stopped")))
        #expect(table.next() == nil)
        #expect(table.wait(table.enqueue(3, demand: true), timeout: 1) == .failure(TestFailure(reason: "stopped")))
    }

    @Test func manyThreadsClaimingOneKeyFetchItOnce() {
        let table = Table()
        let fetches = Atomic<Int>(0)
        let served = Atomic<Int>(0)
        WorkerThread.run(count: 8, name: "claimer") { _ in
            let claim = table.claim([42], joining: true) { _ in false }
            for ticket in claim.owned {
                fetches.add(1, ordering: .relaxed)
                usleep(10_000)
                table.complete(ticket, .success("answer"))
                served.add(1, ordering: .relaxed)
            }
            for ticket in claim.waiting where (try? table.wait(ticket, timeout: 10)?.get()) == "answer" {
                served.add(1, ordering: .relaxed)
            }
        }
        // Claims after the first completion start a new flight; all eight still get the value.
        #expect(served.load(ordering: .relaxed) == 8)
        #expect(fetches.load(ordering: .relaxed) >= 1)
    }
}
