import Foundation
import Testing

/// Demand first on a slow link (issue 20): contrib/test/slowlink-test.sh puts a registry behind a
/// veth shaped to 16 Mbit/s in a network namespace it creates, keeps readahead and the background
/// prefetch of a 288 MiB incompressible image busy, then (1) times eight single-frame reads far
/// from both, each of which must complete within 5 s (0.5 s of the link alone), and (2) has four
/// readers read twelve more frames at once, over which the readahead, profile and prefetch classes
/// together must have moved fewer bytes than demand (`imgfs status --json` bytesFetchedByClass).
/// The script removes the namespace and stops what it started, also on failure.
@Suite(.enabled(if: getuid() == 0 || TestEnvironment.isCI, "needs root for a network namespace"))
struct SlowLinkIntegrationTests {
    @Test func demandReadsGoFirstWhileReadaheadAndPrefetchFillTheLink() throws {
        let scratch = try TestEnvironment.scratchDirectory("slowlink")
        defer { TestEnvironment.remove(scratch) }
        let result = try runCommand(TestEnvironment.repositoryRoot + "/contrib/test/slowlink-test.sh", [TestEnvironment.imgfs],
                                    environment: ["TMPDIR": scratch], timeout: 180)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.split(separator: "\n").last == "ok", "\(result)")
    }
}
