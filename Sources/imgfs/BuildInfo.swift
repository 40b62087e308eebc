import CBuildInfo

/// The version of imgfs and the commit this binary was built from, for `imgfs --version`
/// and the status files a daemon writes.
enum BuildInfo {
    /// Raised by hand at a release; contrib/package/deb names the package after it.
    static let version = "0.2.0"

    /// The commit given to the build by contrib/package/build, or nil for a plain `swift build`.
    static let commit: String? = imgfs_build_commit().map { String(cString: $0) }

    /// `0.2.0 (e3f6e14a1b2c)`, or `0.2.0 (unknown commit)`.
    static var description: String {
        "\(version) (\(commit ?? "unknown commit"))"
    }
}
