import ArgumentParser
import FoundationEssentials
import FuseFS
import Glibc
import Mount

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what imgfs mounts have cached, fetched and in flight.",
        discussion: """
        One line per mount: the image, its manifest digest, bytes cached of the disk, bytes \
        fetched from the network, frames fetched, the cache hit ratio of reads, frames readahead \
        fetched (and how many of them readers read), the link's throughput and latency as the \
        mount's range requests measured them (before they have, `~` and the rate of the mount's \
        fetch of the frame index), frames that failed verification, range requests in flight, how often the serving process was \
        restarted after it died and upgraded (`imgfs upgrade`), and its version. A mount whose \
        descriptor holder is gone is reported: it no longer survives its serving process. \
        --json prints the daemons' full status; --prometheus prints the metrics `imgfs metrics` \
        serves, for node_exporter's textfile collector (write to a temporary file and rename it \
        into the collector's directory).

        Examples:
          imgfs status
          imgfs status /mnt/vm --json
          imgfs status --prometheus > /var/lib/prometheus/node-exporter/imgfs.prom.$$ && \\
            mv /var/lib/prometheus/node-exporter/imgfs.prom.$$ /var/lib/prometheus/node-exporter/imgfs.prom
        """
    )

    @Argument(help: "Show only this mount.")
    var mountpoint: String?

    @Flag(help: "Print JSON (an array of mounts) instead of a table.")
    var json = false

    @Flag(help: "Print every mount's metrics in the Prometheus text format (for node_exporter's textfile collector).")
    var prometheus = false

    func validate() throws {
        if json && prometheus { throw ValidationError("--json and --prometheus: choose one") }
    }

    func run() throws {
        var statuses = MountStatusFiles.all()
        for index in statuses.indices {
            if let holder = statuses[index].holderPid { statuses[index].holderAlive = MountStatusFiles.isAlive(holder) }
        }
        if let mountpoint {
            let path = realpath(mountpoint, nil).map { pointer in
                defer { free(pointer) }
                return String(cString: pointer)
            } ?? mountpoint
            statuses = statuses.filter { $0.mountpoint == path }
            if statuses.isEmpty {
                throw fail(MountError.invalidArgument("\(mountpoint) is not an imgfs mount (no running daemon reports it)"))
            }
        }
        if json {
            try printJSON(statuses)
            reportLostHolders(statuses)
            return
        }
        if prometheus {
            // No mounts is an empty exposition, which the textfile collector reads as "no samples".
            print(PrometheusExposition.render(statuses), terminator: "")
            return
        }
        guard !statuses.isEmpty else {
            print("no imgfs mounts")
            return
        }
        var rows = [["MOUNTPOINT", "IMAGE", "MANIFEST", "CACHED", "FETCHED", "FRAMES", "FROM-MOUNTS", "HIT", "READAHEAD", "LINK", "VERIFY-FAIL", "IN-FLIGHT", "RESTARTS", "UPGRADES", "VERSION"]]
        for s in statuses {
            let percent = s.diskSize == 0 ? 100 : Int(Double(s.bytesCached) / Double(s.diskSize) * 100)
            rows.append([
                s.mountpoint,
                s.reference + (s.offline ? " (offline)" : "")
                    + (s.readUnit == "layers" ? " (whole layers: no span index)" : s.readUnit == "spans" ? " (span index)" : ""),
                String(s.manifestDigest.prefix(19)),
                "\(formatBytes(Int64(s.bytesCached)))/\(formatBytes(Int64(s.diskSize))) \(percent)%",
                formatBytes(s.statistics.bytesFetched),
                String(s.statistics.framesFetched),
                s.statistics.framesFromOtherMounts.map { String($0) } ?? "-",
                oneDecimal(s.statistics.hitRatio * 100) + "%",
                readahead(s.statistics),
                link(s.statistics.link),
                String(s.statistics.verificationFailures),
                String(s.statistics.requestsInFlight),
                s.holderPid == nil ? "-" : String(s.restarts ?? 0),
                s.holderPid == nil ? "-" : String(s.upgrades ?? 0),
                s.version ?? "-",
            ])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }
            print(cells.joined(separator: "  "))
        }
        // What the link carried for whom: readers' bytes against those fetched ahead of them.
        for s in statuses {
            guard let b = s.statistics.bytesFetchedByClass else { continue }
            var line = "\(s.mountpoint): fetched \(formatBytes(b.demand)) for readers, \(formatBytes(b.readahead)) readahead, "
                + "\(formatBytes(b.profile)) boot profile, \(formatBytes(b.prefetch)) background prefetch"
            if let w = s.statistics.bytesFetchedWhileReadersWaited {
                line += "; while readers waited: \(formatBytes(w.readahead)) readahead, \(formatBytes(w.profile)) boot profile, "
                    + "\(formatBytes(w.prefetch)) background prefetch"
            }
            if let waited = s.statistics.readWaitSeconds { line += "; reads waited \(oneDecimal(waited)) s for the link" }
            print(line)
        }
        reportLostHolders(statuses)
    }

    /// Frames readahead fetched, and how many of them were read (the rest is waste so far).
    func readahead(_ statistics: MountStatistics.Snapshot) -> String {
        guard let hits = statistics.readaheadHits else { return String(statistics.readaheadFrames) }
        return "\(statistics.readaheadFrames) (\(hits) read)"
    }

    /// The link's measured throughput and latency, e.g. "3.1MB/s 42ms"; "~3.1MB/s" while the
    /// rate is the frame index's transfer's.
    func link(_ link: LinkSnapshot?) -> String {
        guard let link, let rate = link.bytesPerSecond else { return "-" }
        let latency = link.latencySeconds.map { " \(Int(($0 * 1000).rounded()))ms" } ?? ""
        return (link.seeded == true ? "~" : "") + formatBytes(Int64(rate)) + "/s" + latency
    }

    /// One line on stderr per mount whose descriptor holder died: it keeps serving, but a crash
    /// or upgrade of its server would now end it.
    func reportLostHolders(_ statuses: [MountStatus]) {
        for status in statuses where status.holderAlive == false {
            writeStandardError("imgfs: warning: \(FuseError(mountpoint: status.mountpoint, reason: .holderGone(pid: status.holderPid ?? 0)))\n")
        }
    }
}
