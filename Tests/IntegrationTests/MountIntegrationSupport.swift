import Foundation
import Testing

/// A read of a mounted file failed with `errno`.
struct ReadFailed: Error, CustomStringConvertible {
    var path: String
    var offset: UInt64
    var errno: Int32
    var description: String { "read \(path) at \(offset): \(String(cString: strerror(errno)))" }
}

enum MountSupport {
    static let canMount = FileManager.default.isReadableFile(atPath: "/dev/fuse")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/fusermount3")

    /// `count` bytes at `offset` (fewer at the end of the file), or `ReadFailed` with the errno.
    static func read(_ path: String, offset: UInt64, count: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ReadFailed(path: path, offset: offset, errno: errno) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ReadFailed(path: path, offset: offset + UInt64(done), errno: errno) }
            if n == 0 { break }
            done += n
        }
        return Array(bytes[0..<done])
    }

    /// An offset 4 KiB-aligned in the middle of a frame that holds non-zero data, well inside the
    /// disk, so that a 4 KiB read there (and the kernel's readahead) stays inside one frame.
    static func dataOffset(in path: String, frameSize: Int) throws -> UInt64 {
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64 ?? 0
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ReadFailed(path: path, offset: 0, errno: errno) }
        defer { close(fd) }
        var start = off_t(size / 3)
        for _ in 0..<10_000 {
            let data = lseek(fd, start, 3)  // SEEK_DATA (not exported by Glibc)
            if data < 0 { start = 0; continue }
            let frame = UInt64(data) / UInt64(frameSize) + 1
            let offset = frame * UInt64(frameSize) + UInt64(frameSize / 4)
            if offset + UInt64(frameSize) < size, try read(path, offset: offset, count: 4096).contains(where: { $0 != 0 }) {
                return offset
            }
            start = off_t((frame + 1) * UInt64(frameSize))
        }
        throw ShellFailed(script: "find a data frame in \(path)", result: CommandResult(status: 1, stdout: "", stderr: "", seconds: 0))
    }

    static func isMounted(_ path: String) -> Bool {
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == path }
    }

    /// Where the registry keeps a blob's bytes (`<storage>/docker/registry/v2/blobs/sha256/<xx>/<hex>/data`).
    static func blobDataPath(_ registry: TestRegistry, _ digest: String) throws -> String {
        let path = registry.blobDataPath(digest)
        if FileManager.default.fileExists(atPath: path) { return path }
        // contrib/test/registry.sh keeps its storage in DIR/data.
        let hex = digest.replacingOccurrences(of: "sha256:", with: "")
        let base = (registry.storageDirectory as NSString).deletingLastPathComponent
        let alternative = "\(base)/data/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
        guard FileManager.default.fileExists(atPath: alternative) else {
            throw ShellFailed(script: "locate blob \(digest)", result: CommandResult(status: 1, stdout: "", stderr: "neither \(path) nor \(alternative) exists", seconds: 0))
        }
        return alternative
    }
}

/// What `imgfs status --json` reports for one mount (the fields the tests look at).
struct MountStatusJSON: Decodable {
    struct Statistics: Decodable {
        var bytesFetched: Int64
        var framesFetched: Int64
        var verificationFailures: Int64
        var requestsInFlight: Int
        var peakRequestsInFlight: Int
        var readErrors: Int64
        var sharedFrames: Int64
        var cacheVerificationFailures: Int64?
        var framesFromOtherMounts: Int64?
    }
    var pid: Int32
    var mountpoint: String
    var reference: String
    var manifestDigest: String
    var logFile: String?
    var diskSize: UInt64
    var totalFrames: Int
    var cachedFrames: Int
    var bytesCached: UInt64
    var offline: Bool
    var statistics: Statistics
    var readUnit: String?
    var spanIndex: String?
    var holderPid: Int32?
    var holderAlive: Bool?
    var restarts: UInt32?
    var upgrades: UInt32?
    var version: String?
    var serverBinary: String?
}

/// An `imgfs mount` made by a test. `unmount()` is idempotent and falls back to a lazy
/// `fusermount3 -u -z`, so a `defer` always leaves nothing mounted.
final class MountedImage {
    let mountpoint: String
    let cache: String
    var disk: String { mountpoint + "/disk.img" }

