import ImageLayouts

/// A whole foreign layer (lume, tart) as one piece: its compressed bytes streamed through
/// `SegmentDecoder` as they arrive, every promise of the manifest checked at the end.
public enum LayerStream {
    /// `chunks` transfers the blob, handing each chunk of compressed bytes to the feed it is given;
    /// decoded bytes go to `output` with their disk offset, unverified until this returns. Throws
    /// what `chunks` throws, or a `SegmentError` (`.output` wraps what `output` threw).
    public static func decode(_ segment: Segment, chunks: (_ feed: (UnsafeRawBufferPointer) throws -> Void) throws -> Void,
                              output: (_ diskOffset: UInt64, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws {
        let decoder = try SegmentDecoder(segment: segment)
        try withoutActuallyEscaping(output) { output in try chunks { buffer in try decoder.feed(buffer, output: output) } }
        try decoder.finish()
    }
}
