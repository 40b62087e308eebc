// swift-tools-version:6.0
// libFuzzer targets for imgfs's parsers of untrusted bytes (docs/FUZZING.md). Built and run by
// contrib/fuzz/run with -sanitize=fuzzer; not part of the root package's build.
import PackageDescription

// A path dependency's identity is its directory's name, which differs between checkouts.
let root = Context.packageDirectory.split(separator: "/").dropLast().last.map { $0.lowercased() } ?? "imgfs"

func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: root) })
}

let package = Package(
    name: "imgfs-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        // libFuzzer's entry point, LLVMFuzzerRunDriver, declared for Swift.
        .target(name: "CFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzer"]),
        fuzzTarget("fuzz-reference", ["OCI"]),
        fuzzTarget("fuzz-manifest", ["OCI", "ImgfsFormat"]),
        fuzzTarget("fuzz-frame-index", ["ImgfsFormat"]),
        fuzzTarget("fuzz-formats", ["OCI", "ImgfsFormat", "ImageLayouts"]),
        fuzzTarget("fuzz-lz4", ["Codec"]),
        fuzzTarget("fuzz-gzip", ["Codec"]),
        fuzzTarget("fuzz-span-index", ["SpanIndex"]),
        fuzzTarget("fuzz-tar", ["ImageLayouts"]),
    ]
)