    /// `executable`: the imgfs binary to mount with (default: the one under test).
    init(_ reference: String, scratch: String, cache: String? = nil, extra: [String] = [], executable: String = TestEnvironment.imgfs,
         environment: [String: String] = [:]) throws {
        let id = UUID().uuidString.prefix(8)
        mountpoint = "\(scratch)/mnt-\(id)"
        self.cache = cache ?? "\(scratch)/cache-\(id)"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let result = try runCommand(executable, ["mount", "--cache-dir", self.cache] + extra + [reference, mountpoint],
                                    environment: environment, timeout: 300)
        guard result.status == 0 else {
            unmount()
            throw ShellFailed(script: "imgfs mount \(reference)", result: result)
        }
    }

    var logFile: String { (try? status().logFile) ?? "" }

    /// The status after the daemon's next once-a-second write, so it includes what just happened.
    func settledStatus() throws -> MountStatusJSON {
        usleep(1_300_000)
        return try status()
    }

    func status() throws -> MountStatusJSON {
        let result = try imgfs(["status", "--json", mountpoint], timeout: 60)
        guard result.status == 0 else { throw ShellFailed(script: "imgfs status", result: result) }
        let all = try JSONDecoder().decode([MountStatusJSON].self, from: Data(result.stdout.utf8))
        guard let status = all.first else { throw ShellFailed(script: "imgfs status: no entry", result: result) }
        return status
    }

    func unmount() {
        guard MountSupport.isMounted(mountpoint) else { return }
        let result = try? imgfs(["umount", mountpoint], timeout: 120)
        if result?.status != 0 || MountSupport.isMounted(mountpoint) {
            _ = try? runCommand("/usr/bin/fusermount3", ["-u", "-z", mountpoint], timeout: 30)
        }
    }
}

/// An image pushed with the `imgfs` binary, and what its manifest and index say.
struct PushedImage: Sendable {
    struct Chunk: Sendable {
        var number: Int
        var digest: String
        var offset: UInt64
        var length: UInt64
    }

    var source: String
    var repository: String
    var reference: String
    var manifestDigest: String
    var fsverityDigest: String
    var diskSize: UInt64
    var frameSize: Int
    var chunks: [Chunk]
    /// Per frame: true for holes (from the frame index).
    var holes: [Bool]

    var chunkDigests: Set<String> { Set(chunks.map(\.digest)) }
    var holeFrames: Int { holes.filter { $0 }.count }
    var dataFrames: Int { holes.count - holeFrames }
    /// The end of the last frame that is not a hole.
    var dataEnd: UInt64 { UInt64((holes.lastIndex(of: false) ?? 0) + 1) * UInt64(frameSize) }

    /// The corpus, pushed once per test process.
    static func corpus() throws -> PushedImage { try sharedCorpusImage.get() }

    static func push(_ source: String, repository: String, registry: String? = nil, extra: [String] = []) throws -> PushedImage {
        let address = try registry ?? TestRegistry.shared().address
        let reference = "\(address)/\(repository):v1"
        let result = try imgfs(["push", "--quiet", "--json"] + extra + [source, reference], timeout: 1800)
        guard result.status == 0 else { throw ShellFailed(script: "imgfs push", result: result) }
        struct Summary: Decodable { var manifestDigest: String }
        let summary = try JSONDecoder().decode(Summary.self, from: Data(result.stdout.utf8))

        struct Manifest: Decodable {
            struct Layer: Decodable {
                var mediaType: String
                var digest: String
                var annotations: [String: String]?
            }
            var layers: [Layer]
            var annotations: [String: String]
        }
        let raw = try shell("curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\(address)/v2/\(repository)/manifests/v1")
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(raw.utf8))
        let chunks = manifest.layers.filter { $0.mediaType == "application/vnd.imgfs.disk.chunk.v1+gzip" }.map { layer in
            Chunk(number: Int(layer.annotations?["dev.imgfs.chunk.number"] ?? "") ?? -1, digest: layer.digest,
                  offset: UInt64(layer.annotations?["dev.imgfs.chunk.offset"] ?? "") ?? 0,
                  length: UInt64(layer.annotations?["dev.imgfs.chunk.length"] ?? "") ?? 0)
        }
        guard let indexLayer = manifest.layers.first(where: { $0.mediaType == "application/vnd.imgfs.disk.index.v1" }) else {
            throw ShellFailed(script: "manifest has no index", result: CommandResult(status: 1, stdout: raw, stderr: "", seconds: 0))
        }
        let indexFile = NSTemporaryDirectory() + "imgfs-index-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: indexFile) }
        try shell("curl -sfL -o \(indexFile) http://\(address)/v2/\(repository)/blobs/\(indexLayer.digest)")
        let index = [UInt8](try Data(contentsOf: URL(fileURLWithPath: indexFile)))
        func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(index[at + $1]) << (8 * $1) } }
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(index[at + $1]) << (8 * UInt64($1)) } }
        let frameSize = u32(16)
        let layerCount = u32(20)
        let diskSize = u64(24)
        let frameCount = Int(u64(32))
        let table = 64 + 40 * layerCount
        let holes = (0..<frameCount).map { u32(table + 56 * $0 + 16) & 1 == 1 }
        return PushedImage(source: source, repository: repository, reference: reference, manifestDigest: summary.manifestDigest,
                           fsverityDigest: manifest.annotations["dev.imgfs.disk.fsverity-digest"] ?? "",
                           diskSize: diskSize, frameSize: frameSize, chunks: chunks, holes: holes)
    }
}

