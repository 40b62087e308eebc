import Testing
@testable import FuseFS
#if canImport(Glibc)
import Glibc
#endif

@Suite("Descriptor handover")
struct HandoverTests {
    static let initRequest: [UInt8] = {
        // fuse_in_header (40 bytes: len, opcode 26 = INIT, unique 2, ...) + a 64-byte fuse_init_in.
        var bytes = [UInt8](repeating: 0, count: 104)
        bytes[0] = 104
        bytes[4] = 26
        bytes[8] = 2
        bytes[40] = 7
        bytes[44] = 40
        return bytes
    }()

    @Test func aHandoverPacketRoundTripsAndRejectsDamage() throws {
        let handover = FuseHandover(restarts: 3, upgrades: 2, holderPID: 4242, mountTime: 1_790_000_000, initRequest: Self.initRequest)
        let bytes = handover.encoded()
        #expect(FuseHandover(decoding: bytes) == handover)
        #expect(FuseHandover(decoding: Array(bytes.dropLast())) == nil, "a truncated packet")
        var wrongMagic = bytes
        wrongMagic[0] ^= 0xff
        #expect(FuseHandover(decoding: wrongMagic) == nil)
        #expect(FuseHandover(decoding: Array(bytes.prefix(32))) == nil, "no INIT request")
    }

    @Test func aDescriptorTravelsOverASeqpacketSocket() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        var pipeFDs: [Int32] = [-1, -1]
        #expect(pipe(&pipeFDs) == 0)
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        #expect(HandoverSocket.send(pair[0], Array("hello".utf8), passing: pipeFDs[1]))
        let received = try #require(HandoverSocket.receive(pair[1], timeoutMilliseconds: 1000))
        #expect(received.bytes == Array("hello".utf8))
        let descriptor = try #require(received.descriptor)
        defer { close(descriptor) }
        #expect(descriptor != pipeFDs[1], "a new descriptor for the same pipe")
        // Written through the received descriptor, read from the original pipe.
        var byte: UInt8 = 42
        #expect(write(descriptor, &byte, 1) == 1)
        var back: UInt8 = 0
        #expect(read(pipeFDs[0], &back, 1) == 1)
        #expect(back == 42)
        // A packet without a descriptor, and end of stream.
        #expect(HandoverSocket.send(pair[0], Array("plain".utf8)))
        #expect(HandoverSocket.receive(pair[1], timeoutMilliseconds: 1000)?.descriptor == nil)
        shutdown(pair[0], Int32(SHUT_WR))
        #expect(HandoverSocket.receive(pair[1], timeoutMilliseconds: 1000) == nil)
    }
}
