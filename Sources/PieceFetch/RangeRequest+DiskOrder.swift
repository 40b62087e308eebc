import ImgfsFormat

extension RangeRequest {
    /// The stored frames of `index`, verified and handed to `deliver` in disk order, for consumers
    /// that stream the disk (convert) or hash it as it goes (`verify --remote`). A window of
    /// consecutive stored frames holding up to `maxBytes` decoded is planned (contiguous members
    /// only), fetched with `fetch` and decoded before it is delivered, which bounds memory.
    /// `failed` turns the first frame that does not verify into the caller's error.
    public static func inDiskOrder<E: Error>(_ index: FrameIndex, maxBytes: Int64, fetch: (RangeRequest) throws(E) -> [UInt8],
                                             failed: (_ frame: Int, PieceError) -> E,
                                             deliver: (VerifiedFrame) throws(E) -> Void) throws(E) {
        let stored = index.frames.indices.filter { index.frames[$0].location != nil }
        var start = 0
        while start < stored.count {
            var end = start + 1
            var window = Int64(index.geometry.length(ofFrame: stored[start]))
            while end < stored.count, window + Int64(index.geometry.length(ofFrame: stored[end])) <= maxBytes {
                window += Int64(index.geometry.length(ofFrame: stored[end]))
                end += 1
            }
            var verified: [Int: VerifiedFrame] = [:]
            for request in plan(stored[start..<end], index: index, maxBytes: maxBytes) {
                let bytes = try fetch(request)
                var failure: E?
                request.decode(bytes, index: index) { frame, result in
                    switch result {
                    case .success(let frame): verified[frame.index] = frame
                    case .failure(let error): if failure == nil { failure = failed(frame, error) }
                    }
                }
                if let failure { throw failure }
            }
            for frame in stored[start..<end] { if let frame = verified[frame] { try deliver(frame) } }
            start = end
        }
    }
}
