import ArgumentParser
import Fetch
import Glibc
import OCI

struct LoginCommand: OneLineErrors {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Check credentials against a registry and store them for imgfs and docker.",
        discussion: """
        The credentials are tried against the registry first (GET /v2/, with the registry's own \
        auth scheme: basic or bearer token), then stored in docker's config file \
        ($DOCKER_CONFIG/config.json or ~/.docker/config.json, mode 0600), which imgfs, docker, \
        skopeo and podman all read. Other entries in that file are kept.

        Examples:
          imgfs login -u alice registry.example.com          # asks for the password
          echo "$TOKEN" | imgfs login -u ci --password-stdin ghcr.io
        """
    )

    @Argument(help: "The registry host, e.g. ghcr.io or localhost:5000.")
    var registry: String

    @Option(name: .shortAndLong, help: "User name.")
    var username: String

    @Flag(help: "Read the password from standard input (one line) instead of prompting.")
    var passwordStdin = false

    @OptionGroup var options: RegistryOptionGroup

    func execute() throws {
        let host = try Reference(parsing: registry + "/probe").registry
        let password = try readPassword()
        let logger = options.makeLogger()
        var registryOptions = RegistryOptions()
        if options.plainHTTP { registryOptions.plainHTTP = true }
        let client = RegistryClient(registry: host, options: registryOptions,
                                    credentials: StaticCredentials([host: .basic(username: username, password: password)]),
                                    logger: logger)
        try client.ping()
        try DockerConfigWriter.store(registry: host, username: username, password: password)
        print("Login succeeded: \(username)@\(host)")
    }

    private func readPassword() throws -> String {
        if passwordStdin {
            guard let line = Swift.readLine(strippingNewline: true), !line.isEmpty else {
                throw UsageError("--password-stdin: no password on standard input")
            }
            return line
        }
        guard isatty(0) == 1, let entered = getpass("Password: ") else {
            throw UsageError("no terminal to ask for the password on; use --password-stdin")
        }
        let password = String(cString: entered)
        guard !password.isEmpty else { throw UsageError("empty password") }
        return password
    }
}
