import Testing
import Verity
@testable import OCI

private let hex64 = String(repeating: "ab", count: 32)

@Suite struct ReferenceParsingTests {
    struct Case: Sendable, CustomStringConvertible {
        var text: String
        var registry: String
        var repository: String
        var tag: String?
        var digest: String?
        var description: String { text }
    }

    static let valid: [Case] = [
        Case(text: "ubuntu", registry: "docker.io", repository: "library/ubuntu", tag: "latest"),
        Case(text: "ubuntu:24.04", registry: "docker.io", repository: "library/ubuntu", tag: "24.04"),
        Case(text: "cirruslabs/macos:latest", registry: "docker.io", repository: "cirruslabs/macos", tag: "latest"),
        Case(text: "docker.io/ubuntu", registry: "docker.io", repository: "library/ubuntu", tag: "latest"),
        Case(text: "index.docker.io/foo/bar", registry: "docker.io", repository: "foo/bar", tag: "latest"),
        Case(text: "localhost/vm", registry: "localhost", repository: "vm", tag: "latest"),
        Case(text: "localhost:5000/vm/ubuntu:24.04", registry: "localhost:5000", repository: "vm/ubuntu", tag: "24.04"),
        Case(text: "127.0.0.1:5000/a/b/c/d", registry: "127.0.0.1:5000", repository: "a/b/c/d", tag: "latest"),
        Case(text: "ghcr.io/org/img@sha256:\(hex64)", registry: "ghcr.io", repository: "org/img", tag: nil, digest: "sha256:\(hex64)"),
        Case(text: "ghcr.io/org/img:v1@sha256:\(hex64)", registry: "ghcr.io", repository: "org/img", tag: "v1", digest: "sha256:\(hex64)"),
        Case(text: "[::1]:5000/vm:x", registry: "[::1]:5000", repository: "vm", tag: "x"),
        Case(text: "Registry/vm", registry: "Registry", repository: "vm", tag: "latest"),
        Case(text: "my-registry.example.com:443/a.b/c_d/e__f/g--h:Tag_1.0-rc", registry: "my-registry.example.com:443", repository: "a.b/c_d/e__f/g--h", tag: "Tag_1.0-rc"),
        Case(text: "foo/bar:_tag", registry: "docker.io", repository: "foo/bar", tag: "_tag"),
        Case(text: "x/" + String(repeating: "a", count: 200), registry: "docker.io", repository: "x/" + String(repeating: "a", count: 200), tag: "latest"),
        Case(text: "a:" + String(repeating: "t", count: 128), registry: "docker.io", repository: "library/a", tag: String(repeating: "t", count: 128)),
    ]

    @Test(arguments: valid)
    func parsesValid(_ c: Case) throws {
        let ref = try Reference(parsing: c.text)
        #expect(ref.registry == c.registry)
        #expect(ref.repository == c.repository)
        #expect(ref.tag == c.tag)
        #expect(ref.digest?.description == c.digest)
    }

    static let invalid: [(String, ReferenceError.Problem)] = [
        ("", .empty),
        ("Ubuntu", .uppercaseRepository("Ubuntu")),
        ("localhost:5000/VM", .uppercaseRepository("VM")),
        ("foo/-bar", .invalidRepositoryComponent("-bar")),
        ("foo/bar-", .invalidRepositoryComponent("bar-")),
        ("foo//bar", .invalidRepositoryComponent("")),
        ("foo/a..b", .invalidRepositoryComponent("a..b")),
        ("foo/a___b", .invalidRepositoryComponent("a___b")),
        ("foo/a_.b", .invalidRepositoryComponent("a_.b")),
        ("foo:-tag", .invalidTag("-tag")),
        ("foo:.tag", .invalidTag(".tag")),
        ("foo:", .invalidTag("")),
        ("foo:" + String(repeating: "t", count: 129), .invalidTag(String(repeating: "t", count: 129))),
        ("foo@sha256:abc", .invalidDigest("malformed digest 'sha256:abc': expected sha256: and 64 lowercase hex digits")),
        ("foo@md5:abc", .invalidDigest("unsupported digest algorithm 'md5' in 'md5:abc': imgfs reads sha256 only")),
        ("localhost:99999/foo", .invalidRegistry("localhost:99999")),
        ("bad_host.io/foo", .invalidRegistry("bad_host.io")),
        ("-a.io/foo", .invalidRegistry("-a.io")),
        ("localhost:5000/", .missingRepository),
        ("ghcr.io/foo bar", .invalidRepositoryComponent("foo bar")),
        ("a/" + String(repeating: "b", count: 260), .nameTooLong),
    ]

    @Test(arguments: invalid)
    func rejectsInvalid(_ text: String, _ problem: ReferenceError.Problem) {
        #expect(throws: ReferenceError(text, problem)) { try Reference(parsing: text) }
    }

    @Test func errorDescriptionNamesTheString() {
        do {
            _ = try Reference(parsing: "localhost:5000/VM:1")
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "invalid image reference 'localhost:5000/VM:1': repository 'VM' must be lowercase")
        }
    }

    @Test func manifestReferencePrefersDigest() throws {
        #expect(try Reference(parsing: "localhost:5000/vm:1").manifestReference == "1")
        #expect(try Reference(parsing: "localhost:5000/vm:1@sha256:\(hex64)").manifestReference == "sha256:\(hex64)")
        #expect(try Reference(parsing: "localhost:5000/vm").manifestReference == "latest")
    }

    @Test func descriptionIsCanonical() throws {
        #expect(try Reference(parsing: "ubuntu").description == "docker.io/library/ubuntu:latest")
        #expect(try Reference(parsing: "localhost:5000/vm@sha256:\(hex64)").description == "localhost:5000/vm@sha256:\(hex64)")
        #expect(try Reference(parsing: "ubuntu").apiHost == "registry-1.docker.io")
        #expect(try Reference(parsing: "ghcr.io/a/b").apiHost == "ghcr.io")
    }

    @Test(arguments: [
        ("localhost:5000/vm", true), ("localhost/vm", true), ("127.0.0.1:5000/vm", true), ("127.1.2.3/vm", true),
        ("[::1]:5000/vm", true), ("ghcr.io/vm", false), ("128.0.0.1/vm", false), ("127.0.0.1.nip.io/vm", false),
        ("localhost.example.com/vm", false), ("ubuntu", false),
    ])
    func loopback(_ text: String, _ expected: Bool) throws {
        #expect(try Reference(parsing: text).isLoopback == expected)
    }
}
