import Codec
import Verity

/// Builds the `LayerSpans` of one layer from its compressed bytes, read once: decodes them,
/// records checkpoints, hashes every span, and checks the blob against its digest and size
/// (and the decoded bytes against the size and SHA-256 the manifest gives, when it does).
/// Not thread-safe.
public final class LayerSpanBuilder {
    public let layerDigest: Digest
    public let compressedSize: UInt64
    public let codec: SpanCodec
    public let spanSize: Int
    private let expectedUncompressedSize: UInt64?
    private let expectedUncompressedDigest: Digest?

    private enum Decoder {
        case gzip(GzipCheckpointBuilder)
        case appleLZ4(AppleLZ4CheckpointBuilder)
    }

    private let decoder: Decoder
    private let windows: WindowCodec
    private let blobHasher = SHA256Hasher()
    private let spanHasher = SHA256Hasher()
    /// nil when the caller hashes the disk's frames itself (a containerDisk's disk file, which
    /// starts after tar headers): the layer's own frames would be hashed for nothing.
    private let frames: FrameDigester?
    private let uncompressedHasher: SHA256Hasher?
    private var fed: UInt64 = 0
    /// Checkpoints whose spans are closed (digest known).
    private var spans: [SpanEntry] = []
    /// The checkpoint of the span being hashed.
    private var open: SpanEntry?

    public init(layer: Digest, compressedSize: UInt64, codec: SpanCodec, spanSize: Int,
                uncompressedSize: UInt64? = nil, uncompressedDigest: Digest? = nil, hashesFrames: Bool = true) throws(SpanIndexError) {
        guard SpanIndex.spanSizes.contains(spanSize) else { throw .invalidSpanSize(spanSize, allowed: SpanIndex.spanSizes) }
        layerDigest = layer
        self.compressedSize = compressedSize
        self.codec = codec
        self.spanSize = spanSize
        expectedUncompressedSize = uncompressedSize
        expectedUncompressedDigest = uncompressedDigest
        uncompressedHasher = uncompressedDigest == nil ? nil : SHA256Hasher()
        frames = hashesFrames ? FrameDigester(frameSize: spanSize) : nil
        do throws(CodecError) {
            windows = try WindowCodec()
            switch codec {
            case .gzip: decoder = .gzip(try GzipCheckpointBuilder(spanSize: spanSize))
            case .appleLZ4: decoder = .appleLZ4(try AppleLZ4CheckpointBuilder(spanSize: spanSize))
            }
        } catch {
            throw .codec(layer: layer, span: nil, error)
        }
    }

    /// The next compressed bytes of the layer. `output`, if given, sees the decoded bytes,
    /// unverified until `finish` returns.
    public func feed(_ compressed: UnsafeRawBufferPointer, output: ((UnsafeRawBufferPointer) throws -> Void)? = nil) throws(SpanIndexError) {
        fed += UInt64(compressed.count)
        guard fed <= compressedSize else {
            throw .layerMismatch(layer: layerDigest, actualDigest: blobHasher.finalize(), expectedSize: compressedSize, actualSize: fed)
        }
        blobHasher.update(compressed)
        let spanHasher = self.spanHasher
        let uncompressedHasher = self.uncompressedHasher
        let frames = self.frames
        let sink: (UnsafeRawBufferPointer) throws -> Void = { bytes in
            spanHasher.update(bytes)
            frames?.update(bytes)
            uncompressedHasher?.update(bytes)
            try output?(bytes)
        }
        var failure: SpanIndexError?
        let checkpoint: (SpanCheckpoint) throws -> Void = { [unowned self] point in
            do throws(SpanIndexError) { try self.begin(point) } catch { failure = error; throw error }
        }
        do throws(CodecError) {
            switch decoder {
            case .gzip(let builder): try builder.decode(compressed, output: sink, checkpoint: checkpoint)
            case .appleLZ4(let builder): try builder.decode(compressed, output: sink, checkpoint: checkpoint)
            }
        } catch {
            if let failure { throw failure }
            throw .codec(layer: layerDigest, span: open.map { _ in spans.count }, error)
        }
    }

    public func feed(_ compressed: [UInt8]) throws(SpanIndexError) {
        let outcome: Result<Void, SpanIndexError> = compressed.withUnsafeBytes { bytes in
            do throws(SpanIndexError) { try feed(bytes); return .success(()) } catch { return .failure(error) }
        }
        try outcome.get()
    }

    private func begin(_ point: SpanCheckpoint) throws(SpanIndexError) {
        close()
        let window: [UInt8]
        do throws(CodecError) { window = try windows.compress(point.window) } catch { throw .codec(layer: layerDigest, span: spans.count, error) }
        open = SpanEntry(checkpoint: PackedCheckpoint(stream: codec.stream, uncompressedOffset: point.uncompressedOffset,
                                                      compressedOffset: point.compressedOffset, bitCount: point.bitCount,
                                                      isMemberStart: point.isMemberStart, windowLength: point.window.count, compressedWindow: window),
                         digest: Digest(sha256Bytes: [UInt8](repeating: 0, count: 32)))
    }

