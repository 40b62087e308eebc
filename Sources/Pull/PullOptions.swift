import Glibc
import OCI

/// How `imgfs pull` fetches and writes.
public struct PullOptions: Sendable {
    /// Layers or frame runs fetched and decoded at once; each worker decodes on its own thread,
    /// so more workers than cores only helps to hide network latency.
    public var jobs: Int = max(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) + 2
    /// Turn on fs-verity for the finished disk.img (FS_IOC_ENABLE_VERITY).
    public var enableVerity = false
    /// The mount cache root to copy verified frames from (imgfs images), or nil to not look.
    public var cacheRoot: String? = MountCacheRoot.resolve()
    /// Largest compressed span of imgfs frames fetched with one range request.
    public var maximumRunBytes: Int64 = 32 * 1024 * 1024
    /// The entry to pull from an image index.
    public var platform: Platform = .host

    public init() {}

    func validated() throws(PullError) -> PullOptions {
        guard jobs >= 1, jobs <= 256 else { throw .invalidOption("--jobs must be between 1 and 256") }
        return self
    }
}

/// Where `imgfs mount` keeps its frame cache: `$IMGFS_CACHE_DIR`, else `$XDG_CACHE_HOME/imgfs`,
/// else `~/.cache/imgfs`; `/var/cache/imgfs` for root.
public enum MountCacheRoot {
    public static func resolve() -> String? {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
        if let dir = env("IMGFS_CACHE_DIR") { return dir }
        if getuid() == 0 { return "/var/cache/imgfs" }
        if let xdg = env("XDG_CACHE_HOME") { return xdg + "/imgfs" }
        if let home = env("HOME") { return home + "/.cache/imgfs" }
        return nil
    }
}
