import ImgfsFormat
import Synchronization

/// Verified frames handed to their readers but not yet written to the cache.
///
/// A fetched frame's waiters are woken before its bytes go to the cache file, so that a reader
/// does not wait for the write (an `O_DIRECT` `pwrite` of a whole frame, a millisecond or more)
/// on top of the fetch. Between the wake-up and the end of the write the frame is here, and only
/// here: a reader that comes in between is served from this copy, and a fetch that would start
/// finds the frame present. A frame leaves once the cache has it, so at every moment it is in the
/// cache, here, or neither (and then it is fetched). Bounded by the frames being written at once:
/// one per fetching thread.
final class UnstagedFrames: Sendable {
    private let frames = Mutex<[Int: VerifiedFrame]>([:])

    func insert(_ frame: VerifiedFrame) { frames.withLock { $0[frame.index] = frame } }

    func remove(_ index: Int) { frames.withLock { _ = $0.removeValue(forKey: index) } }

    func contains(_ index: Int) -> Bool { frames.withLock { $0[index] != nil } }

    func frame(_ index: Int) -> VerifiedFrame? { frames.withLock { $0[index] } }
}
