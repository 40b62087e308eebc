import Testing
import Verity
@testable import Fetch

@Suite struct BlobTests {
    @Test func monolithicUploadThenHeadAndGet() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = randomBytes(300_000)
            let digest = SHA256Hasher.digest(bytes)
            #expect(try c.blobSize(repository, digest: digest) == nil)
            try c.uploadBlob(repository, digest: digest, size: Int64(bytes.count), body: .bytes(bytes))
            #expect(try c.blobSize(repository, digest: digest) == Int64(bytes.count))
            #expect(try c.blob(repository, digest: digest, maxSize: 1 << 20) == bytes)
        }
    }

    @Test func chunkedUploadFromReader() throws {
        try withRegistry { registry in
            let c = client(registry.host) { $0.chunkedUploadThreshold = 100_000; $0.chunkSize = 64 * 1024 + 7 }
            let repository = uniqueRepository()
            let bytes = randomBytes(1_000_003)
            let digest = SHA256Hasher.digest(bytes)
            try c.uploadBlob(repository, digest: digest, size: Int64(bytes.count), body: .reader(size: Int64(bytes.count)) { offset, buffer in
                let n = min(buffer.count, bytes.count - Int(offset), 10_000)
                bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + n])) }
                return n
            })
            #expect(try c.blobSize(repository, digest: digest) == Int64(bytes.count))
            var received: [UInt8] = []
            try c.blob(repository, digest: digest, range: nil) { received.append(contentsOf: $0) }
            #expect(SHA256Hasher.digest(received) == digest)
            // More than a few PATCHes went out.
            #expect(registry.directory == nil || registry.log.components(separatedBy: "\"PATCH ").count - 1 >= 15)
        }
    }

    @Test func uploadWithWrongDigestIsRejected() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = randomBytes(1000)
            let wrong = SHA256Hasher.digest([1, 2, 3])
            do throws(FetchError) {
                try c.uploadBlob(repository, digest: wrong, size: 1000, body: .bytes(bytes))
                Issue.record("upload with a wrong digest succeeded")
            } catch {
                #expect(error.status == 400)
                #expect(error.registryErrors.first?.code == "DIGEST_INVALID")
                #expect(error.description.contains("HTTP 400 DIGEST_INVALID"))
            }
        }
    }

    @Test(arguments: [0..<1, 0..<4096, 1000..<1001, 12345..<200_000, 299_000..<300_000])
    func rangeGetReturnsExactlyTheRange(_ range: Range<Int64>) throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = randomBytes(300_000)
            let digest = SHA256Hasher.digest(bytes)
            try c.uploadBlob(repository, digest: digest, size: Int64(bytes.count), body: .bytes(bytes))
            var received: [UInt8] = []
            try c.blob(repository, digest: digest, range: range) { received.append(contentsOf: $0) }
            #expect(received == Array(bytes[Int(range.lowerBound)..<Int(range.upperBound)]))
            if registry.directory != nil {
                #expect(registry.log.contains("\"GET /v2/\(repository)/blobs/\(digest) HTTP/1.1\" 206 "))
            }
        }
    }

    @Test func rangePastTheEndIsAnError() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = randomBytes(1000)
            let digest = SHA256Hasher.digest(bytes)
            try c.uploadBlob(repository, digest: digest, size: 1000, body: .bytes(bytes))
            #expect(throws: FetchError.self) {
                try c.blob(repository, digest: digest, range: 900..<1100) { _ in }
            }
        }
    }

    @Test func missingBlobIsTypedNotFound() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let digest = SHA256Hasher.digest([9, 9, 9])
            do throws(FetchError) {
                _ = try c.blob(repository, digest: digest, maxSize: 100)
                Issue.record("expected 404")
            } catch {
                #expect(error.kind == .notFound)
                #expect(error.status == 404)
                #expect(error.digest == digest)
                #expect(error.registryErrors.first?.code == "BLOB_UNKNOWN")
                #expect(error.description == "registry \(registry.host) has no blob \(repository)@\(digest) (HTTP 404 BLOB_UNKNOWN: blob unknown to registry)")
            }
        }
    }

    @Test func maxSizeIsEnforced() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = randomBytes(10_000)
            let digest = SHA256Hasher.digest(bytes)
            try c.uploadBlob(repository, digest: digest, size: 10_000, body: .bytes(bytes))
            do throws(FetchError) {
                _ = try c.blob(repository, digest: digest, maxSize: 5_000)
                Issue.record("expected tooLarge")
            } catch {
                #expect(error.kind == .tooLarge(limit: 5_000, size: nil))
            }
        }
    }

    @Test func sinkErrorsAbortAndAreWrapped() throws {
        struct Stop: Error {}
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = randomBytes(100_000)
            let digest = SHA256Hasher.digest(bytes)
            try c.uploadBlob(repository, digest: digest, size: 100_000, body: .bytes(bytes))
            do throws(FetchError) {
                try c.blob(repository, digest: digest, range: nil) { _ in throw Stop() }
                Issue.record("expected the sink's error")
            } catch {
                #expect(error.kind == .callback)
                #expect(error.underlying is Stop)
            }
        }
    }

    @Test func crossRepositoryMount() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let source = uniqueRepository("src")
            let target = uniqueRepository("dst")
            let bytes = randomBytes(5000)
            let digest = SHA256Hasher.digest(bytes)
            try c.uploadBlob(source, digest: digest, size: 5000, body: .bytes(bytes))
            #expect(try c.mountBlob(target, digest: digest, from: source) == true)
            #expect(try c.blobSize(target, digest: digest) == 5000)
            let absent = SHA256Hasher.digest([7])
            #expect(try c.mountBlob(target, digest: absent, from: source) == false)
        }
    }

    @Test func connectionsAreReused() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = randomBytes(2000)
            let digest = SHA256Hasher.digest(bytes)
            try c.uploadBlob(repository, digest: digest, size: 2000, body: .bytes(bytes))
            let before = c.statistics
            for i in 0..<20 {
                var got: [UInt8] = []
                try c.blob(repository, digest: digest, range: Int64(i)..<Int64(i + 100)) { got.append(contentsOf: $0) }
                #expect(got.count == 100)
            }
            let after = c.statistics
            #expect(after.requests - before.requests == 20)
            #expect(after.newConnections - before.newConnections <= 1)
        }
    }

    @Test func concurrentRangeReads() throws {
        try withRegistry { registry in
            let c = client(registry.host)
            let repository = uniqueRepository()
            let bytes = randomBytes(1 << 20)
            let digest = SHA256Hasher.digest(bytes)
            try c.uploadBlob(repository, digest: digest, size: Int64(bytes.count), body: .bytes(bytes))
            DispatchQueue.concurrentPerform(iterations: 32) { i in
                let start = Int64(i * 30_000)
                var got: [UInt8] = []
                do {
                    try c.blob(repository, digest: digest, range: start..<(start + 20_000)) { got.append(contentsOf: $0) }
                } catch {
                    Issue.record("read \(i) failed: \(error)")
                }
                #expect(got == Array(bytes[Int(start)..<Int(start) + 20_000]))
            }
        }
    }
}

import Dispatch
