extension FrameCache {
    /// Copies bytes of a present frame, from `offset` within it, into `buffer`; returns how many
    /// (up to the end of the frame). Asking for an absent frame is a caller bug and throws
    /// `frameNotPresent`. A frame this process has not checked yet is checked first (`verify`); if
    /// its bytes are wrong it is dropped and this throws `corruptFrame`.
    public func read(frame: Int, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(CacheError) -> Int {
        try checkFrame(frame)
        let length = geometry.length(ofFrame: frame)
        guard offset >= 0, offset <= length else {
            throw .offsetOutOfRange(frame: frame, offset: offset, frameLength: length)
        }
        switch try verify(frame) {
        case .verified: break
        case .absent: throw .frameNotPresent(frame: frame, path: layout.dataPath)
        case .dropped(let actual): throw .corruptFrame(frame: frame, path: layout.dataPath, expected: frameDigests[frame], actual: actual)
        }
        let count = min(buffer.count, length - offset)
        guard count > 0 else { return 0 }
        try data.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]),
                      at: geometry.offset(ofFrame: frame) + UInt64(offset))
        return count
    }

    /// The data file's descriptor if every frame of `frames` is present and checked by this process
    /// (its bytes verified, or a hole), else nil: then `[offset, end)` of the disk over those frames
    /// can be read from the descriptor at the same offset. One lock for the whole range; for the
    /// read hit path. A frame that is present but not checked yet gives nil, so the read goes the
    /// slow way once and `verify` checks it.
    /// The descriptor stays valid until `close()`.
    public func presentDataDescriptor(frames: Range<Int>) -> Int32? {
        guard frames.lowerBound >= 0, frames.upperBound <= geometry.frameCount else { return nil }
        return state.withLock { s -> Int32? in
            guard !s.closed else { return nil }
            for frame in frames where !BitmapFormat.isSet(s.verified, frame) { return nil }
            return data.rawValue
        }
    }

    /// The whole frame, or nil if it is not in the cache (or was, but its bytes were wrong and it
    /// has been dropped).
    public func readFrame(_ frame: Int) throws(CacheError) -> [UInt8]? {
        try checkFrame(frame)
        guard case .verified = try verify(frame) else { return nil }
        return try data.read(count: geometry.length(ofFrame: frame), at: geometry.offset(ofFrame: frame))
    }
}
