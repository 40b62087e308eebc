import Foundation
import Testing

/// Demand first on a slow link (issue 20): contrib/test/slowlink-test.sh puts a registry behind a
/// veth shaped to 16 Mbit/s in a network namespace it creates (10.219.0.0/30), lets the background
/// prefetch of a 448 MiB incompressible image fill the link, then starts a sequential reader
/// (readahead) and times a one-frame read far from both: each must complete within 8 s (0.52 s of
/// the link alone; the slack is for CI, where other suites share the two cores), and over those reads the prefetch must have moved less than a quarter of the
/// demand bytes (`imgfs status --json` bytesFetchedByClass). The script removes the namespace and
/// stops what it started, also on failure.
@Suite(.enabled(if: getuid() == 0 || TestEnvironment.isCI, "needs root for a network namespace"))
struct SlowLinkIntegrationTests {
    @Test func demandReadsGoFirstWhileReadaheadAndPrefetchFillTheLink() throws {
        let scratch = try TestEnvironment.scratchDirectory("slowlink")
        defer { TestEnvironment.remove(scratch) }
        let result = try runCommand(TestEnvironment.repositoryRoot + "/contrib/test/slowlink-test.sh", [TestEnvironment.imgfs],
                                    environment: ["TMPDIR": scratch], timeout: 420)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.split(separator: "\n").last == "ok", "\(result)")
    }
}