    private func close() {
        guard var entry = open else { return }
        entry.digest = spanHasher.finalize()
        spanHasher.reset()
        spans.append(entry)
        open = nil
    }

    /// Ends the layer: checks the stream ended cleanly, the blob's digest and size, and the
    /// decoded size and digest when known; returns the layer's spans.
    public func finish() throws(SpanIndexError) -> LayerSpans {
        let uncompressedSize: UInt64
        do throws(CodecError) {
            switch decoder {
            case .gzip(let builder):
                try builder.finish()
                uncompressedSize = builder.uncompressedSize
            case .appleLZ4(let builder):
                try builder.finish()
                uncompressedSize = builder.uncompressedSize
            }
        } catch {
            throw .codec(layer: layerDigest, span: nil, error)
        }
        let actual = blobHasher.finalize()
        guard actual == layerDigest, fed == compressedSize else {
            throw .layerMismatch(layer: layerDigest, actualDigest: actual, expectedSize: compressedSize, actualSize: fed)
        }
        if let expectedUncompressedSize, expectedUncompressedSize != uncompressedSize {
            throw .uncompressedMismatch(layer: layerDigest, reason: "decodes to \(uncompressedSize) bytes, the manifest says \(expectedUncompressedSize)")
        }
        if let expectedUncompressedDigest, let uncompressedHasher {
            let digest = uncompressedHasher.finalize()
            guard digest == expectedUncompressedDigest else {
                throw .uncompressedMismatch(layer: layerDigest, reason: "decodes to bytes with digest \(digest), the manifest says \(expectedUncompressedDigest)")
            }
        }
        // An empty layer has no spans: the checkpoint at 0 would point past the data.
        if uncompressedSize == 0 { open = nil } else { close() }
        return LayerSpans(layerDigest: layerDigest, compressedSize: compressedSize, uncompressedSize: uncompressedSize, codec: codec,
                          spanSize: UInt32(spanSize), spans: spans, frameDigests: frames?.finish() ?? [])
    }
}

extension LayerSpans {
    /// `--verify`: how this (untrusted) entry differs from `rebuilt`, built from the layer with
    /// the same span size; nil when they agree on every checkpoint, window and span digest.
    public func firstDifference(from rebuilt: LayerSpans) -> SpanIndexError? {
        func wrong(_ span: Int?, _ reason: String) -> SpanIndexError { .indexDisagrees(layer: layerDigest, span: span, reason: reason) }
        guard codec == rebuilt.codec else { return wrong(nil, "codec \(codec), the layer is \(rebuilt.codec)") }
        guard compressedSize == rebuilt.compressedSize, uncompressedSize == rebuilt.uncompressedSize else {
            return wrong(nil, "sizes \(compressedSize)/\(uncompressedSize), the layer's are \(rebuilt.compressedSize)/\(rebuilt.uncompressedSize)")
        }
        for (index, (mineEntry, theirsEntry)) in zip(spans, rebuilt.spans).enumerated() {
            let (mine, theirs) = (mineEntry.checkpoint, theirsEntry.checkpoint)
            guard mine.uncompressedOffset == theirs.uncompressedOffset, mine.compressedOffset == theirs.compressedOffset,
                  mine.bitCount == theirs.bitCount, mine.isMemberStart == theirs.isMemberStart else {
                return wrong(index, "checkpoint \(mine.uncompressedOffset)/\(mine.compressedOffset)+\(mine.bitCount) bits, the layer's is \(theirs.uncompressedOffset)/\(theirs.compressedOffset)+\(theirs.bitCount) bits")
            }
            guard mineEntry.digest == theirsEntry.digest else {
                return wrong(index, "span digest \(mineEntry.digest), the layer's bytes have \(theirsEntry.digest)")
            }
            // Windows may be compressed differently by another libdeflate; compare them decoded.
            if mine.compressedWindow != theirs.compressedWindow {
                let codec = try? WindowCodec()
                let a = try? codec?.decompress(mine.compressedWindow, length: mine.windowLength)
                let b = try? codec?.decompress(theirs.compressedWindow, length: theirs.windowLength)
                guard a != nil, a == b else { return wrong(index, "the checkpoint's window differs from the layer's") }
            }
        }
        guard spans.count == rebuilt.spans.count else { return wrong(nil, "\(spans.count) spans, the layer has \(rebuilt.spans.count)") }
        guard frameOrigin == rebuilt.frameOrigin, frameLength == rebuilt.frameLength else {
            return wrong(nil, "disk bytes at \(frameOrigin)+\(frameLength), the layer's are at \(rebuilt.frameOrigin)+\(rebuilt.frameLength)")
        }
        for (frame, (mine, theirs)) in zip(frameDigests, rebuilt.frameDigests).enumerated() where mine != theirs {
            return wrong(nil, "frame \(frame) (bytes \(UInt64(frame) * UInt64(spanSize))...) has digest \(mine), the layer's bytes have \(theirs)")
        }
        guard frameDigests.count == rebuilt.frameDigests.count else {
            return wrong(nil, "\(frameDigests.count) frame digests, the layer has \(rebuilt.frameDigests.count) frames")
        }
        return nil
    }
}
