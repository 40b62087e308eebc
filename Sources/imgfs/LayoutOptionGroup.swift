import ArgumentParser
import Push

/// How an imgfs-format image is cut and compressed: shared by `push` and `convert`.
struct LayoutOptionGroup: ParsableArguments {
    @Flag(help: "Store the whole disk as one gzip layer (zeros included) for consumers that expect one disk layer; still indexed, so it still mounts lazily.")
    var singleLayer = false

    @Option(help: ArgumentHelp("Uncompressed bytes per chunk layer (suffixes K, M, G).", valueName: "size"))
    var chunkSize: String = "512M"

    @Option(help: ArgumentHelp("Uncompressed bytes per frame, the unit of lazy fetching: a power of two from 64K to 64M.", valueName: "size"))
    var frameSize: String = "1M"

    @Option(help: "Compression level, 1 (fastest) to 12 (smallest).")
    var compressionLevel: Int = 6

    @Option(help: "Compression threads (default: every core).")
    var threads: Int?

    /// The push pipeline's options; sizes are parsed here, ranges checked by `PushOptions.validated()`.
    func pushOptions() throws -> PushOptions {
        var options = PushOptions()
        options.singleLayer = singleLayer
        options.compressionLevel = compressionLevel
        options.chunkSize = try parseSize(chunkSize, option: "--chunk-size")
        options.frameSize = Int(try parseSize(frameSize, option: "--frame-size"))
        if let threads { options.compressionThreads = threads }
        return options
    }
}

/// `--quiet` and `--json`, for the commands that show progress and end with a result.
struct OutputOptionGroup: ParsableArguments {
    @Flag(name: .shortAndLong, help: "No progress display.")
    var quiet = false

    @Flag(help: "Print a JSON summary on stdout instead of the plain result.")
    var json = false
}
