import Verity

/// What a cache entry is keyed by: the digest of the image's frame index blob.
///
/// Two images with the same frame index (same disk layout and frame digests) share one
/// entry; any other difference gives a different key and so a different entry.
public struct CacheKey: Hashable, Sendable, CustomStringConvertible {
    public let digest: Digest

    public init(digest: Digest) { self.digest = digest }

    public var description: String { digest.description }
}
