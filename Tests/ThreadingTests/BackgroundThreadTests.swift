import Glibc
import Synchronization
import Testing
@testable import Threading

@Suite struct BackgroundThreadTests {
    @Test func stopWakesALongPauseAtOnce() {
        let thread = BackgroundThread(name: "test")
        let stoppedByPause = Atomic<Bool>(false)
        thread.start {
            stoppedByPause.store(thread.pause(60), ordering: .relaxed)
        }
        usleep(50_000)
        let t0 = monotonic()
        thread.stop()
        #expect(monotonic() - t0 < 5)   // not the 60 s of the pause
        let pauseSawStop = stoppedByPause.load(ordering: .relaxed)
        #expect(pauseSawStop)
        #expect(thread.isStopping)
    }

    @Test func repeatingTicksUntilStoppedAndNotAfter() {
        let thread = BackgroundThread(name: "ticks")
        let ticks = Atomic<Int>(0)
        thread.startRepeating(every: 0.01) { ticks.add(1, ordering: .relaxed) }
        for _ in 0..<500 where ticks.load(ordering: .relaxed) < 3 { usleep(10_000) }
        thread.stop()
        let atStop = ticks.load(ordering: .relaxed)
        #expect(atStop >= 3)
        usleep(50_000)
        let later = ticks.load(ordering: .relaxed)
        #expect(later == atStop)
    }

    @Test func stopBeforeStartStartsNothingAndStopTwiceIsFine() {
        let thread = BackgroundThread(name: "never")
        thread.stop()
        let ran = Atomic<Bool>(false)
        thread.start { ran.store(true, ordering: .relaxed) }
        thread.stop()
        usleep(20_000)
        let didRun = ran.load(ordering: .relaxed)
        #expect(!didRun)
    }

    private func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
