import ImgfsFormat
import Verity

// PieceFetch: the one path from fetched blob bytes to verified pieces of a disk, shared by mount,
// pull and convert. A "piece" is what one fetch yields: the gzip members of an imgfs chunk layer
// (one `RangeRequest`, decoded into `VerifiedFrame`s) or a whole foreign layer (`LayerStream`).
// Not `ImgfsFormat` (what an imgfs image is) nor `ImageLayouts` (every format read as a disk layout): this module
// only plans requests, decodes what comes back and verifies it; the caller does the transfer.

/// One range request: a byte range of one chunk layer blob and the frames whose members lie in it.
public struct RangeRequest: Sendable, Equatable {
    /// Position of the layer in `FrameIndex.layers`, and its digest.
    public var layer: Int
    public var blob: Digest
    public var range: Range<Int64>
    /// In blob order; frames that share a (deduplicated) member are adjacent.
    public var frames: [Int]

    /// The one coalescing rule: `frames` (any order; holes are skipped) sorted by layer and member
    /// offset, a member joining the previous request when it is in the same layer, starts at most
    /// `gap` bytes after the request's end (0: contiguous, or identical when deduplicated) and
    /// keeps it within `maxBytes`; a gap's bytes are fetched and ignored, since one request beats
    /// two. A member larger than `maxBytes` still gets a request of its own.
    public static func plan(_ frames: some Sequence<Int>, index: FrameIndex, maxBytes: Int64, gap: Int64 = 0) -> [RangeRequest] {
        let located = frames.compactMap { frame -> (frame: Int, location: FrameIndex.Location)? in
            guard !index.frames[frame].isHole, let location = index.frames[frame].location else { return nil }
            return (frame, location)
        }.sorted { ($0.location.layer, $0.location.compressedOffset, $0.frame) < ($1.location.layer, $1.location.compressedOffset, $1.frame) }

        var requests: [RangeRequest] = []
        for (frame, location) in located {
            let member = location.compressedRange
            if var last = requests.last, last.layer == location.layer, member.lowerBound <= last.range.upperBound + gap,
               max(member.upperBound, last.range.upperBound) - last.range.lowerBound <= maxBytes {
                last.range = last.range.lowerBound..<max(member.upperBound, last.range.upperBound)
                last.frames.append(frame)
                requests[requests.count - 1] = last
            } else {
                requests.append(RangeRequest(layer: location.layer, blob: index.layers[location.layer].digest, range: member, frames: [frame]))
            }
        }
        return requests
    }
}
