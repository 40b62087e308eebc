import ArgumentParser
import Glibc
import Mount

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Serve every imgfs mount's metrics to Prometheus on /metrics.",
        discussion: """
        Answers GET /metrics with what `imgfs status --prometheus` prints, read from the \
        mounts' status files at each scrape, so mounts made after it started are included. \
        It runs in the foreground until killed and has no authentication: listen on loopback \
        or a management network. Port 0 picks a free port; the address is written to stderr on start.

        Examples:
          imgfs metrics --listen 127.0.0.1:9456
          curl -s http://127.0.0.1:9456/metrics
        """
    )

    @Option(help: ArgumentHelp("Where to listen: a numeric address and a port.", valueName: "host:port"))
    var listen: String

    func run() throws {
        // A process inherits its signal mask: started by a supervisor or a program that blocks
        // SIGTERM in the thread that spawns it, the server would otherwise outlive every `kill`.
        var stop = sigset_t()
        sigemptyset(&stop)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&stop, signal) }
        pthread_sigmask(SIG_UNBLOCK, &stop, nil)
        let server: MetricsServer
        do { server = try MetricsServer(listen: listen) } catch { throw fail(UsageError(error.description)) }
        // On stderr, unbuffered: with port 0 a caller reads the port from it while this runs.
        writeStandardError("imgfs: serving metrics on http://\(server.address)/metrics\n")
        server.serve { PrometheusExposition.render(MountStatusFiles.all()) }
    }
}
