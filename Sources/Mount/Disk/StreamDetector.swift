import Synchronization

/// Recognises sequential readers of one disk and says which frames to read ahead of them.
///
/// Per-disk rather than per-file-handle: a VM or `cp` reads one disk through one or a few
/// handles, and FUSE may split or reorder a reader's requests among threads anyway. Up to
/// `maxStreams` interleaved sequential readers are tracked (least recently used replaced).
/// A stream that moves into the next frame doubles its window, from 2 frames up to `maxWindow`.
/// A read continues a stream if it starts within `slack` frames of the stream's furthest frame:
/// the kernel's own readahead sends several requests at once, which FUSE threads deliver out
/// of order, and they must not look like new streams.
final class StreamDetector: Sendable {
    struct Stream {
        var lastFrame: Int
        var window: Int
        /// Frames below this were already handed to readahead.
        var scheduledUntil: Int
        var lastUse: UInt64
    }

    static let maxStreams = 16
    static let slack = 8
    let frameCount: Int
    let maxWindow: Int
    private let state = Mutex<(streams: [Stream], clock: UInt64)>(([], 0))

    init(frameCount: Int, maxWindow: Int) {
        self.frameCount = frameCount
        self.maxWindow = maxWindow
    }

    /// Records a read of `frames`; returns frames to read ahead, if the read continues a stream.
    func note(_ frames: Range<Int>) -> Range<Int>? {
        guard !frames.isEmpty else { return nil }
        return state.withLock { state -> Range<Int>? in
            state.clock += 1
            let last = frames.upperBound - 1
            guard let i = state.streams.firstIndex(where: { abs(frames.lowerBound - $0.lastFrame) <= Self.slack }) else {
                let stream = Stream(lastFrame: last, window: 0, scheduledUntil: frames.upperBound, lastUse: state.clock)
                if state.streams.count < Self.maxStreams {
                    state.streams.append(stream)
                } else if let oldest = state.streams.indices.min(by: { state.streams[$0].lastUse < state.streams[$1].lastUse }) {
                    state.streams[oldest] = stream
                }
                return nil
            }
            var stream = state.streams[i]
            stream.lastUse = state.clock
            var result: Range<Int>? = nil
            if last > stream.lastFrame {
                stream.window = stream.window == 0 ? 2 : min(maxWindow, stream.window * 2)
                stream.lastFrame = last
                // Top up only when less than half a window is left ahead, and then by the whole
                // window: batches of many frames coalesce into few range requests, where a
                // frame-by-frame top-up would send one request per frame.
                let ahead = stream.scheduledUntil - (last + 1)
                let end = min(frameCount, last + 1 + stream.window)
                let start = max(last + 1, stream.scheduledUntil)
                if ahead <= stream.window / 2, start < end {
                    stream.scheduledUntil = end
                    result = start..<end
                }
            }
            state.streams[i] = stream
            return result
        }
    }
}
