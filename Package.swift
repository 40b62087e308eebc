// swift-tools-version:6.0
// imgfs: lazy, verified, cached FUSE mounts of VM images stored in OCI registries.
import PackageDescription

/// `IMGFS_BUILD_COMMIT` from the environment as `-DIMGFS_BUILD_COMMIT="<commit>"`; only hex
/// digits and `-dirty` are let through, since the value becomes C source.
let buildCommitSettings: [CSetting] = {
    guard let commit = Context.environment["IMGFS_BUILD_COMMIT"], !commit.isEmpty,
          commit.allSatisfy({ $0.isHexDigit || "-dirty".contains($0) }) else { return [] }
    return [.define("IMGFS_BUILD_COMMIT", to: "\"\(commit)\"")]
}()

let package = Package(
    name: "imgfs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "imgfs", targets: ["imgfs"]),
        // The parsers, for the fuzz targets in Fuzz/ (a separate package; contrib/fuzz/run).
        .library(name: "OCI", targets: ["OCI"]),
        .library(name: "ImgfsFormat", targets: ["ImgfsFormat"]),
        .library(name: "ImageLayouts", targets: ["ImageLayouts"]),
        .library(name: "Codec", targets: ["Codec"]),
        .library(name: "SpanIndex", targets: ["SpanIndex"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C libraries from Debian, one system-library target each.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CDeflate", pkgConfig: "libdeflate", providers: [.apt(["libdeflate-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),

        // The commit a build was made from (contrib/package/build sets IMGFS_BUILD_COMMIT), as a C
        // define of this target alone, so a new commit recompiles one C file, not every module.
        .target(name: "CBuildInfo", cSettings: buildCommitSettings),

        // Threads, bounded queues, monitors and the one bounded retry for the blocking pipelines.
        .target(name: "Threading"),
        // The one file-system layer: EINTR-retrying syscalls, atomic writes, mkdir -p, directory
        // sync, hole punching and spool files, failing with a typed `IOError` that keeps errno.
        .target(name: "SystemIO"),
        // Digests: SHA-256 and the fs-verity file digest.
        .target(name: "Verity", dependencies: ["COpenSSL"]),
        // Compression codecs: gzip members (libdeflate), streaming gunzip (zlib), Apple framed LZ4.
        .target(name: "Codec", dependencies: ["CDeflate", "CZlib", "CLZ4"]),
        // OCI vocabulary: references, media types, descriptors, manifests.
        .target(name: "OCI", dependencies: ["Verity"]),
        // Registry client over libcurl.
        .target(name: "Fetch", dependencies: ["SystemIO", "Threading", "CCurl", "OCI", "Verity", .product(name: "Logging", package: "swift-log")]),
        // The imgfs image format: frame index, media types, annotations, verified frames.
        .target(name: "ImgfsFormat", dependencies: ["OCI", "Verity", "Codec"]),
        // Every VM image format imgfs reads (imgfs, lume OCI, lume legacy, tart), described
        // format-neutrally as disk segments; manifest builders for lume and tart.
        .target(name: "ImageLayouts", dependencies: ["OCI", "Verity", "ImgfsFormat", "Codec"]),
        // Span indexes: checkpoints that make whole gzip and Apple LZ4 layers seekable, their
        // binary encoding, and spans decoded from them and verified (`VerifiedSpan`).
        .target(name: "SpanIndex", dependencies: ["Codec", "Verity"]),
        // The span index as an OCI artifact beside its image: build it from a lume or tart image's
        // layers, push it as a referrer, find it (referrers API or the sha256-<hex> tag), verify it.
        .target(name: "SpanIndexing", dependencies: ["SpanIndex", "Fetch", "OCI", "ImageLayouts", "Verity"]),
        // The one fetch core of mount, pull and convert: plan range requests, decode what comes back
        // (gzip members into frames, whole foreign layers through SegmentDecoder), verify it.
        .target(name: "PieceFetch", dependencies: ["ImgfsFormat", "ImageLayouts", "Codec", "Verity"]),
        // The local stores: the sparse cache of verified frames, verified whole layers, and the
        // small blobs and tags of mounted images.
        .target(name: "Cache", dependencies: ["SystemIO", "ImgfsFormat", "ImageLayouts", "Verity", .product(name: "Logging", package: "swift-log")]),
        // The libfuse3 low-level daemon, generic over a read-only file tree.
        .target(name: "FuseFS", dependencies: ["CFuse3", .product(name: "Logging", package: "swift-log")]),
        // The push pipeline: read, frame, compress, digest, upload.
        .target(name: "Push", dependencies: ["SystemIO", "Threading", "ImgfsFormat", "Fetch", "Codec", "Verity", "OCI", .product(name: "Logging", package: "swift-log")]),
        // imgfs pull: any format to a sparse, verified, resumable local VM directory.
        .target(name: "Pull", dependencies: ["SystemIO", "PieceFetch", "ImageLayouts", "Threading", "Fetch", "Codec", "Cache", "ImgfsFormat", "OCI", "Verity", .product(name: "Logging", package: "swift-log")]),
        // imgfs convert: registry to registry, streaming, through the push pipeline or the peers' writers.
        .target(name: "Convert", dependencies: ["SystemIO", "PieceFetch", "ImageLayouts", "Push", "Threading", "Fetch", "Codec", "ImgfsFormat", "OCI", "Verity", .product(name: "Logging", package: "swift-log")]),
        // The lazy disk behind a mount: cache lookup, coalesced fetch, verify, serve.
        .target(name: "Mount", dependencies: ["SystemIO", "PieceFetch", "Threading", "FuseFS", "Cache", "Fetch", "ImgfsFormat", "ImageLayouts", "Codec", "OCI", "Verity", "SpanIndex", "SpanIndexing", .product(name: "Logging", package: "swift-log")]),
        // The command line.
        .executableTarget(name: "imgfs", dependencies: [
            "SystemIO", "Push", "Pull", "Convert", "ImageLayouts", "Mount", "Fetch", "OCI", "ImgfsFormat", "Cache", "FuseFS", "Verity", "CBuildInfo",
            "SpanIndex", "SpanIndexing",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Benchmark harness for contrib/bench: limits measured with imgfs's own libraries.
        .executableTarget(name: "imgfs-bench", dependencies: ["ImgfsFormat", "Codec", "Verity", "Threading"]),

        // What several test targets share (seeded generators); no shipping target depends on it.
        .target(name: "TestSupport", path: "Tests/TestSupport"),

        .testTarget(name: "ThreadingTests", dependencies: ["Threading"]),
        .testTarget(name: "SystemIOTests", dependencies: ["SystemIO"]),
        .testTarget(name: "VerityTests", dependencies: ["Verity"]),
        .testTarget(name: "CodecTests", dependencies: ["Codec", "TestSupport"]),
        .testTarget(name: "OCITests", dependencies: ["OCI"]),
        .testTarget(name: "SpanIndexTests", dependencies: ["SpanIndex", "Codec", "Verity", "TestSupport"]),
        .testTarget(name: "FetchTests", dependencies: ["Fetch", "OCI", "Threading", "Verity"], exclude: ["Fixtures"]),
        .testTarget(name: "ImgfsFormatTests", dependencies: ["ImgfsFormat", "OCI", "Verity"]),
        .testTarget(name: "ImageLayoutsTests", dependencies: ["ImageLayouts", "ImgfsFormat", "OCI", "Verity", "Codec"]),
        .testTarget(name: "PieceFetchTests", dependencies: ["PieceFetch", "Threading", "ImgfsFormat", "ImageLayouts", "OCI", "Codec", "Verity"]),
        .testTarget(name: "CacheTests", dependencies: ["Cache", "ImgfsFormat", "Verity"]),
        .testTarget(name: "FuseFSTests", dependencies: ["FuseFS"]),
        .testTarget(name: "MountTests", dependencies: ["Mount", "PieceFetch", "ImageLayouts", "ImgfsFormat", "Cache", "Verity", "Codec", "OCI", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        // The fuzz targets' seed corpora and kept findings (Fuzz/), fed to the parsers.
        .testTarget(name: "FuzzRegressionTests", dependencies: ["OCI", "ImgfsFormat", "ImageLayouts", "Codec", "SpanIndex"]),
        // Black-box tests of the built `imgfs` binary against a real registry and real FUSE mounts.
        .testTarget(name: "IntegrationTests", dependencies: ["OCI", "Verity", "Codec", "Fetch", "SpanIndex", "SpanIndexing", "TestSupport"]),
    ]
)
