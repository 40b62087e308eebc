import ArgumentParser
import Fetch
import Logging
import OCI

/// Options every command that talks to a registry shares.
struct RegistryOptionGroup: ParsableArguments {
    @Flag(name: .long, help: "Use plain HTTP for a registry that is not on loopback (loopback registries use it already).")
    var plainHTTP = false

    @Option(name: .long, help: ArgumentHelp("A registry mirror (host:port, or http(s)://host:port to choose the scheme) tried first for pulls; repeatable. Also IMGFS_REGISTRY_MIRRORS.", valueName: "host:port"))
    var mirror: [String] = []

    @Option(name: .long, help: ArgumentHelp("A containerd hosts directory: mirrors of REGISTRY from DIR/REGISTRY/hosts.toml (or DIR/_default/hosts.toml), tried after --mirror. Default: IMGFS_HOSTS_DIR, else /etc/containerd/certs.d when it exists; \"none\" for none. See docs/FLEET.md.", valueName: "dir"))
    var hostsDir: String?

    @Flag(name: .shortAndLong, help: "Log what imgfs does (-v: info, -vv: debug) on stderr.")
    var verbose: Int

    func validate() throws {
        for text in mirror {
            if case .failure(let error) = RegistryOptions.parseMirror(text) { throw ValidationError(error.description) }
        }
    }

    /// Applies the mirror settings to `options`; a hosts.toml that cannot be used is an error
    /// here, where the user sees it, rather than a log line in a daemon.
    func applyMirrors(to options: inout RegistryOptions, registry: String) throws {
        if !mirror.isEmpty { options.mirrors = mirror }
        if let hostsDir { options.hostsDirectory = hostsDir == "none" ? nil : hostsDir }
        if let directory = options.hostsDirectory {
            do { _ = try ContainerdHosts.load(registry: registry, directory: directory) } catch { throw ValidationError(error.description) }
        }
    }

    func client(for reference: Reference, logger: Logger) throws -> RegistryClient {
        var options = RegistryOptions()
        if plainHTTP { options.plainHTTP = true }
        try applyMirrors(to: &options, registry: reference.registry)
        return RegistryClient(registry: reference.registry, options: options, logger: logger)
    }

    func makeLogger(_ label: String = "imgfs") -> Logger {
        let level: Logger.Level = switch verbose {
        case 0: .warning
        case 1: .info
        default: .debug
        }
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        return logger
    }
}

/// Parses a reference typed by the user; the error names the string and what is wrong with it.
func parseReference(_ text: String) throws -> Reference {
    try Reference(parsing: text)
}
