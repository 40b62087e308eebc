import Foundation
import Testing
import Codec

/// libdeflate against zlib on realistic frames. Run with `contrib/bench/codec`
/// (IMGFS_BENCH=1); prints a table and is skipped otherwise.
@Suite struct CodecBenchmark {
    static let enabled = ProcessInfo.processInfo.environment["IMGFS_BENCH"] == "1"
    static let frameSize = 1 << 20

    @Test(.enabled(if: enabled)) func libdeflateVersusZlib() throws {
        let megabytes = Int(ProcessInfo.processInfo.environment["IMGFS_BENCH_MIB"] ?? "") ?? 256
        let corpus = Self.corpus(bytes: megabytes << 20)
        let frames = stride(from: 0, to: corpus.count, by: Self.frameSize).map { corpus[$0..<min($0 + Self.frameSize, corpus.count)] }
        let total = Double(corpus.count)
        print("corpus: \(corpus.count >> 20) MiB from /usr/lib and /usr/share, \(frames.count) frames of \(Self.frameSize >> 10) KiB, one thread")
        print("library     level  ratio   compress MB/s  decompress MB/s")

        for level in [1, 6, 9] {
            let compressor = try GzipFrameCompressor(level: level)
            var members = [[UInt8]]()
            let compressTime = try Self.time {
                for frame in frames { members.append(try frame.withUnsafeBytes { bytes in try compressor.compress(bytes) }) }
            }
            let decompressor = try GzipFrameDecompressor()
            var output = [UInt8](repeating: 0, count: Self.frameSize)
            let decompressTime = try Self.time {
                for (member, frame) in zip(members, frames) {
                    try output.withUnsafeMutableBytes { out in
                        try member.withUnsafeBytes { bytes in
                            _ = try decompressor.decompress(bytes, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<frame.count]))
                        }
                    }
                }
            }
            Self.row("libdeflate", level, total, members.reduce(0) { $0 + $1.count }, compressTime, decompressTime)
        }

        for level in [1, 6, 9] {
            let encoder = try GzipStreamEncoder(level: level)
            var layer = [UInt8]()
            let compressTime = try Self.time {
                for frame in frames { layer += try frame.withUnsafeBytes { bytes in try encoder.encodeMember(bytes) } }
            }
            let decoder = try GzipStreamDecoder()
            var decoded = 0
            let decompressTime = try Self.time {
                try decoder.decode(layer) { decoded += $0.count }
                try decoder.finish()
            }
            #expect(decoded == corpus.count)
            Self.row("zlib", level, total, layer.count, compressTime, decompressTime)
        }
    }

    static func row(_ library: String, _ level: Int, _ total: Double, _ compressed: Int, _ compress: Double, _ decompress: Double) {
        let name = library.padding(toLength: 11, withPad: " ", startingAt: 0)
        let line = name + String(format: " %5d  %5.3f  %13.1f  %15.1f", level, Double(compressed) / total, total / compress / 1e6, total / decompress / 1e6)
        print(line)
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Regular files under /usr/lib and /usr/share, concatenated in a stable order: binaries,
    /// libraries, text and data, roughly what a VM disk holds.
    static func corpus(bytes: Int) -> [UInt8] {
        var corpus = [UInt8]()
        corpus.reserveCapacity(bytes)
        for root in ["/usr/lib", "/usr/share"] {
            guard let walker = FileManager.default.enumerator(atPath: root) else { continue }
            var paths = [String]()
            while let path = walker.nextObject() as? String { paths.append(path) }
            for path in paths.sorted() {
                let full = root + "/" + path
                guard let attributes = try? FileManager.default.attributesOfItem(atPath: full),
                      attributes[.type] as? FileAttributeType == .typeRegular,
                      let data = FileManager.default.contents(atPath: full) else { continue }
                corpus.append(contentsOf: data.prefix(bytes - corpus.count))
                if corpus.count >= bytes { return corpus }
            }
        }
        return corpus
    }
}
