@testable import Mount
import Testing

@Suite struct PrometheusExpositionTests {
    static func status(mountpoint: String, reference: String, served: Int64?) -> MountStatus {
        var histogram = LatencyHistogram(bounds: [0.01, 0.1, 1])
        for seconds in [0.005, 0.05, 0.05, 2.0] { histogram.observe(seconds) }
        let statistics = MountStatistics.Snapshot(
            bytesFetched: 4096, framesFetched: 3, rangeRequests: 4, cacheHits: 10, cacheMisses: 3, sharedFrames: 0,
            verificationFailures: 1, requestsInFlight: 2, peakRequestsInFlight: 3, readErrors: 1, readaheadFrames: 5,
            profileFrames: 6, prefetchedFrames: 7, bytesServed: served, fetchSeconds: histogram, retries: 8,
            framesFromOtherMounts: served == nil ? nil : 9)
        var status = MountStatus(pid: 1, mountpoint: mountpoint, reference: reference, manifestDigest: "sha256:ab",
                                 cacheDirectory: "/c", logFile: nil, diskSize: 1 << 20, totalFrames: 16, cachedFrames: 4,
                                 bytesCached: 65536, offline: false, prefetch: true, startedAt: 1_700_000_000.5,
                                 updatedAt: 1_700_000_001, statistics: statistics)
        status.version = "0.2.0"
        return status
    }

    @Test func everySampleHasTheMountAndImageLabelsAndEachFamilyOneHeader() {
        let text = PrometheusExposition.render([
            Self.status(mountpoint: "/mnt/a", reference: "localhost:5000/vm/a:1", served: 123),
            Self.status(mountpoint: "/mnt/b", reference: "localhost:5000/vm/b:1", served: 456),
        ])
        let lines = text.split(separator: "\n").map(String.init)
        let samples = lines.filter { !$0.hasPrefix("#") }
        #expect(samples.allSatisfy { $0.contains("{mountpoint=\"/mnt/") && $0.contains(",image=\"localhost:5000/vm/") })
        #expect(samples.contains("imgfs_served_bytes_total{mountpoint=\"/mnt/b\",image=\"localhost:5000/vm/b:1\"} 456"))
        #expect(samples.contains("imgfs_fetch_retries_total{mountpoint=\"/mnt/a\",image=\"localhost:5000/vm/a:1\"} 8"))
        #expect(samples.contains("imgfs_other_mount_frames_total{mountpoint=\"/mnt/a\",image=\"localhost:5000/vm/a:1\"} 9"))
        #expect(samples.contains("imgfs_mount_start_time_seconds{mountpoint=\"/mnt/a\",image=\"localhost:5000/vm/a:1\"} 1700000000.5"))
        // One HELP and one TYPE per family, however many mounts, and its samples right after.
        let types = lines.filter { $0.hasPrefix("# TYPE ") }
        #expect(Set(types).count == types.count)
        #expect(types.contains("# TYPE imgfs_fetch_duration_seconds histogram"))
        #expect(types.contains("# TYPE imgfs_frame_hits_total counter"))
        #expect(types.contains("# TYPE imgfs_fetches_in_flight gauge"))
    }

    @Test func theLatencyHistogramIsCumulativeAndEndsAtInfinity() {
        let text = PrometheusExposition.render([Self.status(mountpoint: "/m", reference: "r", served: 0)])
        let buckets = text.split(separator: "\n").filter { $0.hasPrefix("imgfs_fetch_duration_seconds") }.map(String.init)
        #expect(buckets == [
            "imgfs_fetch_duration_seconds_bucket{mountpoint=\"/m\",image=\"r\",le=\"0.01\"} 1",
            "imgfs_fetch_duration_seconds_bucket{mountpoint=\"/m\",image=\"r\",le=\"0.1\"} 3",
            "imgfs_fetch_duration_seconds_bucket{mountpoint=\"/m\",image=\"r\",le=\"1\"} 3",
            "imgfs_fetch_duration_seconds_bucket{mountpoint=\"/m\",image=\"r\",le=\"+Inf\"} 4",
            "imgfs_fetch_duration_seconds_sum{mountpoint=\"/m\",image=\"r\"} 2.105",
            "imgfs_fetch_duration_seconds_count{mountpoint=\"/m\",image=\"r\"} 4",
        ])
    }

    @Test func labelValuesAreEscaped() {
        let text = PrometheusExposition.render([Self.status(mountpoint: "/mnt/a \"b\"\\c\nd", reference: "r", served: 1)])
        #expect(text.contains("mountpoint=\"/mnt/a \\\"b\\\"\\\\c\\nd\""))
        #expect(!text.contains("\nd\""))
    }

    @Test func countersAnOlderDaemonDidNotReportAreLeftOut() {
        let text = PrometheusExposition.render([Self.status(mountpoint: "/m", reference: "r", served: nil)])
        #expect(!text.contains("imgfs_served_bytes_total"))
        #expect(!text.contains("imgfs_other_mount_frames_total"))
        #expect(text.contains("imgfs_fetched_bytes_total"))
    }

    @Test func noMountsIsAnEmptyExposition() {
        #expect(PrometheusExposition.render([]) == "")
    }

    @Test func aHistogramCountsEachObservationInEveryBucketAtOrAboveIt() {
        var histogram = LatencyHistogram(bounds: [1, 2])
        histogram.observe(1)      // on a bound: `le` is inclusive
        histogram.observe(1.5)
        histogram.observe(3)
        #expect(histogram.cumulativeCounts == [1, 2])
        #expect(histogram.count == 3)
        #expect(histogram.sum == 5.5)
    }
}
