import Testing
import Synchronization
import Glibc
@testable import Threading

@Suite struct BoundedQueueTests {
    @Test func deliversEveryElementInOrderToOneConsumer() {
        let queue = BoundedQueue<Int>(capacity: 3)
        let producer = WorkerThread(name: "producer") {
            for i in 0..<1000 { queue.push(i) }
            queue.close()
        }
        var received = [Int]()
        while let i = queue.pop() { received.append(i) }
        producer.join()
        #expect(received == Array(0..<1000))
    }

    @Test func manyConsumersSeeEachElementOnce() {
        let queue = BoundedQueue<Int>(capacity: 2)
        let sum = Atomic<Int>(0)
        let count = Atomic<Int>(0)
        let consumers = (0..<4).map { _ in
            WorkerThread(name: "consumer") {
                while let i = queue.pop() {
                    sum.add(i, ordering: .relaxed)
                    count.add(1, ordering: .relaxed)
                }
            }
        }
        for i in 1...500 { queue.push(i) }
        queue.close()
        consumers.forEach { $0.join() }
        #expect(count.load(ordering: .relaxed) == 500)
        #expect(sum.load(ordering: .relaxed) == 500 * 501 / 2)
    }

    @Test func cancelWakesABlockedProducerAndDropsTheElement() {
        let queue = BoundedQueue<Int>(capacity: 1)
        #expect(queue.push(1))
        let accepted = Atomic<Int>(-1)
        let producer = WorkerThread(name: "blocked") { accepted.store(queue.push(2) ? 1 : 0, ordering: .relaxed) }
        usleep(50_000)
        queue.cancel()
        producer.join()
        #expect(accepted.load(ordering: .relaxed) == 0)
        #expect(queue.pop() == nil)
    }

    @Test func offerNeverWaitsAndDropsWhatDoesNotFit() {
        let queue = BoundedQueue<Int>(capacity: 2)
        #expect(queue.offer(1))
        #expect(queue.offer(2))
        #expect(!queue.offer(3))
        #expect(queue.pop() == 1)
        #expect(queue.offer(4))
        queue.cancel()
        #expect(!queue.offer(5))
        #expect(queue.pop() == nil)
    }

    @Test func monitorTimesOutWhenThePredicateNeverHolds() {
        let monitor = Monitor(0)
        let held = monitor.wait(until: { $0 > 0 }, timeout: 0.05) { _, held in held }
        #expect(held == false)
    }

    @Test func monitorWakesAWaiterWhenTheStateChanges() {
        let monitor = Monitor(0)
        let setter = WorkerThread(name: "setter") {
            usleep(20_000)
            monitor.update { $0 = 7 }
        }
        let seen = monitor.wait(until: { $0 > 0 }, timeout: 10) { state, held in held ? state : -1 }
        setter.join()
        #expect(seen == 7)
    }
}
