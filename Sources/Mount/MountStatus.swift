import FoundationEssentials
import Glibc

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
    /// The daemon's `imgfs --version` parts: after an upgrade, a mount still served by the old
    /// binary says so here.
    public var version: String?
    /// The commit the daemon was built from; nil when it was built without one (a plain `swift build`).
    public var commit: String?

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

    public static func write(_ status: MountStatus) throws(MountError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(status) else { return }
        let path = path(forMountpoint: status.mountpoint)
        try LocalFiles.makeDirectories(directory(), mode: 0o700)
        try LocalFiles.writeAtomically(path, Array(data), durable: false)
    }

    public static func read(_ path: String) -> MountStatus? {
        guard let bytes = try? LocalFiles.read(path, limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(MountStatus.self, from: Data(bytes))
    }

    /// Every live mount's status; files of daemons that are gone are removed.
    public static func all() -> [MountStatus] {
        let directory = directory()
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var statuses: [MountStatus] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            let path = directory + "/" + name
            guard let status = read(path) else { continue }
            guard isAlive(status.pid) else {
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

    /// True if a process with `pid` exists (EPERM means it exists but is not ours).
    public static func isAlive(_ pid: Int32) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }
}
