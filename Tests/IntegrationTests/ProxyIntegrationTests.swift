import Foundation
import Testing

/// HTTP_PROXY and NO_PROXY are honoured (issue 12): contrib/test/proxy-test.sh puts a registry
/// on 10.213.0.2 inside a network namespace it creates (imgfs never proxies loopback, so a
/// loopback registry could not show it), pushes and pulls through a real tinyproxy on loopback
/// and checks tinyproxy's log, then pulls with NO_PROXY naming the registry and checks the proxy
/// saw nothing more. The script removes the namespace and stops what it started, also on failure.
@Suite(.enabled(if: getuid() == 0 || TestEnvironment.isCI, "needs root for a network namespace"))
struct ProxyIntegrationTests {
    @Test func registryTrafficGoesThroughHTTPProxyExceptNoProxyHosts() throws {
        let scratch = try TestEnvironment.scratchDirectory("proxy")
        defer { TestEnvironment.remove(scratch) }
        let result = try runCommand(TestEnvironment.repositoryRoot + "/contrib/test/proxy-test.sh", [TestEnvironment.imgfs],
                                    environment: ["TMPDIR": scratch], timeout: 120)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.split(separator: "\n").last == "ok", "\(result)")
    }
}
