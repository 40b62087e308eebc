import ArgumentParser
import OCI

/// `--platform`: which entry of an image index the commands that read an image use.
struct PlatformOptionGroup: ParsableArguments {
    @Option(help: ArgumentHelp("The entry to use when REF is an image index (a multi-platform image): os/arch[/variant] (default: this host's, \(Platform.host)).",
                               valueName: "os/arch[/variant]"),
            transform: { (text) throws -> Platform in
                do throws(PlatformError) { return try Platform(parsing: text) } catch { throw ValidationError(error.description) }
            })
    var platform: Platform?

    var wanted: Platform { platform ?? .host }

    /// The paragraph each command's discussion gives `--platform`.
    static let discussion = """
        A REF that names an image index (a multi-platform image) means its entry for this \
        host's platform, \(Platform.host) (the kernel's architecture in OCI's names), or for the \
        one --platform names (linux/arm64, linux/arm/v7); an index with no such entry is an \
        error that lists the platforms it has.
        """
}
