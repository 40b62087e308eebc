import Foundation
import Testing

/// What an operator installing imgfs on a fleet relies on (issue 19): `imgfs --version` names the
/// release and the commit, and every mount's status says which build serves it.
@Suite(.serialized) struct ShippingIntegrationTests {
    static let image = Result<PushedImage, any Error> {
        let scratch = try TestEnvironment.scratchDirectory("shipping-src")
        let source = scratch + "/disk.img"
        try shell("head -c 3000000 /dev/urandom > \(source) && truncate -s 4M \(source)")
        return try PushedImage.push(source, repository: TestEnvironment.repository("shipping"), extra: ["--chunk-size", "1M"])
    }

    /// `0.2.0 (e3f6e14a1b2c)`, `0.2.0 (e3f6e14a1b2c-dirty)` or `0.2.0 (unknown commit)`, split.
    static func version() throws -> (version: String, commit: String?) {
        let result = try imgfs(["--version"], timeout: 30)
        #expect(result.status == 0, "\(result)")
        let line = result.stdout.trimmingCharacters(in: .newlines)
        let pattern = #/^(\d+\.\d+\.\d+) \((unknown commit|[0-9a-f]{7,40}(-dirty)?)\)$/#
        guard let match = line.wholeMatch(of: pattern) else {
            throw ShellFailed(script: "imgfs --version: not `VERSION (COMMIT)`", result: result)
        }
        return (String(match.1), match.2 == "unknown commit" ? nil : String(match.2))
    }

    @Test func versionNamesTheReleaseAndTheCommit() throws {
        let (version, commit) = try Self.version()
        // Built by contrib/package/build (as the test command does), the commit is this checkout's HEAD.
        if let expected = TestEnvironment.environment["IMGFS_EXPECT_COMMIT"] {
            #expect(commit == expected)
        }
        #expect(!version.isEmpty)
    }

    @Test func statusJSONCarriesTheDaemonsVersionAndCommit() throws {
        let image = try Self.image.get()
        let scratch = try TestEnvironment.scratchDirectory("shipping-status")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }

        let result = try imgfs(["status", "--json", mount.mountpoint], timeout: 60)
        #expect(result.status == 0, "\(result)")
        struct Build: Decodable {
            var version: String?
            var commit: String?
        }
        let statuses = try JSONDecoder().decode([Build].self, from: Data(result.stdout.utf8))
        let (version, commit) = try Self.version()
        #expect(statuses.count == 1)
        #expect(statuses.first?.version == version)
        #expect(statuses.first?.commit == commit)
    }

    // MARK: - Prometheus metrics

    /// The value of `name`'s sample for `mountpoint` (and `extra` labels) in an exposition.
    static func sample(_ text: String, _ name: String, mountpoint: String, extra: String = "") -> Double? {
        let prefix = "\(name){mountpoint=\"\(mountpoint)\","
        for line in text.split(separator: "\n") where line.hasPrefix(prefix) && (extra.isEmpty || line.contains(extra)) {
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }

    /// `promtool check metrics` (Debian's prometheus package): nothing printed, exit 0.
    static func promtoolCheck(_ text: String, scratch: String) throws {
        let file = scratch + "/metrics-\(UUID().uuidString.prefix(8)).prom"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try runCommand("/bin/bash", ["-c", "promtool check metrics < \(file)"], timeout: 60)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.isEmpty && result.stderr.isEmpty, "promtool: \(result)")
    }

    @Test(.enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
    func prometheusMetricsOfARealMountPassPromtoolAndCountWhatWasRead() throws {
        let image = try Self.image.get()
        let scratch = try TestEnvironment.scratchDirectory("shipping-metrics")
        defer { TestEnvironment.remove(scratch) }
        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        try shell("cmp \(image.source) \(mount.disk)")
        _ = try mount.settledStatus()

        let result = try imgfs(["status", "--prometheus", mount.mountpoint], timeout: 60)
        #expect(result.status == 0, "\(result)")
        let text = result.stdout
        try Self.promtoolCheck(text, scratch: scratch)
        let mp = mount.mountpoint
        #expect(text.contains("imgfs_mount_info{mountpoint=\"\(mp)\",image=\"\(image.reference)\",manifest=\"\(image.manifestDigest)\""))
        // cmp read every byte once; the kernel may read some twice (readahead), never fewer.
        #expect((Self.sample(text, "imgfs_served_bytes_total", mountpoint: mp) ?? 0) >= Double(image.diskSize))
        #expect(Self.sample(text, "imgfs_disk_size_bytes", mountpoint: mp) == Double(image.diskSize))
        #expect(Self.sample(text, "imgfs_cached_bytes", mountpoint: mp) == Double(image.diskSize))
        let frames = Self.sample(text, "imgfs_fetched_frames_total", mountpoint: mp) ?? 0
        #expect(frames == Double(image.dataFrames))
        #expect((Self.sample(text, "imgfs_fetched_bytes_total", mountpoint: mp) ?? 0) > 0)
        #expect(Self.sample(text, "imgfs_verification_failures_total", mountpoint: mp) == 0)
        #expect(Self.sample(text, "imgfs_fetch_retries_total", mountpoint: mp) == 0)
        #expect(Self.sample(text, "imgfs_read_errors_total", mountpoint: mp, extra: "errno=\"EIO\"") == 0)
        #expect(Self.sample(text, "imgfs_fetches_in_flight", mountpoint: mp) == 0)
        // Every range request is in the latency histogram, and within its +Inf bucket.
        let requests = Self.sample(text, "imgfs_range_requests_total", mountpoint: mp) ?? -1
        #expect(requests >= 1)
        #expect(Self.sample(text, "imgfs_fetch_duration_seconds_count", mountpoint: mp) == requests)
        #expect(Self.sample(text, "imgfs_fetch_duration_seconds_bucket", mountpoint: mp, extra: "le=\"+Inf\"") == requests)
        #expect((Self.sample(text, "imgfs_fetch_duration_seconds_sum", mountpoint: mp) ?? 0) > 0)

        // `imgfs metrics` serves the same families on /metrics, and nothing else.
        // Started directly, not from a shell with `&`: a background job would inherit the
        // output pipes of `shell` and keep it waiting for their end.
        let log = scratch + "/metrics.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: TestEnvironment.imgfs)
        server.arguments = ["metrics", "--listen", "127.0.0.1:0"]
        server.standardInput = FileHandle.nullDevice
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle(forWritingAtPath: log)
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        var address: String?
        for _ in 0..<100 where address == nil {
            usleep(100_000)
            let line = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            address = line.firstMatch(of: #/http://([0-9.:]+)/metrics/#).map { String($0.1) }
        }
        guard let address else { throw ShellFailed(script: "imgfs metrics: no address", result: CommandResult(status: 1, stdout: "", stderr: "", seconds: 0)) }
        let served = try shell("curl -sf http://\(address)/metrics")
        try Self.promtoolCheck(served, scratch: scratch)
        #expect(Self.sample(served, "imgfs_served_bytes_total", mountpoint: mp) == Self.sample(text, "imgfs_served_bytes_total", mountpoint: mp))
        #expect(try shell("curl -s -o /dev/null -w '%{http_code}' http://\(address)/") == "404")
        #expect(try shell("curl -s -o /dev/null -w '%{http_code}' -X POST http://\(address)/metrics") == "405")
    }

    @Test func statusRefusesJSONAndPrometheusTogether() throws {
        let result = try imgfs(["status", "--json", "--prometheus"], timeout: 30)
        #expect(result.status != 0)
        #expect(result.stderr.contains("--json and --prometheus"))
    }
}
