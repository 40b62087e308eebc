import ArgumentParser
import Push

/// How an imgfs-format image is cut and compressed: shared by `push` and `convert`.
struct LayoutOptionGroup: ParsableArguments {
    @Flag(help: "Store the whole disk as one gzip layer (zeros included) for consumers that expect one disk layer; still indexed, so it still mounts lazily.")
    var singleLayer = false

    @Option(help: ArgumentHelp("Uncompressed bytes per chunk layer (suffixes K, M, G; default 512M, raised for disks whose manifest would pass the 4 MiB readers accept).", valueName: "size"))
    var chunkSize: String?

    @Option(help: ArgumentHelp("Uncompressed bytes per frame, the unit of lazy fetching: a power of two from 64K to 64M (default 256K; 512K for disks over 18 GiB and 1M over 37 GiB, so that the frame index a mount fetches first stays within 4 MiB; raised further for disks whose index would pass the 256 MiB readers accept).", valueName: "size"))
    var frameSize: String?

    @Option(help: "Compression level, 1 (fastest) to 12 (smallest).")
    var compressionLevel: Int = 6

    @Option(help: "Compression threads (default: every core).")
    var threads: Int?

    /// The push pipeline's options; sizes are parsed here, ranges checked by `PushOptions.validated()`.
    func pushOptions() throws -> PushOptions {
        var options = PushOptions()
        options.singleLayer = singleLayer
        options.compressionLevel = compressionLevel
        if let chunkSize {
            options.chunkSize = try parseSize(chunkSize, option: "--chunk-size")
            options.chunkSizeIsAutomatic = false
        }
        if let frameSize {
            options.frameSize = Int(clamping: try parseSize(frameSize, option: "--frame-size"))
            options.frameSizeIsAutomatic = false
        }
        if let threads { options.compressionThreads = threads }
        return options
    }
}

/// `--quiet` and `--json`, for the commands that show progress and end with a result.
/// The image a command reads, written as docker writes it: one help text for every command.
struct ImageArgument: ParsableArguments {
    @Argument(help: "The image: registry/repository[:tag|@sha256:…] (the tag defaults to latest).")
    var reference: String
}

struct OutputOptionGroup: ParsableArguments {
    @Flag(name: .shortAndLong, help: "No progress display.")
    var quiet = false

    @Flag(help: "Print a JSON summary on stdout instead of the plain result.")
    var json = false

    /// Runs a long command's `work` under a progress line labelled `label`, then prints its result
    /// the one way every command does: JSON with `--json`; otherwise `summary` on stderr (unless
    /// `--quiet`) and the manifest digest on stdout, for scripts.
    func run<Result: Encodable>(_ label: String, progress: @escaping @Sendable () -> ProgressDisplay.Sample,
                                _ work: () throws -> Result, summary: (Result) -> String, digest: (Result) -> any CustomStringConvertible) throws {
        let display = ProgressDisplay(label: label, quiet: quiet, sample: progress)
        let result: Result
        do { result = try work() } catch {
            display.stop()
            throw error
        }
        display.stop()
        if json { return try printJSON(result) }
        if !quiet { writeStandardError(summary(result) + "\n") }
        print(digest(result))
    }
}
