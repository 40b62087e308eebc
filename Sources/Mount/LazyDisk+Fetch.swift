import Cache
import Codec
import Glibc
import ImageFormat
import Logging
import Verity

extension LazyDisk {
    /// Makes `frames` (none of them holes) available: returns the verified bytes of every frame
    /// that was fetched or waited for; frames found in the cache meanwhile are not in the result.
    /// Throws the first failure, after every owned frame has been completed.
    func obtain(_ frames: [Int], purpose: Purpose) throws(MountError) -> [Int: VerifiedFrame] {
        guard !isStopping else { throw .stopped }
        let deadline = monotonicNow() + options.readTimeout
        let (owned, waiting) = flights.claim(frames) { cache.contains($0) }
        var results: [Int: VerifiedFrame] = [:]
        var failure: MountError?
        if !owned.isEmpty {
            fetch(owned, purpose: purpose, deadline: deadline) { flight, result in
                flights.complete(flight, result)
                switch result {
                case .success(let verified): results[verified.index] = verified
                case .failure(let error): if failure == nil { failure = error }
                }
            }
        }
        // Background work never waits for someone else's fetch: it would only duplicate it.
        if purpose == .demand {
            for flight in waiting {
                switch flights.wait(flight, timeout: deadline - monotonicNow()) {
                case .success(let verified): results[flight.frame] = verified
                case .failure(let error): if failure == nil { failure = error }
                }
            }
        }
        if let failure { throw failure }
        return results
    }

    /// Fetches owned frames and calls `complete` exactly once for each of them.
    func fetch(_ owned: [FlightTable.Flight], purpose: Purpose, deadline: Double,
               complete: (FlightTable.Flight, Result<VerifiedFrame, MountError>) -> Void) {
        var pending: [Int: FlightTable.Flight] = [:]
        for flight in owned { pending[flight.frame] = flight }

        // Another image's cache entry may hold the same bytes: a disk read beats a fetch.
        if let shared {
            var copied: [VerifiedFrame] = []
            for flight in owned {
                let entry = index.frames[flight.frame]
                let length = geometry.length(ofFrame: flight.frame)
                guard shared.contains(entry.digest), let bytes = shared.bytes(for: entry.digest, length: length),
                      let verified = try? VerifiedFrame.verify(frame: flight.frame, bytes: bytes, expectedLength: length, expectedDigest: entry.digest)
                else { continue }
                copied.append(verified)
            }
            if !copied.isEmpty {
                store(copied)
                statistics.sharedFrames.add(Int64(copied.count), ordering: .relaxed)
                for verified in copied {
                    if let flight = pending.removeValue(forKey: verified.index) { complete(flight, .success(verified)) }
                }
            }
        }

        var lastError: [Int: MountError] = [:]
        var attempt = 0
        while !pending.isEmpty {
            attempt += 1
            for group in FetchPlan.groups(for: Array(pending.keys), index: index, maxBytes: options.maxRequestBytes) {
                let results = fetchGroup(group, purpose: purpose, attempt: attempt)
                var verified: [VerifiedFrame] = []
                for (frame, result) in results {
                    switch result {
                    case .success(let frame): verified.append(frame)
                    case .failure(let error): lastError[frame] = error
                    }
                }
                store(verified)
                statistics.framesFetched.add(Int64(verified.count), ordering: .relaxed)
                switch purpose {
                case .demand: break
                case .readahead: statistics.readaheadFrames.add(Int64(verified.count), ordering: .relaxed)
                case .prefetch: statistics.prefetchedFrames.add(Int64(verified.count), ordering: .relaxed)
                }
                for frame in verified {
                    if let flight = pending.removeValue(forKey: frame.index) { complete(flight, .success(frame)) }
                }
            }
            if pending.isEmpty || attempt >= options.fetchAttempts || monotonicNow() >= deadline || isStopping { break }
            // A short pause before trying again, so that a registry hiccup has time to pass.
            usleep(UInt32(100_000 * attempt))
        }
        for (frame, flight) in pending {
            let error = lastError[frame] ?? .timedOut(frame: frame, seconds: options.readTimeout)
            if case .verification = error {
                logger.error("frame failed verification on every attempt; reads of it fail with EIO", metadata: [
                    "frame": "\(frame)", "attempts": "\(attempt)", "error": "\(error)"])
            }
            complete(flight, .failure(error))
        }
    }

