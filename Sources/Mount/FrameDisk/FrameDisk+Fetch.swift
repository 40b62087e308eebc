import Cache
import Glibc
import ImgfsFormat
import Logging
import PieceFetch
import Threading
import Verity

/// One frame's fetch, as the single-flight table hands it out.
typealias FrameFlight = SingleFlight<Int, VerifiedFrame, MountError>.Ticket

extension FrameDisk {
    /// Makes `frames` (none of them holes) available: returns the verified bytes of every frame
    /// that was fetched or waited for; frames found in the cache or pending for the cache writer
    /// (`isStored`) meanwhile are not in the result.
    /// Throws the first failure, after every owned frame has been completed.
    ///
    /// Owned frames are claimed across processes first (`fetchClaiming`): another mount of the
    /// image on this host may be fetching them into the same cache entry.
    func obtain(_ frames: [Int], purpose: Purpose, deadline given: Double? = nil) throws(MountError) -> [Int: VerifiedFrame] {
        guard !isStopping else { throw .stopped }
        let now = monotonicNow()
        let deadline = given ?? now + options.readTimeout
        if let frame = frames.first, now >= deadline { throw .timedOut(frame: frame, seconds: options.readTimeout) }
        if purpose == .demand, let failed = recentFailure(among: frames, now: now) { throw failed }
        // Background work never waits for someone else's fetch: it would only duplicate it.
        let (owned, waiting) = flights.claim(frames, joining: purpose == .demand) { isStored($0) }
        var results: [Int: VerifiedFrame] = [:]
        var failure: MountError?
        if !owned.isEmpty {
            fetchClaiming(owned, purpose: purpose, deadline: deadline) { flight, result in
                flights.complete(flight, result)
                switch result {
                case .success(let verified): results[verified.index] = verified
                // Background work left it to the other mount fetching it; not a failure.
                case .failure(.claimedByAnotherMount): break
                case .failure(let error): if failure == nil { failure = error }
                }
            }
        }
        // Frames whose background flight this reader joined and that was left to another mount:
        // the reader claims them itself (and so waits for that mount) within its deadline.
        var leftToAnotherMount: [Int] = []
        for flight in waiting {
            switch flights.wait(flight, timeout: deadline - monotonicNow()) {
            case .success(let verified): results[flight.key] = verified
            case .failure(.claimedByAnotherMount): leftToAnotherMount.append(flight.key)
            case .failure(let error): if failure == nil { failure = error }
            case nil: if failure == nil { failure = .timedOut(frame: flight.key, seconds: options.readTimeout) }
            }
        }
        if let failure { throw failure }
        if !leftToAnotherMount.isEmpty {
            results.merge(try obtain(leftToAnotherMount, purpose: purpose, deadline: deadline)) { first, _ in first }
        }
        return results
    }

