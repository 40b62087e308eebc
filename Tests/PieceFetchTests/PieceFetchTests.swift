import Codec
import Glibc
import ImgfsFormat
import PieceFetch
import Testing
import Threading
import Verity

/// Frames of 64 KiB in chunk layers built by hand: `members` says which member each frame uses
/// (a frame naming an earlier frame's member is deduplicated onto it; nil is a hole), `layerOf`
/// which layer a new member goes into, `gapAfter` padding bytes after a member (a gap, as in an
/// index whose members do not follow each other).
struct Fixture {
    static let frameSize = 64 * 1024
    var index: FrameIndex
    var layers: [[UInt8]]
    var disk: [[UInt8]]

    init(frames: Int, sharing: [Int: Int] = [:], holes: Set<Int> = [], layerOf: (Int) -> Int = { _ in .zero }, gapAfter: [Int: Int] = [:]) throws {
        let compressor = try GzipFrameCompressor(level: 1)
        var layers: [[UInt8]] = [], entries: [FrameIndex.FrameEntry] = [], disk: [[UInt8]] = []
        for frame in 0..<frames {
            let bytes = holes.contains(frame) ? [UInt8](repeating: 0, count: Self.frameSize)
                : (0..<Self.frameSize).map { UInt8(truncatingIfNeeded: $0 % 2 == 0 ? frame &* 31 &+ $0 / 7 : frame) }
            let content = sharing[frame].map { disk[$0] } ?? bytes
            disk.append(content)
            let digest = SHA256Hasher.digest(content)
            if holes.contains(frame) { entries.append(.init(digest: digest, isHole: true, location: nil)); continue }
            if let original = sharing[frame] {
                entries.append(.init(digest: digest, isHole: false, location: entries[original].location))
                continue
            }
            let layer = layerOf(frame)
            while layers.count <= layer { layers.append([]) }
            let member = try compressor.compress(content)
            entries.append(.init(digest: digest, isHole: false, location: .init(layer: layer, compressedOffset: UInt64(layers[layer].count), compressedLength: UInt32(member.count))))
            layers[layer] += member + [UInt8](repeating: 0, count: gapAfter[frame] ?? 0)
        }
        let geometry = try DiskGeometry(diskSize: UInt64(frames * Self.frameSize), frameSize: Self.frameSize)
        index = FrameIndex(geometry: geometry, layout: .multiLayer, layers: layers.map { .init(digest: SHA256Hasher.digest($0), compressedSize: Int64($0.count)) }, frames: entries)
        self.layers = layers
        self.disk = disk
    }

    func bytes(of request: RangeRequest) -> [UInt8] { Array(layers[request.layer][Int(request.range.lowerBound)..<Int(request.range.upperBound)]) }

    func decode(_ request: RangeRequest, bytes: [UInt8]? = nil) throws -> [(frame: Int, result: Result<VerifiedFrame, PieceError>)] {
        var results: [(frame: Int, result: Result<VerifiedFrame, PieceError>)] = []
        request.decode(bytes ?? self.bytes(of: request), index: index) { results.append(($0, $1)) }
        return results
    }
}

@Suite struct RangeRequestPlanTests {
    @Test func contiguousMembersOfOneLayerAreOneRequestInBlobOrderWhateverTheOrderAsked() throws {
        let fixture = try Fixture(frames: 6, holes: [4])
        let requests = RangeRequest.plan([5, 3, 0, 1, 2, 4], index: fixture.index, maxBytes: 1 << 30)
        #expect(requests.count == 1)
        #expect(requests.first?.frames == [0, 1, 2, 3, 5], "holes are never fetched")
        #expect(requests.first?.range == 0..<fixture.index.layers[0].compressedSize)
        #expect(requests.first?.blob == fixture.index.layers[0].digest)
    }

