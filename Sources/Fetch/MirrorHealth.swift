import Glibc
import Verity

/// What a `RegistryClient` has learnt about its mirrors, so that a mirror can only make pulls
/// faster and never multiply what the upstream registry serves:
///
/// - A mirror that failed (no connection, a timeout, a 5xx, a 429) is skipped for
///   `RegistryOptions.mirrorCooldown`: one request pays for a dead or sick mirror per cooldown,
///   not every request.
/// - Before the first range of a blob goes to a mirror, a HEAD asks whether the mirror serves
///   ranges of it (`Accept-Ranges: bytes`). A whole-blob pull-through cache (distribution's
///   proxy mode, Harbor's proxy cache) that has not got the blob answers without it, and that
///   HEAD has started its one fetch of the blob from upstream. Measured with contrib/bench/fleet
///   (8 hosts, docker-registry 2.8 in proxy mode): a cold *range* makes the proxy stream the
///   whole blob from upstream for that request alone (4-10 MB each before an aborted answer is
///   dropped, the whole blob otherwise), and hosts that read their ranges upstream while it fills
///   take the upstream bandwidth the mirror needs to fill: 7-10x one host's bytes upstream. So
///   ranges of a blob the mirror is filling wait for it, looked at with one HEAD per
///   `wholeBlobProbeInterval` per process, for at most `wholeBlobWait`; past that they go
///   upstream (a mirror too slow to fill must not make reads slower than upstream).
/// - A mirror that answers a range with 200 anyway is treated as filling that blob again.
///
/// The table is bounded: it is emptied of everything but warm blobs when it passes `limit`.
struct MirrorHealth: Sendable {
    struct BlobKey: Hashable, Sendable {
        var mirror: String
        var digest: Digest
    }

    enum BlobState: Sendable {
        /// A HEAD is in flight from some thread; others wait for its answer.
        case probing(since: Int64)
        /// Serves ranges of this blob.
        case warm
        /// Filling since `since`; the next HEAD is due at `nextProbe`.
        case cold(since: Int64, nextProbe: Int64)
        /// Does not have the blob and will not fetch it (404): upstream until `until`.
        case absent(until: Int64)
    }

    /// What a range request should do now.
    enum Action: Equatable {
        case useMirror
        case probe
        case wait
        case skip
    }

    private var downUntil: [String: Int64] = [:]
    private var blobs: [BlobKey: BlobState] = [:]
    private let limit = 4096

    func isUsable(_ mirror: String, now: Int64) -> Bool {
        guard let until = downUntil[mirror] else { return true }
        return now >= until
    }

    /// Decides (and claims a probe when one is due) for a range of `digest` on `mirror`.
    mutating func action(_ mirror: String, digest: Digest, now: Int64, probeInterval: Int64, maxWait: Int64) -> Action {
        let key = BlobKey(mirror: mirror, digest: digest)
        switch blobs[key] {
        case nil:
            if blobs.count >= limit { blobs = blobs.filter { if case .warm = $0.value { true } else { false } } }
            if blobs.count >= limit { blobs.removeAll() }
            blobs[key] = .probing(since: now)
            return .probe
        case .warm:
            return .useMirror
        case .probing(let since):
            // The first range of a blob is in flight: it finds out whether the mirror serves it.
            return now - since > maxWait ? .skip : .wait
        case .cold(let since, let nextProbe):
            if now >= nextProbe {
                blobs[key] = .cold(since: since, nextProbe: now + probeInterval)
                return .probe
            }
            return now - since > maxWait ? .skip : .wait
        case .absent(let until):
            if now >= until { blobs[key] = .probing(since: now); return .probe }
            return .skip
        }
    }

    mutating func probed(_ mirror: String, digest: Digest, ranges: Bool, now: Int64, probeInterval: Int64) {
        let key = BlobKey(mirror: mirror, digest: digest)
        if ranges { blobs[key] = .warm; return }
        let since: Int64 = switch blobs[key] {
        case .cold(let since, _): since
        case .probing(let since): since
        default: now
        }
        blobs[key] = .cold(since: since, nextProbe: now + probeInterval)
    }

    mutating func absent(_ mirror: String, digest: Digest, for duration: Int64, now: Int64) {
        blobs[BlobKey(mirror: mirror, digest: digest)] = .absent(until: now + duration)
    }

    /// A HEAD that failed: the mirror is down; the blob is looked at afresh when it is back.
    mutating func markDown(_ mirror: String, for duration: Duration, now: Int64) {
        downUntil[mirror] = now + duration.nanoseconds
        blobs = blobs.filter { key, state in
            if key.mirror != mirror { return true }
            if case .warm = state { return true }
            return false
        }
    }
}

/// Thrown from a mirror's body callback: it answered a range with the whole blob (200).
struct MirrorServesWholeBlob: Error {}

func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
