import Codec
import ImgfsFormat
import Verity

extension RangeRequest {
    /// Decodes the fetched `bytes` of this request: each member gunzipped to its frame's exact
    /// length (a member deduplicated frames share, once) and verified against the index. `deliver`
    /// is called once per frame, in blob order, as soon as that frame's result is known, so that a
    /// reader waits for its frame, not for the whole range.
    public func decode(_ bytes: [UInt8], index: FrameIndex, deliver: (_ frame: Int, Result<VerifiedFrame, PieceError>) -> Void) {
        guard Int64(bytes.count) == Int64(range.count) else {
            for frame in frames { deliver(frame, .failure(.shortBody(blob: blob, range: range, received: bytes.count))) }
            return
        }
        let decompressor: GzipFrameDecompressor
        do { decompressor = try GzipFrameDecompressor() } catch {
            for frame in frames { deliver(frame, .failure(.corrupt(blob: blob, frame: frame, reason: "\(error)"))) }
            return
        }
        bytes.withUnsafeBytes { raw in
            var last: (location: FrameIndex.Location, size: Int, result: Result<[UInt8], CodecError>)?
            for frame in frames {
                let entry = index.frames[frame], size = index.geometry.length(ofFrame: frame)
                let start = entry.location.map { $0.compressedRange.lowerBound - range.lowerBound } ?? -1
                guard let location = entry.location, start >= 0, start + Int64(location.compressedLength) <= Int64(raw.count) else {
                    deliver(frame, .failure(.corrupt(blob: blob, frame: frame, reason: "its member is not in bytes \(range)")))
                    continue
                }
                if last?.location != location || last?.size != size {
                    let member = UnsafeRawBufferPointer(rebasing: raw[Int(start)..<Int(start) + Int(location.compressedLength)])
                    last = (location, size, Result { () throws(CodecError) in
                        switch location.start {
                        case .member:
                            return try decompressor.decompress(member, expectedSize: size)
                        case .checkpoint(let checkpoint, let skip):
                            guard index.checkpoints.indices.contains(checkpoint) else {
                                throw .checkpointInvalid(reason: "checkpoint \(checkpoint) is not in the index")
                            }
                            let bytes = try index.checkpoints[checkpoint].decode(member, length: Int(skip) + size)
                            return skip == 0 ? bytes : Array(bytes[Int(skip)...])
                        }
                    })
                }
                switch last?.result {
                case .success(let bytes):
                    deliver(frame, Result { () throws(FrameVerificationError) in
                        try VerifiedFrame.verify(frame: frame, bytes: bytes, expectedLength: size, expectedDigest: entry.digest)
                    }.mapError { .verification(blob: blob, $0) })
                case .failure(let error):
                    let what = location.start == .member ? "gzip member" : "span"
                    deliver(frame, .failure(.corrupt(blob: blob, frame: frame, reason: "corrupt \(what) at offset \(location.compressedOffset): \(error)")))
                case nil: break
                }
            }
        }
    }
}

/// Why a frame of a range request did not become a `VerifiedFrame`; names the blob and digests.
public enum PieceError: Error, Equatable, CustomStringConvertible {
    /// The answer to the range request was not the length asked for.
    case shortBody(blob: Digest, range: Range<Int64>, received: Int)
    /// The frame's member does not decompress to the frame's exact length.
    case corrupt(blob: Digest, frame: Int, reason: String)
    /// The decompressed bytes do not hash to the index entry.
    case verification(blob: Digest, FrameVerificationError)

    public var blob: Digest {
        switch self {
        case .shortBody(let blob, _, _), .corrupt(let blob, _, _), .verification(let blob, _): blob
        }
    }

    /// What went wrong, for a caller whose own error names the blob and frame.
    public var reason: String {
        switch self {
        case .shortBody(_, let range, let received): "the registry returned \(received) bytes for bytes \(range.lowerBound)..<\(range.upperBound)"
        case .corrupt(_, _, let reason): reason
        case .verification(_, let error): "\(error)"
        }
    }

    public var description: String {
        if case .corrupt(let blob, let frame, let reason) = self { return "blob \(blob), frame \(frame): \(reason)" }
        return "blob \(blob): \(reason)"
    }
}
