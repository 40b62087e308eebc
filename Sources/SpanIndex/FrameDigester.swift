import Verity

/// SHA-256 of every `frameSize` stretch of a stream (the last may be short): the digests of the
/// disk-aligned frames a mount serves from a span index, which cannot reuse the span digests
/// because checkpoints fall on block boundaries, not on frame boundaries. Not thread-safe.
public final class FrameDigester {
    public let frameSize: Int
    private let hasher = SHA256Hasher()
    private var filled = 0
    private(set) var digests: [Digest] = []

    public init(frameSize: Int) { self.frameSize = frameSize }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        while !rest.isEmpty {
            let take = min(rest.count, frameSize - filled)
            hasher.update(UnsafeRawBufferPointer(rebasing: rest.prefix(take)))
            filled += take
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(take))
            if filled == frameSize { close() }
        }
    }

    /// The digests, the short last frame's included.
    public func finish() -> [Digest] {
        if filled > 0 { close() }
        return digests
    }

    private func close() {
        digests.append(hasher.finalize())
        hasher.reset()
        filled = 0
    }
}
