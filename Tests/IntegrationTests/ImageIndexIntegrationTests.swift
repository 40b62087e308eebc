import Foundation
import Testing

/// Issue 16: an image index resolves the same way in `imgfs pull`, `convert`, `mount` and
/// `verify --remote`: to its entry for the host's platform, or for `--platform`'s. The index
/// (built here and PUT to the real registry) lists two imgfs images of different disks, the
/// host's second, so that taking the first entry would be caught.
@Suite(.serialized) struct ImageIndexIntegrationTests {
    static let partSize = 1024 * 1024

    /// The host's platform as imgfs names it (linux + `uname -m` in OCI's names), and another.
    static let hostArchitecture: String = {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return ["x86_64": "amd64", "aarch64": "arm64"][machine] ?? machine
    }()
    static let host = "linux/\(hostArchitecture)"
    static let other = hostArchitecture == "arm64" ? "linux/amd64" : "linux/arm64"

    struct Pushed {
        var disk: String
        var digest: String
        var size: Int
    }

    /// Two imgfs images (disks of different seeds) in one repository, an index of both tagged
    /// `multi`, and an index of neither tagged `elsewhere`.
    struct Fixture {
        var scratch: String
        /// registry/repository
        var base: String
        var host: Pushed
        var other: Pushed
    }