    /// Fetches owned frames and calls `complete` exactly once for each of them.
    func fetch(_ owned: [FrameFlight], purpose: Purpose, deadline: Double,
               complete: (FrameFlight, Result<VerifiedFrame, MountError>) -> Void) {
        var pending: [Int: FrameFlight] = [:]
        for flight in owned { pending[flight.key] = flight }

        // Another image's cache entry may hold the same bytes: a disk read beats a fetch.
        if let shared {
            let copied = owned.compactMap { shared.verifiedFrame($0.key, of: index) }
            for verified in copied {
                stage(verified, purpose: purpose)
                statistics.sharedFrames.add(1, ordering: .relaxed)
                if let flight = pending.removeValue(forKey: verified.index) { complete(flight, .success(verified)) }
            }
        }

        var lastError: [Int: MountError] = [:]
        var attempts = 0
        // After bytes fail verification the next attempts ask upstream only: a mirror (or a
        // cache in front of the registry) serving bad bytes is bypassed, not retried.
        var upstreamOnly = false
        let retry = BoundedRetry(attempts: options.fetchAttempts, deadline: deadline)
        _ = try? retry.run(isRetryable: { (_: MountError) in !isStopping }) { (attempt) throws(MountError) in
            attempts = attempt
            for request in RangeRequest.plan(pending.keys, index: index, maxBytes: options.maxRequestBytes) {
                fetch(request, purpose: purpose, attempt: attempt, upstreamOnly: upstreamOnly, deadline: deadline) { frame, result in
                    switch result {
                    case .success(let verified):
                        stage(verified, purpose: purpose)
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
            if let frame = pending.keys.first { throw lastError[frame] ?? .timedOut(frame: frame, seconds: options.readTimeout) }
        }
        let until = monotonicNow() + options.failureMemory
        for (frame, flight) in pending {
            let error = lastError[frame] ?? .timedOut(frame: frame, seconds: options.readTimeout)
            recentFailures.withLock { $0[frame] = (until, error) }
            if case .verification = error {
                logger.error("frame failed verification on every attempt; reads of it fail with EIO", metadata: [
                    "frame": "\(frame)", "attempts": "\(attempts)", "error": "\(error)"])
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

    /// Hands a verified frame to the cache writer; the committer then makes it durable. A reader's
    /// frame does not wait behind background ones for room in the writer's queue.
    func stage(_ frame: VerifiedFrame, purpose: Purpose) {
        writer.enqueue(frame, waitForRoom: purpose != .demand)
    }

    /// One range request, decoded while its body arrives (`RangeRequest.Decoding`): `deliver`
    /// is called once per frame of the request, in order, as soon as that frame's result is
    /// known, so a reader waiting for the first frame of a batch does not wait for the last. A
    /// demand fetch's request ends by `deadline`, when its reader must have been answered.
    func fetch(_ request: RangeRequest, purpose: Purpose, attempt: Int, upstreamOnly: Bool = false, deadline: Double,
               deliver: (Int, Result<VerifiedFrame, MountError>) -> Void) {
        let (blob, range) = (request.blob, request.range)
        var decoding = RangeRequest.Decoding(request, index: index)
        func report(_ frame: Int, _ result: Result<VerifiedFrame, PieceError>) {
            deliver(frame, result.mapError { error in
                let (mapped, why): (MountError, String) = switch error {
                case .shortBody: (.fetch(blob: blob, frame: frame, range: range, SourceError(.other, "\(error)")), "")
                case .corrupt(_, _, let reason): (.corruptFrame(blob: blob, frame: frame, reason: reason), "frame does not decompress")
                case .verification(_, let failure): (.verification(blob: blob, frame: frame, expected: failure.expected,
                                                                    actual: failure.actual, attempts: attempt), "frame failed verification")
                }
                if case .fetch = mapped { return mapped }
                statistics.verificationFailures.add(1, ordering: .relaxed)
                logger.error("\(why)", metadata: [
                    "blob": "\(blob)", "frame": "\(frame)", "expected": "\(index.frames[frame].digest)", "attempt": "\(attempt)", "error": "\(error)"])
                return mapped
            })
        }
        do {
            let transferDeadline = purpose == .demand ? deadline : monotonicNow() + options.backgroundTransferTimeout
            // Bytes fetched ahead of readers yield the link to more urgent ones (`TransferClass`),
            // unless a reader has come to wait for these.
            let priority: FetchPriority = purpose == .demand ? .demand : .background(purpose.fetchClass) { [flights] in
                request.frames.contains { flights.isAwaited($0) }
            }
            try statistics.countStreamedRequest(demand: purpose == .demand, foreground: purpose != .prefetch,
                                                received: { decoding.receivedCount }) { () throws(SourceError) in
                try source.blob(blob, range: range, mirrors: !upstreamOnly, deadline: transferDeadline, priority: priority) { chunk in
                    statistics.countBytes(chunk.count, for: purpose.fetchClass)
                    decoding.receive(chunk, deliver: report)
                }
            }
        } catch {
            logger.warning("range request failed", metadata: [
                "blob": "\(blob)", "range": "\(range.lowerBound)..<\(range.upperBound)",
                "frames": "\(request.frames.count)", "delivered": "\(request.frames.count - decoding.undelivered.count)",
                "attempt": "\(attempt)", "error": "\(error)"])
            // Frames that arrived whole before the failure were delivered (verified) already.
            for frame in decoding.undelivered { deliver(frame, .failure(.fetch(blob: blob, frame: frame, range: range, error))) }
            return
        }
        decoding.finish(deliver: report)
    }
}

extension FrameDisk.Purpose {
    var fetchClass: FetchClass {
        switch self {
        case .demand: .demand
        case .readahead: .readahead
        case .profile: .profile
        case .prefetch: .prefetch
        }
    }
}
