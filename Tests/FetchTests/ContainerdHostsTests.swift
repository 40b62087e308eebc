import Foundation
import Testing
@testable import Fetch

/// containerd's hosts.toml, as users write it, read into imgfs mirrors; what imgfs cannot honour
/// refused with file and line.
@Suite struct ContainerdHostsTests {
    @Test func readsServerHostsAndCapabilitiesInFileOrder() throws {
        let text = """
            # /etc/containerd/certs.d/docker.io/hosts.toml
            server = "https://registry-1.docker.io"   # upstream

            [host."http://10.0.0.5:5000"]
              capabilities = ["pull", "resolve"]
              skip_verify = false

            [host.'https://mirror.example.com']
              capabilities = [
                "pull",
              ]
              dial_timeout = "2s"
            """
        let hosts = try ContainerdHosts.parse(text, file: "hosts.toml")
        #expect(hosts.server == "https://registry-1.docker.io")
        #expect(hosts.hosts == [
            .init(mirror: .init(host: "10.0.0.5:5000", plainHTTP: true), pull: true, resolve: true),
            .init(mirror: .init(host: "mirror.example.com", plainHTTP: false), pull: true, resolve: false),
        ])
    }

    @Test func refusesWhatItCannotHonourWithFileAndLine() {
        let cases: [(String, String)] = [
            ("[host.\"https://m\"]\nskip_verify = true", "hosts.toml:2: skip_verify = true"),
            ("[host.\"https://m\"]\nca = \"/etc/ca.pem\"", "hosts.toml:2: ca:"),
            ("[host.\"https://m\"]\nclient = [\"a.pem\", \"a.key\"]", "hosts.toml:2: client:"),
            ("[host.\"https://m/v2/x\"]\noverride_path = true", "hosts.toml:1: registry mirror"),
            ("[host.\"https://m\"]\noverride_path = true", "hosts.toml:2: override_path = true"),
            ("[host.\"https://m\".header]\nx-a = \"b\"", "hosts.toml:1: [host.\"https://m\".header]"),
            ("[host.\"ftp://m\"]", "hosts.toml:1: registry mirror \"ftp://m\" is a ftp: URL"),
            ("[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]", "hosts.toml:2: unknown capability \"fly\""),
            ("[host.\"https://m\"]\ncapabilities = [\"pull\"", "hosts.toml:2: unterminated array"),
            ("mirrors = [\"a\"]", "hosts.toml:1: unknown key mirrors"),
            ("server = \"https://x", "hosts.toml:1: unterminated string"),
            ("[[host]]", "hosts.toml:1: unsupported table header"),
        ]
        for (text, expected) in cases {
            do throws(HostsFileError) {
                _ = try ContainerdHosts.parse(text, file: "hosts.toml")
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.description.hasPrefix(expected), "\(text) → \(error)")
            }
        }
    }

    @Test func directoryLookupUsesTheRegistryThenDefaultAndChecksServer() throws {
        let directory = NSTemporaryDirectory() + "imgfs-hosts-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory + "/_default", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: directory + "/reg.example:5000", withIntermediateDirectories: true)
        try "[host.\"http://10.0.0.9:80\"]\n".write(toFile: directory + "/_default/hosts.toml", atomically: true, encoding: .utf8)
        try "server = \"https://reg.example:5000\"\n[host.\"http://10.0.0.1:5000\"]\n"
            .write(toFile: directory + "/reg.example:5000/hosts.toml", atomically: true, encoding: .utf8)
        #expect(try ContainerdHosts.load(registry: "reg.example:5000", directory: directory)?.hosts.map(\.mirror.host) == ["10.0.0.1:5000"])
        #expect(try ContainerdHosts.load(registry: "other.example", directory: directory)?.hosts.map(\.mirror.host) == ["10.0.0.9:80"])
        #expect(try ContainerdHosts.load(registry: "x", directory: directory + "/missing") == nil)
        try "server = \"https://elsewhere.example\"\n".write(toFile: directory + "/_default/hosts.toml", atomically: true, encoding: .utf8)
        #expect(throws: HostsFileError.self) { try ContainerdHosts.load(registry: "other.example", directory: directory) }
    }

    @Test func aClientPullsThroughTheMirrorsOfItsHostsFile() throws {
        try withRegistry { registry in
            try withProxy(upstream: registry.host) { mirror in
                try withProxy(upstream: registry.host) { blobsOnly in
                    let directory = NSTemporaryDirectory() + "imgfs-hosts-" + UUID().uuidString
                    defer { try? FileManager.default.removeItem(atPath: directory) }
                    try FileManager.default.createDirectory(atPath: directory + "/" + registry.host, withIntermediateDirectories: true)
                    try """
                        [host."http://\(blobsOnly.host)"]
                          capabilities = ["pull"]
                        [host."http://\(mirror.host)"]
                          capabilities = ["pull", "resolve"]
                        """.write(toFile: directory + "/" + registry.host + "/hosts.toml", atomically: true, encoding: .utf8)
                    let repository = uniqueRepository("hosts")
                    let bytes = try pushImage(client(registry.host), repository: repository, tag: "v1", layer: [1, 2, 3])
                    let c = client(registry.host) { $0.hostsDirectory = directory }
                    #expect(c.mirrorEndpoints.map(\.host) == [blobsOnly.host, mirror.host])
                    // A tag is resolved by the first host that may resolve; the pull-only one is not asked.
                    #expect(try c.manifest(repository, reference: "v1").bytes == bytes)
                    // proxy.py counts the stats request itself.
                    #expect(try blobsOnly.admin("stats")["requests"] == 1)
                    #expect(try mirror.admin("stats")["requests"] == 2)
                }
            }
        }
    }
}
