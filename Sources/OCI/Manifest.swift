/// An OCI image manifest (and the Docker v2 schema 2 manifest, which has the same shape).
///
/// Decoding keeps no raw bytes: callers that need the digest hash the bytes they received,
/// never a re-encoding of this value.
public struct Manifest: Hashable, Sendable, Codable {
    public var schemaVersion: Int
    public var mediaType: MediaType?
    public var artifactType: MediaType?
    public var config: Descriptor
    public var layers: [Descriptor]
    /// OCI 1.1: the manifest this one refers to (a span index names its image here).
    public var subject: Descriptor?
    public var annotations: [String: String]?

    public init(mediaType: MediaType? = .ociManifest, artifactType: MediaType? = nil, config: Descriptor, layers: [Descriptor],
                subject: Descriptor? = nil, annotations: [String: String]? = nil) {
        self.schemaVersion = 2
        self.mediaType = mediaType
        self.artifactType = artifactType
        self.config = config
        self.layers = layers
        self.subject = subject
        self.annotations = annotations
    }
}

/// An OCI image index (or Docker manifest list): a manifest of manifests.
public struct ImageIndex: Hashable, Sendable, Codable {
    public var schemaVersion: Int
    public var mediaType: MediaType?
    public var manifests: [Descriptor]
    public var annotations: [String: String]?

    public init(mediaType: MediaType? = .ociIndex, manifests: [Descriptor], annotations: [String: String]? = nil) {
        self.schemaVersion = 2
        self.mediaType = mediaType
        self.manifests = manifests
        self.annotations = annotations
    }
}
