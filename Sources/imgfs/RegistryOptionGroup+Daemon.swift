import Logging

extension RegistryOptionGroup {
    /// The flags that recreate these options in a re-executed daemon.
    func passThroughArguments() -> [String] {
        var arguments: [String] = []
        if plainHTTP { arguments.append("--plain-http") }
        for mirror in mirror { arguments += ["--mirror", mirror] }
        if let hostsDir { arguments += ["--hosts-dir", hostsDir] }
        arguments += Array(repeating: "--verbose", count: verbose)
        return arguments
    }

    /// A daemon logs at least at info level to its log file, so that fallbacks, failures and
    /// unmounts are on record; a foreground command stays at the user's verbosity.
    func makeDaemonLogger(isDaemon: Bool) -> Logger {
        var logger = makeLogger()
        if isDaemon && logger.logLevel > .info { logger.logLevel = .info }
        return logger
    }
}
