/// `mount -t fuse.imgfs REF MOUNTPOINT -o OPTIONS` and `/etc/fstab` lines of type `fuse.imgfs`.
///
/// mount(8) runs `/sbin/mount.fuse.imgfs REF MOUNTPOINT [-sfnv] [-o OPTIONS]` when that helper
/// exists (a link to imgfs), else fuse3's `mount.fuse`, which runs `imgfs REF MOUNTPOINT
/// -o OPTIONS` from PATH. Both forms are turned into `imgfs mount` arguments here, before
/// parsing; mount options name `imgfs mount`'s options (`cache-dir=/var/cache/imgfs`,
/// `writable`, `no-prefetch`, `allow_other`, ...), and the generic ones mount(8) and systemd
/// add (`rw`, `nofail`, `_netdev`, `x-systemd.*`, ...) are ignored.
enum MountHelper {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Whether imgfs was started as a mount helper: by that name, or with a reference and a
    /// mount point where a subcommand would be.
    static func isHelperInvocation(programName: String, arguments: [String], subcommands: [String]) -> Bool {
        let name = programName.split(separator: "/").last.map(String.init) ?? programName
        if name.hasPrefix("mount.") { return true }
        guard arguments.count >= 2, let first = arguments.first else { return false }
        return !first.hasPrefix("-") && !subcommands.contains(first)
    }

    static let valueOptions = ["cache-dir", "cache-size", "prefetch-rate", "read-timeout", "log-file", "writable-dir", "record-profile", "mirror"]
    static let flagOptions = ["writable": "--writable", "no-prefetch": "--no-prefetch", "plain-http": "--plain-http",
                              "allow_other": "--allow-other", "allow-other": "--allow-other", "verbose": "--verbose"]
    /// Generic options that mean nothing to imgfs (or are its defaults: a read-only, nodev,
    /// nosuid FUSE mount).
    static let ignored: Set<String> = ["rw", "ro", "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail",
                                       "dev", "nodev", "suid", "nosuid", "exec", "noexec", "async", "sync", "atime", "noatime",
                                       "relatime", "norelatime", "strictatime", "lazytime", "nolazytime", "silent", "loud", "owner", "group"]

    /// `imgfs mount` arguments for a helper invocation; nil for `-f` (fake: do nothing).
    static func mountArguments(_ arguments: [String]) throws(Failure) -> [String]? {
        var positional: [String] = []
        var options: [String] = []
        var rest = arguments[...]
        var fake = false
        while let argument = rest.popFirst() {
            switch argument {
            case "-o":
                guard let value = rest.popFirst() else { throw Failure(description: "-o needs a value") }
                options += value.split(separator: ",").map(String.init)
            case "-t":
                guard rest.popFirst() != nil else { throw Failure(description: "-t needs a value") }
            case "-n", "-s", "-v": break
            case "-f": fake = true
            default:
                if argument.hasPrefix("-o"), argument.count > 2 {
                    options += argument.dropFirst(2).split(separator: ",").map(String.init)
                } else if argument.hasPrefix("-") {
                    throw Failure(description: "unknown mount helper flag \(argument)")
                } else {
                    positional.append(argument)
                }
            }
        }
        guard positional.count == 2 else {
            throw Failure(description: "usage: mount.fuse.imgfs REFERENCE MOUNTPOINT [-o OPTIONS]")
        }
        var result = ["mount"]
        for option in options {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let key = parts[0]
            if ignored.contains(key) || key.hasPrefix("x-") || key == "comment" { continue }
            if let flag = flagOptions[key], parts.count == 1 {
                result.append(flag)
            } else if valueOptions.contains(key), parts.count == 2, !parts[1].isEmpty {
                result += ["--\(key)", parts[1]]
            } else {
                throw Failure(description: "unknown or malformed mount option \"\(option)\" (imgfs takes: \((valueOptions.map { "\($0)=…" } + flagOptions.keys.sorted()).joined(separator: ", ")))")
            }
        }
        return fake ? nil : result + positional
    }
}