    /// Writes verified frames to the cache. A cache that cannot be written (disk full) costs
    /// refetches later, not this read: the frames are still served from memory.
    func store(_ frames: [VerifiedFrame]) {
        guard !frames.isEmpty else { return }
        do { try cache.store(contentsOf: frames) } catch {
            logger.warning("could not store frames in the cache", metadata: ["frames": "\(frames.count)", "error": "\(error)"])
        }
    }

    /// One range request, then each member decompressed to its exact length and verified.
    func fetchGroup(_ group: FetchGroup, purpose: Purpose, attempt: Int) -> [(Int, Result<VerifiedFrame, MountError>)] {
        let layer = index.layers[group.layer]
        statistics.requestStarted()
        if purpose == .demand { statistics.demandRequestsInFlight.add(1, ordering: .relaxed) }
        defer {
            statistics.requestsInFlight.subtract(1, ordering: .relaxed)
            if purpose == .demand { statistics.demandRequestsInFlight.subtract(1, ordering: .relaxed) }
        }
        let bytes: [UInt8]
        do {
            bytes = try source.blob(layer.digest, range: group.range)
        } catch {
            logger.warning("range request failed", metadata: [
                "blob": "\(layer.digest)", "range": "\(group.range.lowerBound)..<\(group.range.upperBound)",
                "frames": "\(group.frames.count)", "attempt": "\(attempt)", "error": "\(error)"])
            return group.frames.map { ($0, .failure(.fetch(blob: layer.digest, frame: $0, range: group.range, error))) }
        }
        statistics.rangeRequests.add(1, ordering: .relaxed)
        statistics.bytesFetched.add(Int64(bytes.count), ordering: .relaxed)
        guard Int64(bytes.count) == Int64(group.range.count) else {
            let error = SourceError(.other, "the registry returned \(bytes.count) bytes for a range of \(group.range.count)")
            return group.frames.map { ($0, .failure(.fetch(blob: layer.digest, frame: $0, range: group.range, error))) }
        }
        let decompressor: GzipFrameDecompressor
        do { decompressor = try GzipFrameDecompressor() } catch {
            return group.frames.map { ($0, .failure(.corruptFrame(blob: layer.digest, frame: $0, reason: "\(error)"))) }
        }
        return bytes.withUnsafeBytes { raw in
            group.frames.map { frame in (frame, decode(frame, from: raw, group: group, blob: layer.digest, decompressor: decompressor, attempt: attempt)) }
        }
    }

    private func decode(_ frame: Int, from raw: UnsafeRawBufferPointer, group: FetchGroup, blob: Digest,
                        decompressor: GzipFrameDecompressor, attempt: Int) -> Result<VerifiedFrame, MountError> {
        let entry = index.frames[frame]
        guard let location = entry.location else {
            return .failure(.corruptFrame(blob: blob, frame: frame, reason: "the frame is not stored"))
        }
        let start = Int(Int64(location.compressedOffset) - group.range.lowerBound)
        let member = UnsafeRawBufferPointer(rebasing: raw[start..<start + Int(location.compressedLength)])
        let length = geometry.length(ofFrame: frame)
        let bytes: [UInt8]
        do { bytes = try decompressor.decompress(member, expectedSize: length) } catch {
            statistics.verificationFailures.add(1, ordering: .relaxed)
            logger.error("frame does not decompress", metadata: [
                "blob": "\(blob)", "frame": "\(frame)", "expected": "\(entry.digest)", "attempt": "\(attempt)", "error": "\(error)"])
            return .failure(.corruptFrame(blob: blob, frame: frame, reason: "\(error)"))
        }
        do {
            return .success(try VerifiedFrame.verify(frame: frame, bytes: bytes, expectedLength: length, expectedDigest: entry.digest))
        } catch {
            statistics.verificationFailures.add(1, ordering: .relaxed)
            logger.error("frame failed verification", metadata: [
                "blob": "\(blob)", "frame": "\(frame)", "expected": "\(error.expected)",
                "actual": "\(error.actual.map { "\($0)" } ?? "length \(error.actualLength)")", "attempt": "\(attempt)"])
            return .failure(.verification(blob: blob, frame: frame, expected: error.expected, actual: error.actual, attempts: attempt))
        }
    }
}