    static let fixture = Result<Fixture, any Error> {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("image-index")
        let repository = TestEnvironment.repository("index")
        let base = "\(registry.address)/\(repository)"
        let api = "http://\(registry.address)/v2/\(repository)/manifests"
        func push(seed: UInt64, tag: String) throws -> Pushed {
            let disk = try PeerImageFixtures.makeDisk(in: scratch, partSize: ImageIndexIntegrationTests.partSize, parts: 8, seed: seed)
            let result = try imgfs(["push", "--quiet", "--json", "--chunk-size", "4M", disk, "\(base):\(tag)"])
            guard result.status == 0 else { throw ShellFailed(script: "imgfs push", result: result) }
            struct Summary: Decodable { var manifestDigest: String }
            let digest = try JSONDecoder().decode(Summary.self, from: Data(result.stdout.utf8)).manifestDigest
            let size = try shell("curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \(api)/\(digest) | wc -c")
            return Pushed(disk: disk, digest: digest, size: Int(size.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
        }
        let host = try push(seed: 1601, tag: "host")
        let other = try push(seed: 1602, tag: "other")
        let this = ImageIndexIntegrationTests.self
        try putIndex(url: api + "/multi", scratch: scratch, entries: [(other, this.other), (host, this.host)])
        try putIndex(url: api + "/elsewhere", scratch: scratch, entries: [(other, "linux/s390x"), (host, "linux/ppc64le")])
        return Fixture(scratch: scratch, base: base, host: host, other: other)
    }

    static func putIndex(url: String, scratch: String, entries: [(Pushed, String)]) throws {
        let manifests = entries.map { image, platform in
            let parts = platform.split(separator: "/")
            return #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(image.digest)","size":\#(image.size),"platform":{"os":"\#(parts[0])","architecture":"\#(parts[1])"}}"#
        }
        let json = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\#(manifests.joined(separator: ","))]}"#
        let file = "\(scratch)/index-\(UUID().uuidString.prefix(8)).json"
        try json.write(toFile: file, atomically: true, encoding: .utf8)
        try shell("curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary @\(file) \(url)")
    }

    struct PullSummary: Decodable {
        var manifestDigest: String
    }

    func pull(_ reference: String, into directory: String, _ extra: [String] = []) throws -> (CommandResult, PullSummary?) {
        let result = try imgfs(["pull", "--quiet", "--json"] + extra + [reference, directory], timeout: 600)
        return (result, result.status == 0 ? try? JSONDecoder().decode(PullSummary.self, from: Data(result.stdout.utf8)) : nil)
    }

    @Test func pullTakesTheHostsEntryOrThePlatformAskedFor() throws {
        let fixture = try Self.fixture.get()
        let scratch = try TestEnvironment.scratchDirectory("index-pull")
        defer { TestEnvironment.remove(scratch) }

        let (host, hostSummary) = try pull("\(fixture.base):multi", into: scratch + "/host")
        try #require(host.status == 0, "\(host)")
        #expect(hostSummary?.manifestDigest == fixture.host.digest)
        try shell("cmp \(fixture.host.disk) \(scratch)/host/disk.img")

        let (other, otherSummary) = try pull("\(fixture.base):multi", into: scratch + "/other", ["--platform", Self.other])
        try #require(other.status == 0, "\(other)")
        #expect(otherSummary?.manifestDigest == fixture.other.digest)
        try shell("cmp \(fixture.other.disk) \(scratch)/other/disk.img")
    }

    @Test func convertTakesTheHostsEntry() throws {
        let fixture = try Self.fixture.get()
        let scratch = try TestEnvironment.scratchDirectory("index-convert")
        defer { TestEnvironment.remove(scratch) }
        let converted = try imgfs(["convert", "--quiet", "--format", "tart", "\(fixture.base):multi", "\(fixture.base):converted"])
        try #require(converted.status == 0, "\(converted)")
        // One tart image (not an index) of the host's disk.
        let raw = try shell("skopeo inspect --raw --tls-verify=false docker://\(fixture.base):converted")
        #expect(raw.contains("application/vnd.cirruslabs.tart.disk") && !raw.contains("\"manifests\""), "\(raw)")
        let (pulled, _) = try pull("\(fixture.base):converted", into: scratch + "/vm")
        try #require(pulled.status == 0, "\(pulled)")
        try shell("cmp \(fixture.host.disk) \(scratch)/vm/disk.img")
    }

    @Test(.enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
    func mountTakesTheHostsEntryOrThePlatformAskedFor() throws {
        let fixture = try Self.fixture.get()
        let scratch = try TestEnvironment.scratchDirectory("index-mount")
        defer { TestEnvironment.remove(scratch) }
        for (image, extra) in [(fixture.host, [String]()), (fixture.other, ["--platform", Self.other])] {
            let mount = try MountedImage("\(fixture.base):multi", scratch: scratch, extra: ["--no-prefetch"] + extra)
            defer { mount.unmount() }
            #expect(try mount.status().manifestDigest == image.digest)
            try shell("cmp \(image.disk) \(mount.disk)", timeout: 600)
        }
    }

    @Test func verifyRemoteChecksTheEntryAskedFor() throws {
        let fixture = try Self.fixture.get()
        let result = try imgfs(["verify", "--remote", "--json", "--platform", Self.other, "\(fixture.base):multi"])
        try #require(result.status == 0, "\(result)")
        #expect(result.stdout.contains(fixture.other.digest), "\(result.stdout)")
    }

    @Test func anIndexWithoutTheHostsPlatformFailsListingItsPlatforms() throws {
        let fixture = try Self.fixture.get()
        let scratch = try TestEnvironment.scratchDirectory("index-none")
        defer { TestEnvironment.remove(scratch) }
        let reference = "\(fixture.base):elsewhere"
        var commands = [["pull", reference, scratch + "/vm"], ["convert", reference, "\(fixture.base):never"],
                        ["verify", "--remote", reference]]
        if MountSupport.canMount {
            try FileManager.default.createDirectory(atPath: scratch + "/mnt", withIntermediateDirectories: true)
            commands.append(["mount", "--cache-dir", scratch + "/cache", reference, scratch + "/mnt"])
        }
        for command in commands {
            let result = try imgfs(command, timeout: 120)
            #expect(result.status == 1, "\(command): \(result)")
            #expect(result.stderr.contains("no entry for \(Self.host); it has linux/s390x, linux/ppc64le"), "\(command): \(result)")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch + "/vm/disk.img"))
        #expect(!MountSupport.isMounted(scratch + "/mnt"))

        // --platform picks one of them.
        let (picked, summary) = try pull(reference, into: scratch + "/s390x", ["--platform", "linux/s390x"])
        try #require(picked.status == 0, "\(picked)")
        #expect(summary?.manifestDigest == fixture.other.digest)
    }

    @Test func aBadPlatformIsAUsageError() throws {
        for value in ["linux", "linux/arm/v7/x", "linux/x 86"] {
            let result = try imgfs(["pull", "--platform", value, "localhost:1/none:v1", "/nonexistent/vm"], timeout: 60)
            #expect(result.status == 64, "\(value): \(result)")
            #expect(result.stderr.contains("'\(value)' is not a platform"), "\(value): \(result)")
        }
    }
}
