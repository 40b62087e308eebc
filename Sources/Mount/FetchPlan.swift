import ImageFormat
import Verity

/// One range request: a byte range of one layer blob and the frames whose members lie in it.
struct FetchGroup: Sendable, Equatable {
    var layer: Int
    var range: Range<Int64>
    var frames: [Int]
}

/// How missing frames are coalesced into range requests.
enum FetchPlan {
    /// Groups `frames` (sorted or not) into as few requests as possible: frames stored in the same
    /// layer whose members are contiguous (or identical: deduplicated frames share a member) go
    /// into one request, up to `maxBytes` per request. A single member larger than `maxBytes`
    /// still gets a request of its own.
    static func groups(for frames: [Int], index: FrameIndex, maxBytes: Int64) -> [FetchGroup] {
        let located = frames.compactMap { frame -> (frame: Int, location: FrameIndex.Location)? in
            guard let location = index.frames[frame].location else { return nil }
            return (frame, location)
        }.sorted { ($0.location.layer, $0.location.compressedOffset, $0.frame) < ($1.location.layer, $1.location.compressedOffset, $1.frame) }

        var groups: [FetchGroup] = []
        for (frame, location) in located {
            let start = Int64(location.compressedOffset)
            let end = start + Int64(location.compressedLength)
            if var last = groups.last, last.layer == location.layer, start >= last.range.lowerBound, start <= last.range.upperBound,
               max(end, last.range.upperBound) - last.range.lowerBound <= maxBytes {
                last.range = last.range.lowerBound..<max(end, last.range.upperBound)
                last.frames.append(frame)
                groups[groups.count - 1] = last
            } else {
                groups.append(FetchGroup(layer: location.layer, range: start..<end, frames: [frame]))
            }
        }
        return groups
    }
}
