import Synchronization

/// Recognises sequential readers of one disk and says which frames to read ahead of them, and
/// how many: a window that the reads themselves size.
///
/// Per-disk rather than per-file-handle: a VM or `cp` reads one disk through one or a few
/// handles, and FUSE may split or reorder a reader's requests among threads anyway. Up to
/// `maxStreams` interleaved readers are tracked (least recently used replaced). A read belongs
/// to a stream if it starts within `slack` frames of the stream's furthest frame, or among the
/// frames already handed to readahead for it: the kernel's own readahead sends several requests
/// at once, which FUSE threads deliver out of order, and they must not look like new streams.
///
/// Belonging to a stream is not yet being sequential: a booting VM reads scattered files a few
/// frames apart. So the window starts at zero and is sized by what the reader did with the frames
/// it passed: each frame is judged once, when the stream's furthest frame is `settle` frames past
/// it (late requests have arrived by then). Each unit of frames (1 MiB of disk) read right after
/// one that was read doubles the window (from one unit, up to `maxWindow`); a frame that was
/// skipped, whether readahead fetched it (waste) or not, halves it.
/// `dd` or `cp` thus reach the full window within a few units and keep it, while a boot's
/// scattered reads, which skip more frames than they read, keep it at zero or one.
///
/// What is handed out is further capped by `limit` (frames), which the caller derives from what
/// the link carries in a short time: on a slow link, readahead far ahead of the reader only
/// queues in front of the reader's own next miss.
final class StreamDetector: Sendable {
    struct Stream {
        var lastFrame: Int
        var window: Int
        /// Frames below this were already handed to readahead (or read).
        var scheduledUntil: Int
        /// The first frame not judged yet.
        var judgedUntil: Int
        /// Frames judged read in a row.
        var run = 0
        /// Bit k: frame `lastFrame - k` was read.
        var read: UInt64
        var lastUse: UInt64

        mutating func markRead(_ frames: Range<Int>) {
            for frame in frames where frame <= lastFrame && lastFrame - frame < 64 { read |= 1 << UInt64(lastFrame - frame) }
        }

        func wasRead(_ frame: Int) -> Bool { frame <= lastFrame && lastFrame - frame < 64 && read & (1 << UInt64(lastFrame - frame)) != 0 }
    }

    static let maxStreams = 16
    /// How far from a stream a read may start and still belong to it: 8 units (8 MiB of disk).
    let slack: Int
    /// How far behind the furthest frame a frame is judged: the kernel's readahead (4 MiB) is in
    /// flight at once, and FUSE threads may deliver it in any order.
    let settle: Int
    /// Frames in a readahead unit (1 MiB of disk): the window opens at one unit and doubles once
    /// per unit read in a row, so that it opens as fast in bytes whatever the frame size.
    let unit: Int
    let frameCount: Int
    let maxWindow: Int
    private let state = Mutex<(streams: [Stream], clock: UInt64)>(([], 0))

    /// - Parameter framesPerUnit: frames in a unit of 1 MiB of disk (4 for 256 KiB frames): the
    ///   distances that the kernel's requests set (its readahead, FUSE's reordering) are bytes.
    init(frameCount: Int, maxWindow: Int, framesPerUnit: Int = 1) {
        self.frameCount = frameCount
        self.maxWindow = maxWindow
        unit = max(1, framesPerUnit)
        slack = 8 * unit
        // Judged frames must stay within the 64 frames a stream remembers (`Stream.read`).
        settle = min(32, 4 * unit)
    }

    /// Frames of `frameBytes` (compressed) that a link of `bytesPerSecond` carries in `horizon`
    /// seconds, at least one; `.max` (no cap) when the link is unmeasured or carries `maxWindow`.
    static func limit(bytesPerSecond: Double?, horizon: Double, frameBytes: Double, maxWindow: Int) -> Int {
        guard let bytesPerSecond, frameBytes > 0 else { return .max }
        let frames = bytesPerSecond * horizon / frameBytes
        return frames >= Double(maxWindow) ? .max : max(1, Int(frames))
    }

    /// Records a read of `frames`; returns frames to read ahead, if the read continues a stream
    /// whose window is open. At most `limit` frames are kept scheduled ahead of the reader.
    func note(_ frames: Range<Int>, limit: Int = .max) -> Range<Int>? {
        guard !frames.isEmpty else { return nil }
        return state.withLock { state -> Range<Int>? in
            state.clock += 1
            let last = frames.upperBound - 1
            guard let i = state.streams.firstIndex(where: { stream in
                frames.lowerBound >= stream.lastFrame - slack
                    && frames.lowerBound <= max(stream.lastFrame + slack, stream.scheduledUntil - 1)
            }) else {
                var stream = Stream(lastFrame: last, window: 0, scheduledUntil: frames.upperBound,
                                    judgedUntil: frames.lowerBound, read: 0, lastUse: state.clock)
                stream.markRead(frames)
                if state.streams.count < Self.maxStreams {
                    state.streams.append(stream)
                } else if let oldest = state.streams.indices.min(by: { state.streams[$0].lastUse < state.streams[$1].lastUse }) {
                    state.streams[oldest] = stream
                }
                return nil
            }
            var stream = state.streams[i]
            stream.lastUse = state.clock
            defer { state.streams[i] = stream }
            // Behind the stream's furthest frame: a request FUSE delivered late.
            guard last > stream.lastFrame else {
                stream.markRead(frames)
                return nil
            }
            let advance = last - stream.lastFrame
            stream.read = advance < 64 ? stream.read << UInt64(advance) : 0
            stream.lastFrame = last
            stream.markRead(frames)
            if last - stream.judgedUntil > 64 {
                // A jump far past frames never read (only a stream with a wide window reaches that far).
                stream.window = 0
                stream.judgedUntil = last - 64
            }
            while stream.judgedUntil <= last - settle {
                if stream.wasRead(stream.judgedUntil) {
                    stream.run += 1
                    // One unit read is any read; two in a row begin a sequential run.
                    if stream.run >= 2 * unit, stream.run % unit == 0 {
                        stream.window = stream.window == 0 ? min(maxWindow, unit) : min(maxWindow, stream.window * 2)
                    }
                } else {
                    stream.run = 0
                    stream.window /= 2
                }
                stream.judgedUntil += 1
            }
            stream.scheduledUntil = max(stream.scheduledUntil, frames.upperBound)
            let window = min(stream.window, max(0, limit))
            // Top up only when less than half a window is left ahead, and then by the whole
            // window: batches of many frames coalesce into few range requests, where a
            // frame-by-frame top-up would send one request per frame.
            let ahead = stream.scheduledUntil - (last + 1)
            let end = min(frameCount, last + 1 + window)
            let start = max(last + 1, stream.scheduledUntil)
            guard window > 0, ahead <= window / 2, start < end else { return nil }
            stream.scheduledUntil = end
            return start..<end
        }
    }
}
