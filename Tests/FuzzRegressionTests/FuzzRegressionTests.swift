import Codec
import ImageLayouts
import ImgfsFormat
import OCI
import SpanIndex
import Testing

/// The seed corpora and kept findings of the fuzz targets (Fuzz/Sources), each fed to the parser
/// its target fuzzes, with the target's invariants: no trap, a typed error or a valid result.
/// Seeds are valid inputs, so for most targets they must parse.
@Suite struct FuzzRegressionTests {
    @Test func reference() throws {
        let inputs = try FuzzInput.all("reference")
        #expect(!inputs.isEmpty)
        for input in inputs {
            let text = String(decoding: input.bytes, as: UTF8.self)
            do throws(ReferenceError) {
                let reference = try Reference(parsing: text)
                #expect(try Reference(parsing: reference.description) == reference, "\(input)")
            } catch {
                #expect(!input.isSeed, "\(input): \(error)")
            }
        }
    }

    @Test func manifest() throws {
        let inputs = try FuzzInput.all("manifest")
        #expect(!inputs.isEmpty)
        var images = 0
        for input in inputs {
            _ = try? ManifestEncoding.decode(ImageIndex.self, from: input.bytes)
            _ = try? ImageConfig(decoding: input.bytes)
            let parts = input.parts(2)
            guard let manifest = try? ManifestEncoding.decode(Manifest.self, from: parts[0]) else { continue }
            #expect(try ManifestEncoding.decode(Manifest.self, from: ManifestEncoding.encode(manifest)) == manifest, "\(input)")
            do throws(FormatError) {
                _ = try ImgfsImage(manifest: manifest, configBytes: parts[1])
                images += 1
            } catch {
                #expect(!input.path.hasPrefix("Fuzz/corpus/manifest/imgfs-"), "\(input): \(error)")
            }
        }
        #expect(images >= 2)
    }

    @Test func frameIndex() throws {
        let inputs = try FuzzInput.all("frame-index")
        #expect(!inputs.isEmpty)
        for input in inputs {
            do throws(FormatError) {
                let index = try FrameIndex(decoding: input.bytes)
                #expect(try FrameIndex(decoding: index.encode()) == index, "\(input)")
            } catch {
                #expect(!input.isSeed, "\(input): \(error)")
            }
        }
    }

    struct TooLarge: Error {}

    @Test func formats() throws {
        let inputs = try FuzzInput.all("formats")
        #expect(!inputs.isEmpty)
        var kinds = Set<ImageKind>()
        for input in inputs {
            let parts = input.parts(3)
            guard let manifest = try? ManifestEncoding.decode(Manifest.self, from: parts[0]) else {
                #expect(!input.isSeed, "\(input): not a manifest")
                continue
            }
            _ = ForeignArtifact.describe(manifest)
            let load: BlobLoader = { descriptor, limit in
                let blob = descriptor == manifest.config ? parts[1] : parts[2]
                guard blob.count <= limit else { throw TooLarge() }
                return blob
            }
            do throws(ImageLayoutError) {
                let image = try VMImageReader.read(manifest, load: load, loadRange: { _, range in
                    guard range.lowerBound >= 0, range.upperBound <= Int64(parts[2].count) else { throw TooLarge() }
                    return Array(parts[2][Int(range.lowerBound)..<Int(range.upperBound)])
                })
                kinds.insert(image.kind)
                let layout = image.layout
                for offset in [0, layout.diskSize / 2, layout.diskSize &- 1, layout.diskSize] {
                    _ = layout.segment(containing: offset)
                }
                #expect(layout.segments(overlapping: 0..<layout.diskSize).count == layout.segments.count, "\(input)")
            } catch {
                // Seeds of foreign artifacts are meant to be refused, with the classification's words.
                #expect(!input.isSeed || ForeignArtifact.classify(manifest) != nil, "\(input): \(error)")
            }
        }
        #expect(kinds == Set(ImageKind.allCases))
    }

    @Test func appleLZ4() throws {
        let inputs = try FuzzInput.all("lz4")
        #expect(!inputs.isEmpty)
        for input in inputs {
            guard let first = input.bytes.first else { continue }
            let decoder = AppleLZ4Decoder(maximumBlockSize: 1 << 20)
            let piece = Int(first) + 1
            var decoded = 0
            do throws(CodecError) {
                var rest = input.bytes.dropFirst()
                while !rest.isEmpty {
                    try decoder.decode(Array(rest.prefix(piece))) { decoded += $0.count }
                    rest = rest.dropFirst(piece)
                }
                try decoder.finish()
            } catch {
                #expect(!input.isSeed, "\(input): \(error)")
            }
        }
    }

    @Test func gzip() throws {
        let inputs = try FuzzInput.all("gzip")
        #expect(!inputs.isEmpty)
        for input in inputs where input.bytes.count >= 3 {
            let bytes = input.bytes
            do throws(CodecError) {
                if bytes[0] & 1 == 0 {
                    let expectedSize = Int(bytes[1]) | Int(bytes[2]) << 8
                    let output = try GzipFrameDecompressor().decompress(Array(bytes[3...]), expectedSize: expectedSize)
                    #expect(output.count == expectedSize, "\(input)")
                } else {
                    let decoder = try GzipStreamDecoder(outputBufferSize: 4096)
                    let piece = Int(bytes[1]) + 1
                    var rest = bytes[2...]
                    while !rest.isEmpty {
                        try decoder.decode(Array(rest.prefix(piece))) { _ in }
                        rest = rest.dropFirst(piece)
                    }
                    try decoder.finish()
                }
            } catch {
                #expect(!input.isSeed, "\(input): \(error)")
            }
        }
    }

    @Test func spanIndex() throws {
        let inputs = try FuzzInput.all("span-index")
        #expect(inputs.count >= 3)
        for input in inputs {
            do throws(SpanIndexError) {
                let index = try SpanIndex(decoding: input.bytes)
                #expect(try SpanIndex(decoding: index.encoded()) == index, "\(input)")
                for layer in index.layers {
                    for span in 0..<min(layer.spanCount, 4) where layer.compressedRange(ofSpan: span).count <= 1 << 16 {
                        // Zeros are not the span's bytes: a typed error, never a trap.
                        #expect(throws: SpanIndexError.self) {
                            try layer.decodeSpan(span, compressed: [UInt8](repeating: 0, count: Int(layer.compressedRange(ofSpan: span).count)))
                        }
                    }
                }
            } catch {
                #expect(!input.isSeed, "\(input): \(error)")
            }
        }
    }

    @Test func tar() throws {
        let inputs = try FuzzInput.all("tar")
        #expect(!inputs.isEmpty)
        for input in inputs {
            guard let first = input.bytes.first else { continue }
            let reader = TarStreamReader()
            var member: TarMember?
            var next: UInt64 = 0
            do {
                let piece = Int(first) + 1
                var rest = input.bytes.dropFirst()
                while !rest.isEmpty {
                    try Array(rest.prefix(piece)).withUnsafeBytes { raw in
                        try reader.feed(raw) { event in
                            switch event {
                            case .member(let m):
                                #expect(member == nil, "\(input)")
                                member = m
                                next = 0
                            case .data(let offset, let bytes):
                                #expect(member.map { offset >= next && offset + UInt64(bytes.count) <= $0.size } == true, "\(input)")
                                next = offset + UInt64(bytes.count)
                            case .memberEnd:
                                member = nil
                            }
                        }
                    }
                    rest = rest.dropFirst(piece)
                }
                try reader.finish()
            } catch {
                #expect(!input.isSeed, "\(input): \(error)")
            }
        }
    }
}
