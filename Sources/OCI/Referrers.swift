import Verity

/// OCI distribution 1.1 referrers: artifacts that name a manifest as their `subject`, found
/// through `GET /v2/<name>/referrers/<digest>` or, on registries without that API, through
/// the tag this returns, which holds an image index of the referrers.
public enum Referrers {
    /// The referrers tag schema: `sha256-<hex>` for subject `sha256:<hex>`.
    public static func fallbackTag(for subject: Digest) -> String {
        "sha256-" + subject.hex
    }

    /// The empty config blob (`{}`) OCI 1.1 artifacts use, and its descriptor.
    public static let emptyConfig: [UInt8] = Array("{}".utf8)
    public static var emptyConfigDescriptor: Descriptor {
        Descriptor(mediaType: .ociEmpty, digest: SHA256Hasher.digest(emptyConfig), size: Int64(emptyConfig.count))
    }

    /// `index` with `referrer` added (replacing an entry with the same digest), for the
    /// fallback tag: the client that pushes a referrer keeps that index current.
    public static func adding(_ referrer: Descriptor, to index: ImageIndex?) -> ImageIndex {
        var manifests = (index?.manifests ?? []).filter { $0.digest != referrer.digest }
        manifests.append(referrer)
        return ImageIndex(mediaType: .ociIndex, manifests: manifests, annotations: index?.annotations)
    }
}
