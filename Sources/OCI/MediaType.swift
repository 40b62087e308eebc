/// An OCI media type. A thin wrapper so that media types are never confused with other strings;
/// RawRepresentable's Codable codes it as the bare string.
public struct MediaType: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
}

extension MediaType {
    public static let ociManifest: MediaType = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex: MediaType = "application/vnd.oci.image.index.v1+json"
    public static let ociConfig: MediaType = "application/vnd.oci.image.config.v1+json"
    public static let ociLayerGzip: MediaType = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let dockerManifest: MediaType = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList: MediaType = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let octetStream: MediaType = "application/octet-stream"
    /// OCI 1.1's empty config (`{}`), for artifacts that have nothing to configure.
    public static let ociEmpty: MediaType = "application/vnd.oci.empty.v1+json"

    /// The manifest media types a registry client accepts, for the `Accept` header.
    public static let acceptedManifests: [MediaType] = [.ociManifest, .ociIndex, .dockerManifest, .dockerManifestList]
}
