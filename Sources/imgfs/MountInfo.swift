import Glibc

/// The mounts of this process's namespace, from `/proc/self/mountinfo`.
enum MountInfo {
    struct Entry {
        var mountpoint: String
        var fsType: String
    }

    static func entries() -> [Entry] {
        guard let file = fopen("/proc/self/mountinfo", "r") else { return [] }
        defer { fclose(file) }
        var result: [Entry] = []
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            let fields = String(cString: line).split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { continue }
            result.append(Entry(mountpoint: unescape(fields[4]), fsType: String(fields[dash + 1])))
        }
        return result
    }

    /// The file system type mounted at `path`, if anything is.
    static func fsType(at path: String) -> String? {
        entries().last { $0.mountpoint == path }?.fsType
    }

    /// mountinfo writes space, tab, newline and backslash as `\ooo`.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var rest = Array(field.utf8)[...]
        while let byte = rest.popFirst() {
            if byte == UInt8(ascii: "\\"), rest.count >= 3, let value = UInt8(String(decoding: rest.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                rest = rest.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
