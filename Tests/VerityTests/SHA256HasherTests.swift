import Testing
import Verity

@Suite struct SHA256HasherTests {
    @Test func emptyInput() {
        #expect(SHA256Hasher.digest([UInt8]()).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func abc() {
        #expect(SHA256Hasher.digest(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func streamingEqualsOneShot() {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let hasher = SHA256Hasher()
        hasher.update(bytes[0..<1])
        hasher.update(bytes[1..<4097])
        hasher.update(bytes[4097...])
        #expect(hasher.finalize() == SHA256Hasher.digest(bytes))
    }

    @Test func updateZerosEqualsZeroBytes() {
        let hasher = SHA256Hasher()
        hasher.updateZeros(count: 200_001)
        #expect(hasher.finalize() == SHA256Hasher.digest([UInt8](repeating: 0, count: 200_001)))
    }
}
