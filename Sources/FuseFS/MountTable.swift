#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads `/proc/self/mountinfo`.
public enum MountTable {
    public struct Mount: Equatable {
        public var mountpoint: String
        public var fsType: String
        public var source: String
        /// "major:minor" of the mounted file system (its backing-dev-info name).
        public var device: String
    }

    public static func mounts() -> [Mount] {
        guard let file = fopen("/proc/self/mountinfo", "r") else { return [] }
        defer { fclose(file) }
        var result: [Mount] = []
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            let fields = String(cString: line).split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            result.append(Mount(
                mountpoint: unescape(fields[4]),
                fsType: String(fields[dash + 1]),
                source: String(fields[dash + 2]),
                device: String(fields[2])
            ))
        }
        return result
    }

    /// The file system type mounted at exactly `path`, if anything is (the last: mounts stack).
    public static func fsType(at path: String) -> String? {
        mounts().last { $0.mountpoint == path }?.fsType
    }

    /// Whether a FUSE file system is mounted at `path` (compared after resolving symlinks).
    static func isFuseMount(_ path: String) -> Bool {
        let resolved = realPath(path) ?? path
        return mounts().contains { $0.mountpoint == resolved && ($0.fsType == "fuse" || $0.fsType.hasPrefix("fuse.")) }
    }

    /// The FUSE mount at `path`, if any (the last one: mounts stack).
    static func fuseMount(at path: String) -> Mount? {
        let resolved = realPath(path) ?? path
        return mounts().last { $0.mountpoint == resolved && ($0.fsType == "fuse" || $0.fsType.hasPrefix("fuse.")) }
    }

    /// The FUSE mount at exactly `path`, without resolving it: resolving a path inside a mount
    /// that has no server yet would wait for one.
    static func fuseMount(exactly path: String) -> Mount? {
        mounts().last { $0.mountpoint == path && ($0.fsType == "fuse" || $0.fsType.hasPrefix("fuse.")) }
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// mountinfo writes space, tab, newline and backslash as `\ooo`.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
               let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
