import Verity

/// An OCI content descriptor: what a manifest says about one blob.
public struct Descriptor: Hashable, Sendable, Codable {
    public var mediaType: MediaType
    public var digest: Digest
    public var size: Int64
    public var annotations: [String: String]?
    public var platform: Platform?
    /// OCI 1.1: in a referrers list, the artifact type of the manifest described.
    public var artifactType: MediaType?

    public init(mediaType: MediaType, digest: Digest, size: Int64, annotations: [String: String]? = nil, platform: Platform? = nil, artifactType: MediaType? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
        self.platform = platform
        self.artifactType = artifactType
    }

    /// The `org.opencontainers.image.title` annotation, the file name a layer stands for.
    public var title: String? { annotations?[AnnotationKey.title] }
}

/// Annotation keys from the OCI image spec.
public enum AnnotationKey {
    public static let title = "org.opencontainers.image.title"
    public static let created = "org.opencontainers.image.created"
}
