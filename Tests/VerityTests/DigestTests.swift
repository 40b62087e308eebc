import Testing
import Verity

@Suite struct DigestTests {
    static let valid = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

    @Test func parsesAndPrintsBack() throws {
        let digest = try Digest(parsing: Self.valid)
        #expect(digest.description == Self.valid)
        #expect(digest == SHA256Hasher.digest(Array("abc".utf8)))
        #expect(digest.short == "ba7816bf8f01")
    }

    @Test(arguments: [
        "",
        "sha256:",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag",
    ])
    func rejectsMalformed(text: String) {
        #expect(throws: DigestError.malformed(text)) { try Digest(parsing: text) }
    }

    @Test func rejectsLeadingSpace() {
        #expect(throws: DigestError.self) { try Digest(parsing: " " + Self.valid) }
    }

    @Test func rejectsOtherAlgorithms() {
        let text = "sha512:" + String(repeating: "0", count: 128)
        #expect(throws: DigestError.unsupportedAlgorithm("sha512", text: text)) { try Digest(parsing: text) }
    }
}