private let sharedCorpusImage = Result<PushedImage, any Error> {
    try PushedImage.push(try Corpus.path(), repository: TestEnvironment.repository("mount-corpus"))
}

/// The test registry's access log: one line per request, so tests can count what went over the wire.
struct RegistryLog {
    struct Request: CustomStringConvertible {
        var method: String
        var path: String
        var status: Int
        /// Body bytes the registry sent.
        var bytes: Int = 0
        var isBlob: Bool { path.contains("/blobs/sha256:") }
        var isManifest: Bool { path.contains("/manifests/") }
        var digest: String? { path.range(of: "/blobs/").map { String(path[$0.upperBound...]) } }
        var description: String { "\(method) \(path) \(status)" }
    }

    let path: String

    init(_ registry: TestRegistry) {
        let candidates = [registry.logFile, (registry.storageDirectory as NSString).deletingLastPathComponent + "/registry.log"]
        path = candidates.first { FileManager.default.fileExists(atPath: $0) } ?? registry.logFile
    }

    /// The log's current length: requests after this point are the test's.
    func mark() -> UInt64 {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
    }

    /// The digests of the blobs requested since `mark`, once at least one such request is in
    /// the log or `seconds` have passed. The registry logs a request when its response ends, and
    /// a layer's request can still be streaming the rest of the layer after the read that
    /// started it was answered.
    func blobDigests(since mark: UInt64, repository: String, waitingUpTo seconds: Double = 60) -> Set<String> {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let digests = Set(requests(since: mark, repository: repository).filter(\.isBlob).compactMap(\.digest))
            if !digests.isEmpty || Date() >= deadline { return digests }
            usleep(100_000)
        }
    }

    func requests(since mark: UInt64, repository: String) -> [Request] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        try? handle.seek(toOffset: mark)
        let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        var requests: [Request] = []
        for line in text.split(separator: "\n") {
            // Apache combined format: ... "GET /v2/repo/blobs/sha256:... HTTP/1.1" 206 1234 ...
            guard let open = line.firstIndex(of: "\"") else { continue }
            let rest = line[line.index(after: open)...]
            let fields = rest.split(separator: " ", maxSplits: 3)
            guard fields.count >= 4, fields[2].hasPrefix("HTTP/"), fields[1].hasPrefix("/v2/\(repository)/") else { continue }
            let after = fields[3].split(separator: " ")
            let status = Int(after.first ?? "") ?? 0
            let bytes = after.count > 1 ? Int(after[1]) ?? 0 : 0
            requests.append(Request(method: String(fields[0]), path: String(fields[1]), status: status, bytes: bytes))
        }
        return requests
    }
}

/// A registry of one test's own, for tests that stop it.
final class PrivateRegistry {
    let directory: String
    let address: String
    private var stopped = false

    init(directory: String) throws {
        self.directory = directory
        // Through Python's subprocess with close_fds: the registry must not inherit this test
        // process's descriptors (Foundation's Process waits until every holder of its socket exits).
        let result = try runCommand("/usr/bin/python3", [
            "-c", "import subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, close_fds=True); sys.stdout.write(r.stdout.decode()); sys.exit(r.returncode)",
            TestEnvironment.repositoryRoot + "/contrib/test/registry.sh", "start", directory,
        ], timeout: 60)
        guard result.status == 0 else { throw ShellFailed(script: "registry.sh start", result: result) }
        address = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        _ = try? runCommand(TestEnvironment.repositoryRoot + "/contrib/test/registry.sh", ["stop", directory], timeout: 30)
    }
}
