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
        let now = monotonicNow()
        let deadline = now + options.readTimeout
        if purpose == .demand, let failed = recentFailure(among: frames, now: now) { throw failed }
        // Background work never waits for someone else's fetch: it would only duplicate it.
        let (owned, waiting) = flights.claim(frames, joining: purpose == .demand) { cache.contains($0) }
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
        for flight in waiting {
            switch flights.wait(flight, timeout: deadline - monotonicNow()) {
            case .success(let verified): results[flight.frame] = verified
            case .failure(let error): if failure == nil { failure = error }
            case nil: if failure == nil { failure = .timedOut(frame: flight.frame, seconds: options.readTimeout) }
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
            for verified in copied {
                stage(verified)
                statistics.sharedFrames.add(1, ordering: .relaxed)
                if let flight = pending.removeValue(forKey: verified.index) { complete(flight, .success(verified)) }
            }
        }

        var lastError: [Int: MountError] = [:]
        var attempt = 0
        // After bytes fail verification the next attempts ask upstream only: a mirror (or a
        // cache in front of the registry) serving bad bytes is bypassed, not retried.
        var upstreamOnly = false
        while !pending.isEmpty {
            attempt += 1
            let attemptStart = monotonicNow()
            for group in FetchPlan.groups(for: Array(pending.keys), index: index, maxBytes: options.maxRequestBytes) {
                // Each frame is staged and handed to its waiters as soon as it is verified, not
                // after the whole range: a sequential reader waits for one frame, not for sixteen.
                fetchGroup(group, purpose: purpose, attempt: attempt, upstreamOnly: upstreamOnly, deadline: deadline) { frame, result in
                    switch result {
                    case .success(let verified):
                        stage(verified)
                        statistics.framesFetched.add(1, ordering: .relaxed)
                        switch purpose {
                        case .demand: break
                        case .readahead: statistics.readaheadFrames.add(1, ordering: .relaxed)
                        case .profile: statistics.profileFrames.add(1, ordering: .relaxed)
                        case .prefetch: statistics.prefetchedFrames.add(1, ordering: .relaxed)
                        }
                        if let flight = pending.removeValue(forKey: frame) { complete(flight, .success(verified)) }
                    case .failure(let error):
                        lastError[frame] = error
                        switch error {
                        case .verification, .corruptFrame: upstreamOnly = true
                        default: break
                        }
                    }
                }
            }
            // Another attempt only if one as long as this one still ends before the deadline: a
            // registry that stalls mid-body costs one attempt's timeouts, not one per attempt, and
            // the reader gets EIO within its read timeout.
            let pause = 0.1 * Double(attempt)
            if pending.isEmpty || attempt >= options.fetchAttempts || isStopping
                || monotonicNow() + pause + (monotonicNow() - attemptStart) >= deadline { break }
            // A short pause before trying again, so that a registry hiccup has time to pass.
            usleep(UInt32(pause * 1_000_000))
        }
        if !pending.isEmpty {
            let until = monotonicNow() + options.failureMemory
            recentFailures.withLock { failures in
                for frame in pending.keys {
                    failures[frame] = (until, lastError[frame] ?? .timedOut(frame: frame, seconds: options.readTimeout))
                }
            }
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

    /// The error of a frame of `frames` that failed every attempt less than `failureMemory` ago.
    func recentFailure(among frames: [Int], now: Double) -> MountError? {
        recentFailures.withLock { failures in
            guard !failures.isEmpty else { return nil }
            failures = failures.filter { $0.value.until > now }
            for frame in frames { if let failure = failures[frame] { return failure.error } }
            return nil
        }
    }

    /// Writes a verified frame to the cache; the committer makes it durable. A cache that cannot
    /// be written (disk full) costs refetches later, not this read: the frame is still served
    /// from memory.
    func stage(_ frame: VerifiedFrame) {
        do { try cache.stage(frame) } catch {
            logger.warning("could not store a frame in the cache", metadata: ["frame": "\(frame.index)", "error": "\(error)"])
        }
    }

    /// One range request, then each member decompressed to its exact length and verified; `deliver`
    /// is called once per frame of the group, in order, as soon as that frame's result is known.
    /// A demand fetch's request ends by `deadline`, when its reader must have been answered.
    func fetchGroup(_ group: FetchGroup, purpose: Purpose, attempt: Int, upstreamOnly: Bool = false, deadline: Double,
                    deliver: (Int, Result<VerifiedFrame, MountError>) -> Void) {
        let layer = index.layers[group.layer]
        statistics.requestStarted()
        if purpose == .demand { statistics.demandRequestsInFlight.add(1, ordering: .relaxed) }
        defer {
            statistics.requestsInFlight.subtract(1, ordering: .relaxed)
            if purpose == .demand { statistics.demandRequestsInFlight.subtract(1, ordering: .relaxed) }
        }
        let bytes: [UInt8]
        let started = monotonicNow()
        defer { statistics.fetchFinished(seconds: monotonicNow() - started) }
        do {
            let transferDeadline = purpose == .demand ? deadline : monotonicNow() + options.backgroundTransferTimeout
            bytes = try source.blob(layer.digest, range: group.range, mirrors: !upstreamOnly, deadline: transferDeadline)
        } catch {
            logger.warning("range request failed", metadata: [
                "blob": "\(layer.digest)", "range": "\(group.range.lowerBound)..<\(group.range.upperBound)",
                "frames": "\(group.frames.count)", "attempt": "\(attempt)", "error": "\(error)"])
            for frame in group.frames { deliver(frame, .failure(.fetch(blob: layer.digest, frame: frame, range: group.range, error))) }
            return
        }
        statistics.rangeRequests.add(1, ordering: .relaxed)
        statistics.bytesFetched.add(Int64(bytes.count), ordering: .relaxed)
        guard Int64(bytes.count) == Int64(group.range.count) else {
            let error = SourceError(.other, "the registry returned \(bytes.count) bytes for a range of \(group.range.count)")
            for frame in group.frames { deliver(frame, .failure(.fetch(blob: layer.digest, frame: frame, range: group.range, error))) }
            return
        }
        let decompressor: GzipFrameDecompressor
        do { decompressor = try GzipFrameDecompressor() } catch {
            for frame in group.frames { deliver(frame, .failure(.corruptFrame(blob: layer.digest, frame: frame, reason: "\(error)"))) }
            return
        }
        bytes.withUnsafeBytes { raw in
            for frame in group.frames {
                deliver(frame, decode(frame, from: raw, group: group, blob: layer.digest, decompressor: decompressor, attempt: attempt))
            }
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
