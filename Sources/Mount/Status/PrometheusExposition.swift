/// Mounts' status in the Prometheus text exposition format (0.0.4): what `imgfs status
/// --prometheus` writes for node_exporter's textfile collector and `imgfs metrics` serves on
/// `/metrics`. Every sample has the labels `mountpoint` and `image`, so one scrape of a host
/// tells its mounts apart; a family's samples are contiguous under one HELP and TYPE, as the
/// format requires.
public enum PrometheusExposition {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ statuses: [MountStatus]) -> String {
        var text = ""
        for family in families {
            let samples = statuses.flatMap { status in family.samples(status).map { (status, $0) } }
            guard !samples.isEmpty else { continue }
            text += "# HELP \(family.name) \(escapeHelp(family.help))\n"
            text += "# TYPE \(family.name) \(family.type)\n"
            for (status, sample) in samples {
                let labels = [("mountpoint", status.mountpoint), ("image", status.reference)] + sample.labels
                let rendered = labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",")
                text += "\(family.name)\(sample.suffix){\(rendered)} \(sample.value)\n"
            }
        }
        return text
    }

    struct Sample: Sendable {
        var suffix = ""
        var labels: [(String, String)] = []
        var value: String
    }

    struct Family: Sendable {
        var name: String
        var type: String
        var help: String
        var samples: @Sendable (MountStatus) -> [Sample]

        static func gauge(_ name: String, _ help: String, _ value: @escaping @Sendable (MountStatus) -> String) -> Family {
            Family(name: name, type: "gauge", help: help) { [Sample(value: value($0))] }
        }

        static func counter(_ name: String, _ help: String, _ value: @escaping @Sendable (MountStatus) -> Int64?) -> Family {
            // A counter a daemon does not report (an older one) is left out rather than shown as 0.
            Family(name: name, type: "counter", help: help) { status in value(status).map { [Sample(value: String($0))] } ?? [] }
        }
    }

    static let families: [Family] = [
        Family(name: "imgfs_mount_info", type: "gauge",
               help: "Always 1; the labels name the manifest and the imgfs build of the daemon serving the mount.") { status in
            [Sample(labels: [("manifest", status.manifestDigest), ("version", status.version ?? ""), ("commit", status.commit ?? "")],
                    value: "1")]
        },
        .gauge("imgfs_mount_start_time_seconds", "When the daemon started serving, in seconds since the Unix epoch.") { format($0.startedAt) },
        .gauge("imgfs_offline", "1 when the mount serves only what its cache holds (the registry was unreachable at mount).") { $0.offline ? "1" : "0" },
        .gauge("imgfs_disk_size_bytes", "Size of the mounted disk.img.") { String($0.diskSize) },
        .gauge("imgfs_cached_bytes", "Bytes of disk.img present and verified in the local cache.") { String($0.bytesCached) },
        .gauge("imgfs_frames", "Frames of disk.img (whole layers for formats without a frame index).") { String($0.totalFrames) },
        .gauge("imgfs_cached_frames", "Frames present and verified in the local cache.") { String($0.cachedFrames) },
        .counter("imgfs_served_bytes_total", "Bytes of disk.img returned to readers.") { $0.statistics.bytesServed },
        .counter("imgfs_fetched_bytes_total", "Compressed frame bytes received from the registry.") { $0.statistics.bytesFetched },
        .counter("imgfs_fetched_frames_total", "Frames fetched from the registry, verified and stored.") { $0.statistics.framesFetched },
        .counter("imgfs_range_requests_total", "Range requests answered by the registry.") { $0.statistics.rangeRequests },
        .counter("imgfs_frame_hits_total", "Frames read from the cache (or holes) without waiting for the network.") { $0.statistics.cacheHits },
        .counter("imgfs_frame_misses_total", "Frames a read had to wait for.") { $0.statistics.cacheMisses },
        Family(name: "imgfs_read_wait_seconds_total", type: "counter",
               help: "Seconds reads of disk.img spent waiting for frames they missed, summed over reads.") { status in
            status.statistics.readWaitSeconds.map { [Sample(value: format($0))] } ?? []
        },
        .counter("imgfs_shared_frames_total", "Frames copied from another image's cache entry instead of fetched.") { $0.statistics.sharedFrames },
        .counter("imgfs_other_mount_frames_total",
                 "Frames another mount of the image on this host fetched into the shared cache entry, read from it instead of fetched.") {
            $0.statistics.framesFromOtherMounts
        },
        .counter("imgfs_verification_failures_total", "Frames whose bytes did not decompress or hash to the index's digest.") {
            $0.statistics.verificationFailures
        },
        .counter("imgfs_cache_verification_failures_total",
                 "Cached frames that no longer hashed to their digest when the daemon first served them (dropped and fetched again).") {
            $0.statistics.cacheVerificationFailures
        },
        .counter("imgfs_server_restarts_total", "Times the serving process was started again by the descriptor holder after it died.") {
            $0.holderPid == nil ? nil : Int64($0.restarts ?? 0)
        },
        .counter("imgfs_server_upgrades_total", "Times the serving process was replaced by `imgfs upgrade`.") {
            $0.holderPid == nil ? nil : Int64($0.upgrades ?? 0)
        },
        .counter("imgfs_fetch_retries_total", "Registry requests sent again after a transport error or a retriable HTTP status.") {
            $0.statistics.retries
        },
        Family(name: "imgfs_read_errors_total", type: "counter", help: "Reads of disk.img answered with an error, by errno.") { status in
            // Every failed disk read reaches the reader as EIO (ImageFileSystem); the label keeps
            // room for other errnos without renaming the series.
            [Sample(labels: [("errno", "EIO")], value: String(status.statistics.readErrors))]
        },
        Family(name: "imgfs_prefetched_frames_total", type: "counter", help: "Frames fetched ahead of readers, by why.") { status in
            [("readahead", status.statistics.readaheadFrames), ("profile", status.statistics.profileFrames),
             ("prefetch", status.statistics.prefetchedFrames)].map { Sample(labels: [("class", $0.0)], value: String($0.1)) }
        },
        Family(name: "imgfs_fetched_class_bytes_total", type: "counter", help: "Compressed frame bytes received from the registry, by why they were fetched.") { status in
            guard let b = status.statistics.bytesFetchedByClass else { return [] }
            return FetchClass.allCases.map { Sample(labels: [("class", $0.name)], value: String(b[$0])) }
        },
        Family(name: "imgfs_fetched_class_bytes_while_readers_waited_total", type: "counter",
               help: "Of imgfs_fetched_class_bytes_total, the bytes received while a reader's request was in flight.") { status in
            guard let b = status.statistics.bytesFetchedWhileReadersWaited else { return [] }
            return FetchClass.allCases.map { Sample(labels: [("class", $0.name)], value: String(b[$0])) }
        },
        .gauge("imgfs_fetches_in_flight", "Range requests being sent or received now.") { String($0.statistics.requestsInFlight) },
        Family(name: "imgfs_fetch_duration_seconds", type: "histogram",
               help: "Time from sending a range request to holding all its bytes.") { status in
            guard let histogram = status.statistics.fetchSeconds else { return [] }
            var samples = zip(histogram.bounds, histogram.cumulativeCounts).map { bound, count in
                Sample(suffix: "_bucket", labels: [("le", format(bound))], value: String(count))
            }
            samples.append(Sample(suffix: "_bucket", labels: [("le", "+Inf")], value: String(histogram.count)))
            samples.append(Sample(suffix: "_sum", value: format(histogram.sum)))
            samples.append(Sample(suffix: "_count", value: String(histogram.count)))
            return samples
        },
    ]

    /// A float as Prometheus reads it (Go's ParseFloat): `0.005`, `1e-05`, `1700000000.25`.
    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// A label value with `\`, `"` and newlines escaped, as the format requires.
    static func escapeLabel(_ value: String) -> String { escape(value, quotes: true) }

    /// HELP text escapes only `\` and newlines.
    static func escapeHelp(_ value: String) -> String { escape(value, quotes: false) }

    private static func escape(_ value: String, quotes: Bool) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"" where quotes: escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
