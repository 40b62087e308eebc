import Codec
import ImgfsFormat
import Verity

extension RangeRequest {
    /// Decodes the fetched `bytes` of this request: each member gunzipped to its frame's exact
    /// length (a member deduplicated frames share, once) and verified against the index. `deliver`
    /// is called once per frame, in blob order.
    public func decode(_ bytes: [UInt8], index: FrameIndex, deliver: (_ frame: Int, Result<VerifiedFrame, PieceError>) -> Void) {
        guard Int64(bytes.count) == Int64(range.count) else {
            for frame in frames { deliver(frame, .failure(.shortBody(blob: blob, range: range, received: bytes.count))) }
            return
        }
        var decoding = Decoding(self, index: index)
        bytes.withUnsafeBytes { decoding.receive($0, deliver: deliver) }
        decoding.finish(deliver: deliver)
    }

    /// A request's body decoded while it arrives: each frame is decompressed, verified and
    /// delivered as soon as its member's last byte is in, so that a reader waits for its own
    /// frame rather than for the whole range, and decoding overlaps the rest of the transfer
    /// (the socket keeps receiving meanwhile). Every frame of the request is delivered exactly
    /// once over `receive` and `finish`, in blob order.
    public struct Decoding {
        public let request: RangeRequest
        let index: FrameIndex
        private var received: [UInt8] = []
        /// Position in `request.frames` of the next frame to deliver.
        private var next = 0
        /// The last member decoded: deduplicated frames that share it are adjacent.
        private var last: (location: FrameIndex.Location, size: Int, result: Result<[UInt8], CodecError>)?
        private var decompressor: Result<GzipFrameDecompressor, CodecError>?

        public init(_ request: RangeRequest, index: FrameIndex) {
            self.request = request
            self.index = index
            received.reserveCapacity(Int(request.range.count))
        }

        /// Bytes of the body received so far.
        public var receivedCount: Int { received.count }
        /// Frames not delivered yet, in blob order.
        public var undelivered: ArraySlice<Int> { request.frames[next...] }

        /// Takes the next bytes of the body (never more than the range holds: the rest is
        /// ignored) and delivers every frame whose member they complete.
        public mutating func receive(_ chunk: UnsafeRawBufferPointer, deliver: (_ frame: Int, Result<VerifiedFrame, PieceError>) -> Void) {
            received.append(contentsOf: chunk.prefix(Int(request.range.count) - received.count))
            while next < request.frames.count {
                let frame = request.frames[next]
                guard let location = index.frames[frame].location else {
                    next += 1
                    deliver(frame, .failure(.corrupt(blob: request.blob, frame: frame, reason: "it has no member in the index")))
                    continue
                }
                let start = location.compressedRange.lowerBound - request.range.lowerBound
                let end = start + Int64(location.compressedLength)
                guard start >= 0, end <= Int64(request.range.count) else {
                    next += 1
                    deliver(frame, .failure(.corrupt(blob: request.blob, frame: frame, reason: "its member is not in bytes \(request.range)")))
                    continue
                }
                guard end <= Int64(received.count) else { return }
                next += 1
                deliver(frame, decode(frame, location: location, member: Int(start)..<Int(end)))
            }
        }

        /// The body ended: frames whose member did not arrive fail as a short body.
        public mutating func finish(deliver: (_ frame: Int, Result<VerifiedFrame, PieceError>) -> Void) {
            for frame in undelivered {
                deliver(frame, .failure(.shortBody(blob: request.blob, range: request.range, received: received.count)))
            }
            next = request.frames.count
        }

        private mutating func decode(_ frame: Int, location: FrameIndex.Location, member: Range<Int>) -> Result<VerifiedFrame, PieceError> {
            let entry = index.frames[frame], size = index.geometry.length(ofFrame: frame)
            if last?.location != location || last?.size != size {
                let decoded = received.withUnsafeBytes { raw in
                    decompress(UnsafeRawBufferPointer(rebasing: raw[member]), location: location, size: size)
                }
                last = (location, size, decoded)
            }
            switch last!.result {
            case .success(let bytes):
                return Result { () throws(FrameVerificationError) in
                    try VerifiedFrame.verify(frame: frame, bytes: bytes, expectedLength: size, expectedDigest: entry.digest)
                }.mapError { .verification(blob: request.blob, $0) }
            case .failure(let error):
                let what = location.start == .member ? "gzip member" : "span"
                return .failure(.corrupt(blob: request.blob, frame: frame, reason: "corrupt \(what) at offset \(location.compressedOffset): \(error)"))
            }
        }

        private mutating func decompress(_ member: UnsafeRawBufferPointer, location: FrameIndex.Location, size: Int) -> Result<[UInt8], CodecError> {
            Result { () throws(CodecError) in
                switch location.start {
                case .member:
                    if decompressor == nil { decompressor = Result { () throws(CodecError) in try GzipFrameDecompressor() } }
                    return try decompressor!.get().decompress(member, expectedSize: size)
                case .checkpoint(let checkpoint, let skip):
                    guard index.checkpoints.indices.contains(checkpoint) else {
                        throw .checkpointInvalid(reason: "checkpoint \(checkpoint) is not in the index")
                    }
                    let bytes = try index.checkpoints[checkpoint].decode(member, length: Int(skip) + size)
                    return skip == 0 ? bytes : Array(bytes[Int(skip)...])
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
