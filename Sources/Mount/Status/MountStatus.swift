import FoundationEssentials
import Glibc
import SystemIO

/// What a running mount reports about itself, written by its daemon once a second to
/// `<runtime dir>/imgfs/mounts/<escaped mountpoint>.json` and read by `imgfs status`.
public struct MountStatus: Codable, Sendable {
    public var pid: Int32
    public var mountpoint: String
    public var reference: String
    public var manifestDigest: String
    public var cacheDirectory: String
    public var logFile: String?
    public var diskSize: UInt64
    public var totalFrames: Int
    public var cachedFrames: Int
    public var bytesCached: UInt64
    public var offline: Bool
    public var prefetch: Bool
    public var startedAt: Double
    public var updatedAt: Double
    public var statistics: MountStatistics.Snapshot
    public var hitRatio: Double
    /// The copy-on-write layer of a `--writable` mount (its `overlay.json` names the base image).
    public var writableDirectory: String?
    /// The descriptor holder that keeps the mount across restarts of the serving process
    /// (`pid` above); nil for a `--foreground` mount, which has none.
    public var holderPid: Int32?
    /// Times the serving process was started again after it died, and replaced by `imgfs upgrade`.
    public var restarts: UInt32?
    public var upgrades: UInt32?
    /// The serving binary: imgfs's version, and the path and modification time of the file
    /// it was started from.
    public var version: String?
    public var serverBinary: String?
    public var serverBinaryModified: Double?
    /// Filled in by `imgfs status` (not the daemon): whether `holderPid` still runs.
    public var holderAlive: Bool?
    /// The commit the daemon was built from; nil when it was built without one (a plain `swift build`).
    public var commit: String?
    /// What one fetch brings: "frames" (an imgfs image), "spans" (a lume or tart image through
    /// its span index, `spanIndex`), or "layers" (a foreign image without one: whole layers).
    public var readUnit: String?
    public var spanIndex: String?

    public init(pid: Int32, mountpoint: String, reference: String, manifestDigest: String, cacheDirectory: String,
                logFile: String?, diskSize: UInt64, totalFrames: Int, cachedFrames: Int, bytesCached: UInt64,
                offline: Bool, prefetch: Bool, startedAt: Double, updatedAt: Double, statistics: MountStatistics.Snapshot) {
        self.pid = pid
        self.mountpoint = mountpoint
        self.reference = reference
        self.manifestDigest = manifestDigest
        self.cacheDirectory = cacheDirectory
        self.logFile = logFile
        self.diskSize = diskSize
        self.totalFrames = totalFrames
        self.cachedFrames = cachedFrames
        self.bytesCached = bytesCached
        self.offline = offline
        self.prefetch = prefetch
        self.startedAt = startedAt
        self.updatedAt = updatedAt
        self.statistics = statistics
        self.hitRatio = statistics.hitRatio
    }
}

/// Where status files live, and reading and writing them.
public enum MountStatusFiles {
    /// `$XDG_RUNTIME_DIR/imgfs/mounts`, or `/run/imgfs/mounts` for root, else `/tmp/imgfs-<uid>/mounts`.
    public static func directory() -> String {
        if let runtime = getenv("XDG_RUNTIME_DIR"), runtime.pointee != 0 {
            return String(cString: runtime) + "/imgfs/mounts"
        }
        if geteuid() == 0 { return "/run/imgfs/mounts" }
        return "/tmp/imgfs-\(geteuid())/mounts"
    }

    /// The status file of `mountpoint` (an absolute path): slashes and percent signs escaped, so
    /// that distinct mountpoints never share a file name.
    public static func path(forMountpoint mountpoint: String) -> String {
        var name = ""
        for scalar in mountpoint.unicodeScalars {
            switch scalar {
            case "%": name += "%25"
            case "/": name += "%2F"
            default: name.unicodeScalars.append(scalar)
            }
        }
        return directory() + "/" + name + ".json"
    }

    /// The socket of the descriptor holder of `mountpoint` (an absolute path): a hash of it,
    /// since socket paths are limited to 107 bytes.
    public static func holderSocketPath(forMountpoint mountpoint: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in mountpoint.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return holderDirectory() + "/" + String(repeating: "0", count: 16 - hex.count) + hex + ".sock"
    }

    public static func holderDirectory() -> String {
        String(directory().dropLast("/mounts".count)) + "/holders"
    }

    public static func write(_ status: MountStatus) throws(MountError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(status) else { return }
        let path = path(forMountpoint: status.mountpoint)
        do {
            try FileIO.makeDirectories(directory(), mode: 0o700)
            try FileIO.writeAtomically(Array(data), to: path, durable: false)
        } catch { throw MountError(error) }
    }

    public static func read(_ path: String) -> MountStatus? {
        guard let bytes = try? FileIO.readFile(path, limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(MountStatus.self, from: Data(bytes))
    }

    /// Every live mount's status; files of daemons that are gone (server and holder) are removed.
    public static func all() -> [MountStatus] {
        let directory = directory()
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var statuses: [MountStatus] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            let path = directory + "/" + name
            guard let status = read(path) else { continue }
            // A dead server whose holder lives is being replaced: the next one rewrites the file.
            guard isAlive(status.pid) || status.holderPid.map(isAlive) == true else {
                unlink(path)
                continue
            }
            statuses.append(status)
        }
        return statuses
    }

    public static func remove(mountpoint: String) {
        unlink(path(forMountpoint: mountpoint))
    }

    /// True if a process with `pid` exists; a zombie counts as gone.
    public static func isAlive(_ pid: Int32) -> Bool { ProcessLiveness.isAlive(pid) }
}
