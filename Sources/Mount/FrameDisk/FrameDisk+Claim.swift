import Cache
import ImgfsFormat
import Threading

extension FrameDisk {
    /// `fetch`, with each owned frame claimed first in the cache entry across processes
    /// (`FrameCache.claim`), so that N mounts of one image on this host sharing one cache root
    /// fetch each frame once between them. Calls `complete` exactly once for each flight.
    ///
    /// 1. Every owned frame's claim is tried without waiting. A frame another process stored is
    ///    served from the data file (verified); a frame it is fetching now is set aside.
    /// 2. The claimed frames are fetched in one go, each claim released once the cache writer has
    ///    put its verified bytes in the data file (the other processes wait on it), or once its
    ///    fetch has failed.
    /// 3. Only then, holding no claim, a reader waits for the frames set aside, until its
    ///    deadline, one at a time; each one claimed is either found stored or fetched at once
    ///    (a process that died mid-fetch released its claim with its descriptors). Background
    ///    work does not wait: it leaves them to the other process (`claimedByAnotherMount`).
    ///
    /// Never waiting while holding a claim is what rules out two processes each holding one
    /// frame the other waits for. A claim that cannot be taken at all (a file system without
    /// OFD locks) is logged and the frame fetched, as before claims existed.
    func fetchClaiming(_ owned: [FrameFlight], purpose: Purpose, deadline: Double,
                       complete: (FrameFlight, Result<VerifiedFrame, MountError>) -> Void) {
        var claimed: [FrameFlight] = []
        var busy: [FrameFlight] = []
        for flight in owned {
            switch claim(flight.key, waitUntil: nil) {
            case .owned: claimed.append(flight)
            case .storedByAnotherProcess(let verified): complete(flight, .success(verified))
            case .busy: busy.append(flight)
            }
        }
        fetchReleasingClaims(claimed, purpose: purpose, deadline: deadline, complete: complete)
        guard !busy.isEmpty else { return }
        guard purpose == .demand else {
            for flight in busy { complete(flight, .failure(.claimedByAnotherMount(frame: flight.key))) }
            return
        }
        for flight in busy {
            switch claim(flight.key, waitUntil: deadline) {
            case .owned: fetchReleasingClaims([flight], purpose: purpose, deadline: deadline, complete: complete)
            case .storedByAnotherProcess(let verified): complete(flight, .success(verified))
            case .busy: complete(flight, .failure(isStopping ? .stopped : .timedOut(frame: flight.key, seconds: options.readTimeout)))
            }
        }
    }

    /// `FrameCache.claim`, counted; a cache error is logged and treated as owned (fetch it).
    private func claim(_ frame: Int, waitUntil deadline: Double?) -> FrameClaim {
        do {
            let result = try cache.claim(frame, waitUntil: deadline, giveUp: { isStopping })
            if case .storedByAnotherProcess = result { statistics.framesFromOtherMounts.add(1, ordering: .relaxed) }
            return result
        } catch {
            logger.debug("could not claim a frame in the shared cache entry; fetching it unclaimed", metadata: [
                "frame": "\(frame)", "error": "\(error)"])
            return .owned
        }
    }

    private func fetchReleasingClaims(_ flights: [FrameFlight], purpose: Purpose, deadline: Double,
                                      complete: (FrameFlight, Result<VerifiedFrame, MountError>) -> Void) {
        guard !flights.isEmpty else { return }
        // A fetched frame's claim is released by the cache writer once its bytes are in the data
        // file (`CacheWriter`), so the other processes find it stored; a failure releases it here.
        fetch(flights, purpose: purpose, deadline: deadline) { flight, result in
            if case .failure = result { cache.releaseClaim(flight.key) }
            complete(flight, result)
        }
    }
}
