import Testing
@testable import ImageLayouts
import OCI
import Verity

/// Issue 11: a manifest imgfs cannot read is named for what it is, in one message shared by
/// mount, pull and convert.
struct ForeignArtifactTests {
    static let digest = SHA256Hasher.digest(Array("x".utf8))

    static func manifest(config: MediaType, layers: [MediaType], layerAnnotations: [String: String]? = nil,
                         artifactType: MediaType? = nil) -> Manifest {
        Manifest(artifactType: artifactType, config: Descriptor(mediaType: config, digest: digest, size: 2),
                 layers: layers.map { Descriptor(mediaType: $0, digest: digest, size: 3, annotations: layerAnnotations) })
    }

    @Test func eachKindIsRecognisedFromItsMediaTypesAndAnnotations() {
        let cases: [(Manifest, ForeignArtifact?)] = [
            (Self.manifest(config: "application/vnd.oci.image.config.v1+json", layers: ["application/vnd.oci.image.layer.v1.tar+gzip"]), .containerImage),
            (Self.manifest(config: "application/vnd.docker.container.image.v1+json", layers: ["application/vnd.docker.image.rootfs.diff.tar.gzip"]), .containerImage),
            (Self.manifest(config: "application/vnd.oci.image.config.v1+json", layers: ["application/vnd.oci.image.layer.nydus.blob.v1"]), .nydusImage),
            (Self.manifest(config: "application/vnd.oci.image.config.v1+json", layers: ["application/vnd.oci.image.layer.v1.tar+gzip"],
                           layerAnnotations: ["containerd.io/snapshot/stargz/toc.digest": "sha256:00"]), .eStargzImage),
            (Self.manifest(config: "application/vnd.cncf.helm.config.v1+json", layers: ["application/vnd.cncf.helm.chart.content.v1.tar+gzip"]), .helmChart),
            (Self.manifest(config: "application/vnd.wasm.config.v0+json", layers: ["application/vnd.wasm.content.layer.v1+wasm"]), .wasmModule),
            (Self.manifest(config: "application/vnd.oci.image.config.v1+json", layers: ["application/vnd.dev.cosign.simplesigning.v1+json"]), .signature),
            (Self.manifest(config: "application/vnd.oci.empty.v1+json", layers: ["application/vnd.oci.image.layer.v1.tar"],
                           artifactType: "application/vnd.amazon.soci.index.v1+json"), .sociIndex),
            (Self.manifest(config: "application/vnd.oci.empty.v1+json", layers: ["text/plain"], artifactType: "application/vnd.example.thing"),
             .artifact("application/vnd.example.thing")),
            (Self.manifest(config: "application/octet-stream", layers: ["application/octet-stream"]), nil),
        ]
        for (manifest, expected) in cases {
            #expect(ForeignArtifact.classify(manifest) == expected, "\(manifest.config.mediaType) \(manifest.layers.map(\.mediaType))")
        }
    }

    @Test func readingAContainerImageSaysWhatItIsAndWhatImgfsReads() throws {
        let layer = try ContainerDiskTests.layer([("etc/motd", Array("hi\n".utf8))])
        let other = try ContainerDiskTests.layer([("bin/", [])])
        let (manifest, load, _) = ContainerDiskTests.image([layer, other])
        #expect(throws: ImageLayoutError.unrecognised(reason:
            "it is a container image without a disk file under /disk/ (config application/vnd.oci.image.config.v1+json, 2 layers of application/vnd.oci.image.layer.v1.tar+gzip); "
            + "imgfs reads VM disk images in its own format, lume's (OCI and legacy), tart's and KubeVirt containerDisks (a disk file under /disk/)")) {
            try VMImageReader.read(manifest, load: LayoutTests.noLoader, loadRange: load)
        }
    }
}