    @Test func requestsAreCappedSplitAtLayersAndAnOversizedMemberStillGetsOne() throws {
        let fixture = try Fixture(frames: 8, layerOf: { $0 / 4 })
        #expect(RangeRequest.plan(0..<8, index: fixture.index, maxBytes: 1 << 30).map(\.layer) == [0, 1])
        let one = try #require(fixture.index.frames[0].location).compressedLength
        let capped = RangeRequest.plan(0..<4, index: fixture.index, maxBytes: Int64(one) * 2 + 10)
        #expect(capped.count >= 2)
        #expect(capped.allSatisfy { $0.range.count <= Int64(one) * 2 + 10 })
        #expect(capped.flatMap(\.frames) == [0, 1, 2, 3])
        let tiny = RangeRequest.plan([0, 1], index: fixture.index, maxBytes: 1)
        #expect(tiny.map(\.frames) == [[0], [1]])
    }

    @Test func aGapIsBridgedOnlyWhenAllowed() throws {
        let fixture = try Fixture(frames: 3, gapAfter: [0: 1000])
        let strict = RangeRequest.plan([0, 1, 2], index: fixture.index, maxBytes: 1 << 30)
        #expect(strict.map(\.frames) == [[0], [1, 2]], "members 1000 bytes apart are not contiguous")
        let bridged = RangeRequest.plan([0, 1, 2], index: fixture.index, maxBytes: 1 << 30, gap: 1000)
        #expect(bridged.map(\.frames) == [[0, 1, 2]])
        #expect(RangeRequest.plan([0, 1, 2], index: fixture.index, maxBytes: 1 << 30, gap: 999).count == 2)
    }

    @Test func framesSharingAMemberGoInOneRequestSideBySide() throws {
        let fixture = try Fixture(frames: 4, sharing: [3: 0])
        let requests = RangeRequest.plan([3, 2, 0], index: fixture.index, maxBytes: 1 << 30)
        #expect(requests.map(\.frames) == [[0, 3], [2]], "frame 1 is not asked for, so 2 does not follow 0's member")
    }
}

