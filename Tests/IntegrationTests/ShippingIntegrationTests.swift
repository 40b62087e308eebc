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
}
