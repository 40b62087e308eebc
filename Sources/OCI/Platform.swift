import Glibc

/// The OS, architecture and CPU variant an image index entry is built for, in OCI's names
/// (`linux/amd64`, `linux/arm64`, `linux/arm/v7`).
public struct Platform: Hashable, Sendable, Codable, CustomStringConvertible {
    public var architecture: String
    public var os: String
    public var variant: String?

    public init(architecture: String, os: String, variant: String? = nil) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
    }

    /// `os/arch[/variant]`, as `--platform` takes it and docker and containerd write it; the
    /// architecture may be a kernel's name for it (`x86_64`, `aarch64`).
    public init(parsing text: String) throws(PlatformError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count) else { throw PlatformError(text, "expected os/arch or os/arch/variant") }
        for part in parts where part.isEmpty || !part.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }) {
            throw PlatformError(text, part.isEmpty ? "an empty part" : "'\(part)' has characters other than letters, digits, '_', '-' and '.'")
        }
        let (architecture, impliedVariant) = Self.ociArchitecture(parts[1].lowercased())
        self.init(architecture: architecture, os: parts[0].lowercased(), variant: parts.count == 3 ? parts[2].lowercased() : impliedVariant)
    }

    /// Linux on this machine's architecture (`uname -m`, in OCI's names); no variant, so that an
    /// entry of any variant of it matches.
    public static let host: Platform = {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return Platform(architecture: ociArchitecture(machine).architecture, os: "linux")
    }()

    /// OCI's name for an architecture a kernel or toolchain calls `machine`, and the variant the
    /// name implies (`armv7l` is arm/v7).
    static func ociArchitecture(_ machine: String) -> (architecture: String, variant: String?) {
        switch machine {
        case "x86_64", "x86-64": ("amd64", nil)
        case "aarch64": ("arm64", nil)
        case "i386", "i486", "i586", "i686": ("386", nil)
        case "armv5l", "armv6l", "armv7l", "armv8l": ("arm", "v" + String(machine.dropFirst(4).prefix(1)))
        default: (machine, nil)
        }
    }

    /// Whether an image built for `entry` is what this platform asks for: the same OS and
    /// architecture, and the same variant when one is asked for (arm64's only variant, v8, is
    /// what an entry that names none has).
    public func matches(_ entry: Platform) -> Bool {
        guard entry.os == os, entry.architecture == architecture else { return false }
        guard let variant else { return true }
        let defaultVariant = architecture == "arm64" ? "v8" : nil
        return (entry.variant ?? defaultVariant) == variant
    }

    public var description: String { "\(os)/\(architecture)" + (variant.map { "/\($0)" } ?? "") }
}

extension ImageIndex {
    /// The entry for `platform`: the first that matches it or, when the index lists one entry
    /// that names no platform, that one (the index says nothing to choose by).
    public func entry(for platform: Platform) -> Descriptor? {
        if let match = manifests.first(where: { $0.platform.map(platform.matches) ?? false }) { return match }
        return manifests.count == 1 && manifests[0].platform == nil ? manifests[0] : nil
    }

    /// The platforms the entries are for, as an error message lists them.
    public var platforms: [String] { manifests.map { $0.platform?.description ?? "unspecified" } }
}

/// A `--platform` value that is not `os/arch[/variant]`.
public struct PlatformError: Error, Equatable, CustomStringConvertible {
    public let text: String
    public let reason: String

    init(_ text: String, _ reason: String) {
        self.text = text
        self.reason = reason
    }

    public var description: String { "'\(text)' is not a platform (\(reason)); write os/arch[/variant], for example linux/arm64" }
}