@Suite struct RangeRequestDecodeTests {
    @Test func everyFrameOfAGoodRangeVerifiesInBlobOrder() throws {
        let fixture = try Fixture(frames: 4)
        let request = try #require(RangeRequest.plan(0..<4, index: fixture.index, maxBytes: 1 << 30).first)
        let results = try fixture.decode(request)
        #expect(results.map(\.frame) == [0, 1, 2, 3])
        for (frame, result) in results { #expect(try result.get().bytes == fixture.disk[frame]) }
    }

    @Test func aCorruptMemberFailsItsFrameOnlyAndNamesTheBlob() throws {
        let fixture = try Fixture(frames: 3)
        let request = try #require(RangeRequest.plan(0..<3, index: fixture.index, maxBytes: 1 << 30).first)
        var bytes = fixture.bytes(of: request)
        let member = try #require(fixture.index.frames[1].location).compressedRange
        for i in Int(member.lowerBound) + 20..<Int(member.lowerBound) + 60 { bytes[i] ^= 0x5a }
        let results = try fixture.decode(request, bytes: bytes)
        #expect(results.map(\.frame) == [0, 1, 2])
        #expect((try? results[0].result.get()) != nil)
        #expect((try? results[2].result.get()) != nil)
        guard case .failure(let error) = results[1].result else { Issue.record("a corrupt member verified"); return }
        switch error {
        case .corrupt(let blob, let frame, _):
            #expect(blob == fixture.index.layers[0].digest && frame == 1)
        case .verification(let blob, let failure):
            #expect(blob == fixture.index.layers[0].digest && failure.frame == 1)
        default: Issue.record("unexpected \(error)")
        }
        #expect("\(error)".contains("\(fixture.index.layers[0].digest)"))
    }

    @Test func bytesThatDecompressButDoNotMatchTheIndexFailVerificationNamingBlobAndDigests() throws {
        var fixture = try Fixture(frames: 2)
        let claimed = SHA256Hasher.digest([1, 2, 3])
        fixture.index.frames[1].digest = claimed
        let request = try #require(RangeRequest.plan(0..<2, index: fixture.index, maxBytes: 1 << 30).first)
        let results = try fixture.decode(request)
        #expect((try? results[0].result.get()) != nil)
        guard case .failure(.verification(let blob, let failure)) = results[1].result else { Issue.record("\(results[1].result)"); return }
        #expect(blob == fixture.index.layers[0].digest)
        #expect(failure.frame == 1 && failure.expected == claimed && failure.actual == SHA256Hasher.digest(fixture.disk[1]))
        let message = "\(PieceError.verification(blob: blob, failure))"
        #expect(message.contains("\(blob)") && message.contains("\(claimed)") && message.contains("\(SHA256Hasher.digest(fixture.disk[1]))"))
    }

    @Test func aMemberDeduplicatedFramesShareServesEachOfThemVerified() throws {
        let fixture = try Fixture(frames: 3, sharing: [2: 0])
        let request = try #require(RangeRequest.plan([0, 2], index: fixture.index, maxBytes: 1 << 30).first)
        #expect(request.frames == [0, 2])
        #expect(request.range == (try #require(fixture.index.frames[0].location)).compressedRange)
        let results = try fixture.decode(request)
        #expect(results.map(\.frame) == [0, 2])
        #expect(results.map { try? $0.result.get().index } == [0, 2])
        #expect(try results[1].result.get().bytes == fixture.disk[0])
        // Corrupt, the shared member fails both frames (each with its own frame number).
        var bytes = fixture.bytes(of: request)
        for i in 20..<60 { bytes[i] ^= 0x33 }
        #expect(try fixture.decode(request, bytes: bytes).compactMap { if case .failure = $0.result { $0.frame } else { nil } } == [0, 2])
    }

    @Test func aShortAnswerFailsEveryFrameOfTheRequest() throws {
        let fixture = try Fixture(frames: 2)
        let request = try #require(RangeRequest.plan(0..<2, index: fixture.index, maxBytes: 1 << 30).first)
        let results = try fixture.decode(request, bytes: Array(fixture.bytes(of: request).dropLast()))
        #expect(results.count == 2)
        for (_, result) in results {
            guard case .failure(.shortBody(let blob, _, let received)) = result else { Issue.record("\(result)"); continue }
            #expect(blob == fixture.index.layers[0].digest)
            #expect(received == request.range.count - 1)
        }
    }

    @Test(arguments: [1, 7, 4096])
    func aStreamedBodyDeliversEachFrameOnceItsMemberIsIn(chunkSize: Int) throws {
        let fixture = try Fixture(frames: 5, sharing: [3: 2], gapAfter: [0: 100])
        let request = try #require(RangeRequest.plan(0..<5, index: fixture.index, maxBytes: 1 << 30, gap: 200).first)
        #expect(request.frames == [0, 1, 2, 3, 4])
        let body = fixture.bytes(of: request)
        var decoding = RangeRequest.Decoding(request, index: fixture.index)
        var delivered: [(frame: Int, at: Int)] = []
        var offset = 0
        while offset < body.count {
            let end = min(body.count, offset + chunkSize)
            body[offset..<end].withUnsafeBytes { chunk in
                decoding.receive(chunk) { frame, result in
                    #expect((try? result.get())?.bytes == fixture.disk[frame])
                    delivered.append((frame, end))
                }
            }
            offset = end
        }
        decoding.finish { frame, _ in Issue.record("frame \(frame) was left to finish") }
        #expect(delivered.map(\.frame) == [0, 1, 2, 3, 4])
        // Each frame came with the chunk that completed its member, not with the end of the body.
        for (frame, at) in delivered {
            let memberEnd = Int(try #require(fixture.index.frames[frame].location).compressedRange.upperBound - request.range.lowerBound)
            #expect(at >= memberEnd && at < memberEnd + chunkSize, "frame \(frame) delivered at \(at), member ends at \(memberEnd)")
        }
    }

    @Test func aBodyThatStopsShortDeliversTheFramesThatArrivedAndFailsTheRest() throws {
        let fixture = try Fixture(frames: 3)
        let request = try #require(RangeRequest.plan(0..<3, index: fixture.index, maxBytes: 1 << 30).first)
        let secondEnd = Int(try #require(fixture.index.frames[1].location).compressedRange.upperBound - request.range.lowerBound)
        var decoding = RangeRequest.Decoding(request, index: fixture.index)
        var results: [(frame: Int, result: Result<VerifiedFrame, PieceError>)] = []
        // More than the range holds is ignored: the source caps it, and so does the decoder.
        fixture.bytes(of: request)[..<(secondEnd + 10)].withUnsafeBytes { decoding.receive($0) { results.append(($0, $1)) } }
        #expect(results.map(\.frame) == [0, 1] && decoding.undelivered == [2])
        #expect(results.allSatisfy { (try? $0.result.get()) != nil })
        decoding.finish { results.append(($0, $1)) }
        guard case .failure(.shortBody(_, _, let received)) = results.last?.result else { Issue.record("\(String(describing: results.last))"); return }
        #expect(results.last?.frame == 2 && received == secondEnd + 10)
    }

    @Test func inDiskOrderDeliversStoredFramesInOrderAcrossWindowsAndLayers() throws {
        // Layer 1 holds the even frames and layer 0 the odd ones, so blob order is not disk order.
        let fixture = try Fixture(frames: 9, sharing: [7: 1], holes: [4], layerOf: { $0 % 2 == 0 ? 1 : 0 })
        var delivered: [Int] = [], requests = 0
        try RangeRequest.inDiskOrder(fixture.index, maxBytes: Int64(3 * Fixture.frameSize),
                                     fetch: { (request) throws(PieceError) in requests += 1; return fixture.bytes(of: request) },
                                     failed: { _, error in error }) { (frame) throws(PieceError) in
            #expect(frame.bytes == fixture.disk[frame.index])
            delivered.append(frame.index)
        }
        #expect(delivered == [0, 1, 2, 3, 5, 6, 7, 8])
        #expect(requests >= 3, "windows of three frames")
    }
}

@Suite struct BoundedRetryTests {
    struct Failure: Error, Equatable { var retryable = true }

    @Test func stopsAfterTheAttemptsAndRethrowsTheLastError() {
        var calls = 0, hooks: [(Int, Bool)] = []
        let retry = BoundedRetry(attempts: 3) { _ in .zero }
        #expect(throws: Failure.self) {
            try retry.run(failed: { (_: Failure, attempt, again) in hooks.append((attempt, again)) }) { (attempt) throws(Failure) in
                calls += 1
                #expect(attempt == calls)
                throw Failure()
            }
        }
        #expect(calls == 3)
        #expect(hooks.map(\.0) == [1, 2, 3] && hooks.map(\.1) == [true, true, false])
    }

    @Test func returnsOnceAnAttemptSucceedsAndStopsAtAnErrorThatIsNotRetryable() throws {
        let retry = BoundedRetry(attempts: 5) { _ in .zero }
        var calls = 0
        #expect(try retry.run { (attempt) throws(Failure) in
            calls += 1
            if attempt < 2 { throw Failure() }
            return attempt
        } == 2)
        calls = 0
        #expect(throws: Failure(retryable: false)) {
            try retry.run(isRetryable: { (error: Failure) in error.retryable }) { (_) throws(Failure) in
                calls += 1
                throw Failure(retryable: false)
            }
        }
        #expect(calls == 1)
    }

    @Test func thePauseGrowsAndNoAttemptStartsThatWouldEndPastTheDeadline() {
        let start = monotonicNow()
        var calls = 0
        // Attempts of 0.2 s with pauses of 0.1 s, 0.2 s...: after the first (ending at 0.2 s) a
        // second would end at about 0.5 s, past a deadline of 0.45 s, so it never starts.
        let bounded = BoundedRetry(attempts: 10, deadline: start + 0.45)
        #expect(throws: Failure.self) {
            try bounded.run { (_) throws(Failure) in
                calls += 1
                usleep(200_000)
                throw Failure()
            }
        }
        #expect(calls == 1)
        #expect(monotonicNow() - start < 0.45)
        #expect((1...3).map(BoundedRetry(attempts: 3).pause) == [.milliseconds(100), .milliseconds(200), .milliseconds(300)])
        let unbounded = BoundedRetry(attempts: 3, deadline: start + 60) { _ in .milliseconds(10) }
        calls = 0
        #expect(throws: Failure.self) { try unbounded.run { (_) throws(Failure) in calls += 1; throw Failure() } }
        #expect(calls == 3)
    }
}
