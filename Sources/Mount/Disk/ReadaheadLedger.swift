import Synchronization

/// Which frames readahead brought in that readers then read (hits) and which none has read
/// (waste so far), for `imgfs status`. A reader that catches up with readahead reads a frame
/// while its fetch is still queued or in flight; that counts as a hit once readahead has fetched
/// it, not as waste. Noted on every read, so it is cheap when nothing is tracked.
final class ReadaheadLedger: Sendable {
    private struct State {
        /// Handed to readahead, not fetched yet.
        var pending: Set<Int> = []
        /// Of `pending`: read meanwhile.
        var readEarly: Set<Int> = []
        /// Fetched by readahead, not read yet.
        var unread: Set<Int> = []
    }

    private let state = Mutex(State())
    private let tracked = Atomic<Int>(0)

    func scheduled(_ frames: [Int]) {
        let count = state.withLock { state in
            state.pending.formUnion(frames)
            return state.pending.count + state.unread.count
        }
        tracked.store(count, ordering: .relaxed)
    }

    /// Readahead finished with `batch` (or dropped it), having fetched `fetched` of it. Returns
    /// the hits (frames read while they were being fetched) and the frames now unread.
    func finished(_ batch: [Int], fetched: some Sequence<Int>) -> (hits: Int, unread: Int) {
        let (result, count) = state.withLock { state in
            var hits = 0
            var unread = 0
            for frame in fetched where state.pending.contains(frame) {
                if state.readEarly.contains(frame) {
                    hits += 1
                } else if state.unread.insert(frame).inserted {
                    unread += 1
                }
            }
            for frame in batch {
                state.pending.remove(frame)
                state.readEarly.remove(frame)
            }
            return ((hits, unread), state.pending.count + state.unread.count)
        }
        tracked.store(count, ordering: .relaxed)
        return result
    }

    /// A reader read `frames`: returns how many of them readahead had fetched and none had read.
    func read(_ frames: Range<Int>) -> Int {
        guard tracked.load(ordering: .relaxed) > 0 else { return 0 }
        let (hits, count) = state.withLock { state in
            var hits = 0
            for frame in frames {
                if state.unread.remove(frame) != nil {
                    hits += 1
                } else if state.pending.contains(frame) {
                    state.readEarly.insert(frame)
                }
            }
            return (hits, state.pending.count + state.unread.count)
        }
        tracked.store(count, ordering: .relaxed)
        return hits
    }
}
