import Glibc
import Verity

/// What a `RegistryClient` has learnt about its mirrors, so that a mirror can only make pulls
/// faster and never multiply what the upstream registry serves:
///
/// - A mirror that failed (no connection, a timeout, a 5xx, a 429) is skipped for
///   `RegistryOptions.mirrorCooldown`: one request pays for a dead or sick mirror per cooldown,
///   not every request.
/// - A mirror that answered a range request with 200 is a whole-blob pull-through cache
///   (distribution's proxy mode, Harbor's proxy cache) that has not got that blob yet. On such a
///   cold range it streams the whole blob from upstream once to store it, and once more for every
///   request that arrives meanwhile: eight hosts reading a 500 MB chunk blob then cost gigabytes
///   upstream. The answer that said so has already started the mirror's own fetch, so the blob is
///   marked cold on that mirror and its ranges go upstream for `RegistryOptions.wholeBlobProbeInterval`,
///   after which one request looks again: ranges move to the mirror as soon as it answers 206.
///   Every look at a cold blob makes the mirror start streaming it from upstream once more
///   until the answer is dropped (measured: 4-10 MB of socket buffers on loopback), so the
///   interval doubles with each cold answer, up to 16 times the first.
///
/// Both tables are bounded: expired entries are dropped when a table passes `limit`.
struct MirrorHealth: Sendable {
    struct BlobKey: Hashable, Sendable {
        var mirror: String
        var digest: Digest
    }

    private var downUntil: [String: Int64] = [:]
    private var coldUntil: [BlobKey: (until: Int64, interval: Int64)] = [:]
    private let limit = 4096

    /// Whether a request for `digest` (nil for a manifest) should try `mirror` now.
    func shouldTry(_ mirror: String, digest: Digest?, now: Int64) -> Bool {
        if let until = downUntil[mirror], now < until { return false }
        if let digest, let cold = coldUntil[BlobKey(mirror: mirror, digest: digest)], now < cold.until { return false }
        return true
    }

    mutating func markDown(_ mirror: String, for duration: Duration, now: Int64) {
        downUntil[mirror] = now + duration.nanoseconds
    }

    mutating func markCold(_ mirror: String, digest: Digest, for duration: Duration, now: Int64) {
        if coldUntil.count >= limit { coldUntil = coldUntil.filter { $0.value.until + 16 * duration.nanoseconds > now } }
        if coldUntil.count >= limit { coldUntil.removeAll() }
        let key = BlobKey(mirror: mirror, digest: digest)
        let interval = coldUntil[key].map { min($0.interval * 2, 16 * duration.nanoseconds) } ?? duration.nanoseconds
        coldUntil[key] = (now + interval, interval)
    }

    mutating func markWarm(_ mirror: String, digest: Digest) {
        downUntil[mirror] = nil
        coldUntil[BlobKey(mirror: mirror, digest: digest)] = nil
    }

    /// Blobs currently marked cold, for tests and status.
    func coldBlobs(now: Int64) -> Int { coldUntil.values.filter { $0.until > now }.count }
    func isDown(_ mirror: String, now: Int64) -> Bool { (downUntil[mirror] ?? 0) > now }
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
