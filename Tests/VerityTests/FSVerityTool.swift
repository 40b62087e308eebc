import Foundation
import Testing
import Verity

/// The real `fsverity digest`, the oracle for `FSVerityHasher`.
///
/// Without the tool the comparisons are skipped on a workstation, but with `CI=true` they run
/// and fail, so a CI image that lost the tool cannot pass silently.
enum FSVerityTool {
    static let path = "/usr/bin/fsverity"
    static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: path) }
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
    static var shouldRun: Bool { isInstalled || isCI }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func digest(ofFileAt file: String) throws -> Digest {
        guard isInstalled else { throw Failure(description: "\(path) is missing; install the fsverity package") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["digest", "--hash-alg=sha256", "--block-size=4096", file]
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "fsverity digest \(file) exited with \(process.terminationStatus)")
        }
        // The line is "sha256:<hex> <file>".
        let text = String(decoding: output, as: UTF8.self)
        guard let first = text.split(separator: " ").first else {
            throw Failure(description: "unexpected fsverity output: \(text)")
        }
        return try Digest(parsing: String(first))
    }
}

/// A scratch directory removed when the test ends.
final class ScratchDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "imgfs-verity-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
}
