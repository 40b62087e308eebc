import Foundation
import Testing

/// Issue 12's byte bounds, measured as the bench measures them: contrib/bench/fleet with four
/// hosts (four `imgfs mount` daemons, four cache directories) reading a 48 MB image at once
/// through a cold docker-registry in proxy mode and through contrib/mirror's nginx slice cache.
/// The upstream registry's access log must show at most 1.5x (proxy) and 1.1x (nginx) the blob
/// bytes one lone host fetches. Times are the bench's business (BENCHMARKS.md, "Fleet").
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") || TestEnvironment.isCI, "needs nginx"))
struct FleetIntegrationTests {
    @Test func fourHostsBehindEachMirrorCostUpstreamAboutOneCopy() throws {
        let scratch = try TestEnvironment.scratchDirectory("fleet")
        defer { TestEnvironment.remove(scratch) }
        let disk = scratch + "/disk.img"
        let made = try runCommand("/bin/sh", ["-c", "head -c 48000000 /dev/urandom > \(disk) && truncate -s 256M \(disk)"])
        #expect(made.status == 0, "\(made)")
        let result = try runCommand(TestEnvironment.repositoryRoot + "/contrib/bench/fleet", [disk],
                                    environment: ["IMGFS_BIN": TestEnvironment.imgfs, "HOSTS": "4", "KINDS": "proxy nginx",
                                                  "TMPDIR": scratch],
                                    timeout: 300)
        #expect(result.status == 0, "\(result)")
        // "proxy      4      51234567     1.07     ..." → the multiple of one host's bytes.
        func multiple(_ kind: String) -> Double? {
            result.stdout.split(separator: "\n").first { $0.hasPrefix(kind + " ") }
                .flatMap { $0.split(separator: " ").dropFirst(3).first }.flatMap { Double($0) }
        }
        let proxy = try #require(multiple("proxy"), "\(result)")
        let nginx = try #require(multiple("nginx"), "\(result)")
        #expect(proxy <= 1.5, "\(result.stdout)")
        #expect(nginx <= 1.1, "\(result.stdout)")
    }
}
