import Glibc
import Testing
import Verity
@testable import OCI

/// `--platform` parsing, the host's platform, and which image index entry a platform takes.
@Suite struct PlatformTests {
    @Test(arguments: [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("LINUX/AMD64", "linux/amd64"),
        // The kernel's names for architectures are OCI's.
        ("linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/armv7l", "linux/arm/v7"),
        ("linux/i686", "linux/386"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("darwin/arm64", "darwin/arm64"),
    ])
    func parses(text: String, expected: String) throws {
        #expect(try Platform(parsing: text).description == expected)
    }

    @Test(arguments: ["", "linux", "linux/", "/amd64", "linux//v7", "linux/arm/v7/extra", "linux/amd 64", "linux/amd64/", "linux:amd64"])
    func rejects(text: String) {
        #expect(throws: PlatformError.self) { try Platform(parsing: text) }
    }

    @Test func theErrorNamesTheValueAndTheForm() {
        do {
            _ = try Platform(parsing: "amd64")
            Issue.record("amd64 parsed")
        } catch {
            #expect(error.description.contains("'amd64'"))
            #expect(error.description.contains("os/arch[/variant]"))
        }
    }

    @Test func theHostIsLinuxOnUnamesArchitectureInOCINames() {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let expected = ["x86_64": "amd64", "aarch64": "arm64"][machine] ?? Platform.ociArchitecture(machine).architecture
        #expect(Platform.host == Platform(architecture: expected, os: "linux"))
        #expect(Platform.host.variant == nil)
    }

    @Test func matchingNeedsOSAndArchitectureAndTheVariantOnlyWhenAskedFor() throws {
        let amd64 = try Platform(parsing: "linux/amd64")
        #expect(amd64.matches(Platform(architecture: "amd64", os: "linux")))
        #expect(amd64.matches(Platform(architecture: "amd64", os: "linux", variant: "v3")))
        #expect(!amd64.matches(Platform(architecture: "arm64", os: "linux")))
        #expect(!amd64.matches(Platform(architecture: "amd64", os: "windows")))

        let armv7 = try Platform(parsing: "linux/arm/v7")
        #expect(armv7.matches(Platform(architecture: "arm", os: "linux", variant: "v7")))
        #expect(!armv7.matches(Platform(architecture: "arm", os: "linux", variant: "v6")))
        #expect(!armv7.matches(Platform(architecture: "arm", os: "linux")))

        // arm64 has one variant, v8, which an entry that names none is.
        let arm64v8 = try Platform(parsing: "linux/arm64/v8")
        #expect(arm64v8.matches(Platform(architecture: "arm64", os: "linux")))
        #expect(arm64v8.matches(Platform(architecture: "arm64", os: "linux", variant: "v8")))
        #expect(try Platform(parsing: "linux/arm64").matches(Platform(architecture: "arm64", os: "linux", variant: "v8")))
    }

    static func entry(_ text: String?, _ n: Int) throws -> Descriptor {
        Descriptor(mediaType: .ociManifest, digest: SHA256Hasher.digest([UInt8(n)]), size: 100,
                   platform: try text.map { try Platform(parsing: $0) })
    }

    @Test func anIndexGivesTheFirstMatchingEntry() throws {
        let index = ImageIndex(manifests: [try Self.entry("linux/arm/v7", 0), try Self.entry("linux/arm64", 1),
                                           try Self.entry("linux/amd64", 2), try Self.entry("linux/amd64", 3)])
        #expect(index.entry(for: try Platform(parsing: "linux/amd64")) == index.manifests[2])
        #expect(index.entry(for: try Platform(parsing: "linux/arm64/v8")) == index.manifests[1])
        #expect(index.entry(for: try Platform(parsing: "linux/arm")) == index.manifests[0])
        #expect(index.entry(for: try Platform(parsing: "linux/s390x")) == nil)
        #expect(index.platforms == ["linux/arm/v7", "linux/arm64", "linux/amd64", "linux/amd64"])
    }

    @Test func aLoneEntryWithoutAPlatformIsTakenButNotOneAmongOthers() throws {
        let lone = ImageIndex(manifests: [try Self.entry(nil, 0)])
        #expect(lone.entry(for: .host) == lone.manifests[0])
        #expect(lone.platforms == ["unspecified"])
        let two = ImageIndex(manifests: [try Self.entry(nil, 0), try Self.entry("linux/s390x", 1)])
        #expect(two.entry(for: try Platform(parsing: "linux/amd64")) == nil)
        #expect(ImageIndex(manifests: []).entry(for: .host) == nil)
    }
}
