import FoundationEssentials

/// One file of a fuzz target's seed corpus (`Fuzz/corpus/TARGET`, valid inputs) or of its
/// regressions (`Fuzz/regressions/TARGET`, inputs that once crashed, hung or exhausted memory).
/// docs/FUZZING.md describes both; these tests feed them to the parsers as the fuzz targets in
/// Fuzz/Sources do, so a fixed finding stays fixed in the normal `swift test`.
struct FuzzInput: Sendable, CustomStringConvertible {
    var path: String
    var bytes: [UInt8]
    var isSeed: Bool
    var description: String { path }

    /// Splits the input at NUL bytes into `count` parts, as the fuzz targets' `parts` does.
    func parts(_ count: Int) -> [[UInt8]] {
        var result = bytes.split(separator: 0, maxSplits: count - 1, omittingEmptySubsequences: false).map(Array.init)
        while result.count < count { result.append([]) }
        return result
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func all(_ target: String) throws -> [FuzzInput] {
        try files(in: "Fuzz/corpus/\(target)", isSeed: true) + files(in: "Fuzz/regressions/\(target)", isSeed: false)
    }

    private static func files(in directory: String, isSeed: Bool) throws -> [FuzzInput] {
        let path = repositoryRoot.appendingPathComponent(directory).path
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: path).sorted()
            .filter { !$0.hasPrefix(".") && $0 != "README.md" }
            .map { name in
                let file = "\(directory)/\(name)"
                let data = try Data(contentsOf: repositoryRoot.appendingPathComponent(file))
                return FuzzInput(path: file, bytes: [UInt8](data), isSeed: isSeed)
            }
    }
}
