import Foundation
import Testing
import Verity
@testable import Fetch

@Suite struct ChallengeParsingTests {
    @Test func bearer() {
        let c = AuthChallenge(header: #"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#)
        #expect(c == .bearer(realm: "https://auth.docker.io/token", service: "registry.docker.io"))
    }

    @Test func basicAndUnknown() {
        #expect(AuthChallenge(header: #"Basic realm="Registry Realm""#) == .basic)
        #expect(AuthChallenge(header: "basic") == .basic)
        #expect(AuthChallenge(header: "Negotiate abc") == nil)
        #expect(AuthChallenge(header: "Bearer service=x") == nil)
    }

    @Test func quotedCommas() {
        let p = AuthChallenge.parameters(#"realm="a,b", scope="repository:x:pull,push",service=s"#)
        #expect(p == ["realm": "a,b", "scope": "repository:x:pull,push", "service": "s"])
    }

    @Test func origins() {
        #expect(RegistryClient.origin(of: "http://127.0.0.1:5000/v2/x") == "http://127.0.0.1:5000")
        #expect(RegistryClient.origin(of: "https://Example.com/a?b") == "https://example.com:443")
        #expect(RegistryClient.origin(of: "https://example.com:443/") == "https://example.com:443")
        #expect(RegistryClient.origin(of: "http://localhost:5000/x") != RegistryClient.origin(of: "http://127.0.0.1:5000/x"))
    }

    @Test func errorBodyParsing() {
        let body = Array(#"{"errors":[{"code":"DENIED","message":"no","detail":{}}]}"#.utf8)
        #expect(FetchError.parseBody(body).errors == [.init(code: "DENIED", message: "no")])
        #expect(FetchError.parseBody(Array("<html>bad gateway</html>\nmore".utf8)).raw == "<html>bad gateway</html>")
    }
}

@Suite struct DockerConfigTests {
    func withConfig(_ json: String, _ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgfs-dc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("config.json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        try body(path)
    }

    @Test func readsAuthsInEveryKeySpelling() throws {
        let auth = Data("bob:pa:ss".utf8).base64EncodedString()
        try withConfig("""
        {"auths":{"localhost:5000":{"auth":"\(auth)"},"https://ghcr.io":{"username":"u","password":"p"},
        "https://quay.io/v1/":{"identitytoken":"tok"},"https://index.docker.io/v1/":{"auth":"\(auth)"}},"other":1}
        """) { path in
            let store = DockerConfigCredentials(configPath: path)
            #expect(store.credentials(forRegistry: "localhost:5000") == .basic(username: "bob", password: "pa:ss"))
            #expect(store.credentials(forRegistry: "ghcr.io") == .basic(username: "u", password: "p"))
            #expect(store.credentials(forRegistry: "quay.io") == .identityToken("tok"))
            #expect(store.credentials(forRegistry: "docker.io") == .basic(username: "bob", password: "pa:ss"))
            #expect(store.credentials(forRegistry: "example.com") == nil)
        }
    }

    @Test func credentialHelper() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgfs-helper-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let helper = dir.appendingPathComponent("docker-credential-imgfstest").path
        try """
        #!/bin/sh
        read server
        [ "$1" = get ] && [ "$server" = "registry.test:5000" ] || exit 1
        echo '{"ServerURL":"registry.test:5000","Username":"helper-user","Secret":"helper-secret"}'
        """.write(toFile: helper, atomically: true, encoding: .utf8)
        chmod(helper, 0o755)
        #expect(CredentialHelper.run(executable: helper, arguments: ["get"], input: Array("registry.test:5000".utf8)) != nil)
        try withConfig(#"{"credHelpers":{"registry.test:5000":"imgfstest"}}"#) { path in
            var store = DockerConfigCredentials(configPath: path)
            store.helperPrefix = dir.path + "/docker-credential-"
            #expect(store.credentials(forRegistry: "registry.test:5000") == .basic(username: "helper-user", password: "helper-secret"))
        }
    }

    @Test func writerKeepsOtherKeysAndIsPrivate() throws {
        try withConfig(#"{"auths":{"ghcr.io":{"auth":"eDp5"}},"credsStore":"","proxies":{"default":{"httpProxy":"x"}}}"#) { path in
            try DockerConfigWriter.store(registry: "localhost:5000", username: "me", password: "pw", configPath: path)
            let store = DockerConfigCredentials(configPath: path)
            #expect(store.credentials(forRegistry: "localhost:5000") == .basic(username: "me", password: "pw"))
            #expect(store.credentials(forRegistry: "ghcr.io") == .basic(username: "x", password: "y"))
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.contains("httpProxy"))
            var info = stat()
            stat(path, &info)
            #expect(info.st_mode & 0o777 == 0o600)
        }
    }
}
