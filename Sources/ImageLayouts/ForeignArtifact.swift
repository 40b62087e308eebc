import OCI

/// What a manifest that is not a VM image imgfs reads is instead, judged from its media types,
/// artifact type and annotations, so that `mount`, `pull` and `convert` can all say "this is a
/// container image" rather than "config media type is application/vnd.oci.image.config.v1+json".
///
/// Only a description for an error message: nothing is decided from it but the wording.
public enum ForeignArtifact: Sendable, Equatable {
    case containerImage
    case nydusImage
    case eStargzImage
    case sociIndex
    case helmChart
    case wasmModule
    case signature
    case attestation
    case singularityImage
    /// An OCI artifact of a type this list does not know (its artifact type or config media type).
    case artifact(String)

    /// What imgfs reads, for the end of every such message.
    public static let whatImgfsReads = "imgfs reads VM disk images in its own format, lume's (OCI and legacy), tart's and KubeVirt containerDisks (a disk file under /disk/)"

    /// The kind of `manifest`, or nil if nothing marks it as one of these (then it is described
    /// by its media types only).
    public static func classify(_ manifest: Manifest) -> ForeignArtifact? {
        let config = manifest.config.mediaType.base
        let layers = manifest.layers.map(\.mediaType.base)
        let layerAnnotations = manifest.layers.flatMap { ($0.annotations ?? [:]).keys }
        let artifactType = manifest.artifactType?.base

        if layers.contains(where: { $0.contains("nydus") }) || layerAnnotations.contains(where: { $0.hasPrefix("containerd.io/snapshot/nydus") }) {
            return .nydusImage
        }
        if layerAnnotations.contains("containerd.io/snapshot/stargz/toc.digest") { return .eStargzImage }
        if artifactType?.hasPrefix("application/vnd.amazon.soci.index") == true || config.hasPrefix("application/vnd.amazon.soci") {
            return .sociIndex
        }
        if config.hasPrefix("application/vnd.cncf.helm.") { return .helmChart }
        if config.hasPrefix("application/vnd.wasm.") || layers.contains(where: { $0.hasPrefix("application/vnd.wasm.") }) { return .wasmModule }
        if layers.contains(where: { $0.hasPrefix("application/vnd.dev.cosign.simplesigning") })
            || artifactType?.hasPrefix("application/vnd.dev.sigstore") == true || artifactType?.hasPrefix("application/vnd.cncf.notary") == true {
            return .signature
        }
        if layers.contains(where: { $0.hasPrefix("application/vnd.in-toto") }) || artifactType?.hasPrefix("application/vnd.in-toto") == true {
            return .attestation
        }
        if config.hasPrefix("application/vnd.sylabs.sif") { return .singularityImage }
        let containerConfigs: Set<String> = ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"]
        let containerLayer = layers.contains { $0.hasPrefix("application/vnd.oci.image.layer.") || $0.hasPrefix("application/vnd.docker.image.rootfs.") }
        if containerConfigs.contains(config) && (containerLayer || layers.isEmpty) { return .containerImage }
        if let artifactType { return .artifact(artifactType) }
        if config != "application/vnd.oci.empty.v1+json", !containerConfigs.contains(config), !config.isEmpty, config != MediaType.octetStream.rawValue {
            return .artifact(config)
        }
        return nil
    }

    public var name: String {
        switch self {
        case .containerImage: "a container image"
        case .nydusImage: "a nydus container image"
        case .eStargzImage: "an eStargz (lazy-pulled) container image"
        case .sociIndex: "a SOCI index of a container image"
        case .helmChart: "a Helm chart"
        case .wasmModule: "a WebAssembly module"
        case .signature: "a signature"
        case .attestation: "an attestation"
        case .singularityImage: "a Singularity/Apptainer image"
        case .artifact(let type): "an OCI artifact of type \(type)"
        }
    }

    /// The reason for `ImageLayoutError.unrecognised`: what the manifest is, what it holds, and
    /// what imgfs reads.
    /// `scannedForDisk`: its layers were read and hold no file under `/disk/` (not a containerDisk).
    public static func describe(_ manifest: Manifest, scannedForDisk: Bool = false) -> String {
        let layers = manifest.layers.map(\.mediaType.base)
        var types: [String] = []
        for type in layers where !types.contains(type) { types.append(type) }
        let holds = "config \(manifest.config.mediaType.base), \(layers.count) layer\(layers.count == 1 ? "" : "s")"
            + (types.isEmpty ? "" : " of \(types.prefix(3).joined(separator: ", "))\(types.count > 3 ? ", …" : "")")
        let what = classify(manifest).map { "it is \($0.name)" + (scannedForDisk && $0 == .containerImage ? " without a disk file under /disk/" : "") }
            ?? "it has no imgfs, lume or tart media types"
        return "\(what) (\(holds)); \(whatImgfsReads)"
    }
}
