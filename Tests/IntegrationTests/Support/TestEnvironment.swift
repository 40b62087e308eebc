import Foundation
import Testing

/// Where the integration tests find what they drive: the built `imgfs`, a loopback registry and
/// the corpus disk. `contrib/test/run` provides all three through the environment; run alone
/// (`swift test`), the tests start a registry and build a small corpus themselves.
enum TestEnvironment {
    static let environment = ProcessInfo.processInfo.environment
    static let isCI = environment["CI"] == "true"

    /// The repository root, from this file's path.
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The `imgfs` binary under test: `IMGFS_BIN`, else the one built beside the test bundle.
    static let imgfs: String = {
        if let path = environment["IMGFS_BIN"] { return path }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let sibling = bundle.appendingPathComponent("imgfs").path
        if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
        return URL(fileURLWithPath: repositoryRoot).appendingPathComponent(".build/debug/imgfs").path
    }()

    /// A scratch directory for one test, removed by the caller's `defer`.
    static func scratchDirectory(_ name: String) throws -> String {
        let base = environment["IMGFS_TEST_SCRATCH"] ?? "/var/tmp"
        let path = "\(base)/imgfs-it-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// A unique repository name per test run, so tests never see each other's blobs unless they mean to.
    static func repository(_ name: String) -> String {
        "it/\(name)-\(UUID().uuidString.prefix(8).lowercased())"
    }
}

/// The output of a finished command.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double

    var description: String { "exit \(status) after \(String(format: "%.1f", seconds)) s\nstdout: \(stdout)\nstderr: \(stderr)" }
}

struct CommandTimedOut: Error, CustomStringConvertible {
    var command: String
    var description: String { "command timed out: \(command)" }
}

/// Runs a program to completion (killing it after `timeout` seconds), capturing its output.
@discardableResult
func runCommand(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
                timeout: Double = 900, standardInput: String? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/env")
    process.arguments = executable.hasPrefix("/") ? arguments : [executable] + arguments
    var environment = ProcessInfo.processInfo.environment
    for (key, value) in extra { environment[key] = value }
    process.environment = environment
    let stdout = Pipe(), stderr = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    if let standardInput {
        let input = Pipe()
        process.standardInput = input
        input.fileHandleForWriting.write(Data(standardInput.utf8))
        try? input.fileHandleForWriting.close()
    } else {
        process.standardInput = FileHandle.nullDevice
    }
    let start = Date()
    try process.run()
    // Drain both pipes while the process runs so a chatty child cannot block on a full pipe.
    let outData = LockedData(), errData = LockedData()
    let group = DispatchGroup()
    for (pipe, sink) in [(stdout, outData), (stderr, errData)] {
        group.enter()
        DispatchQueue.global().async {
            sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
    }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
        process.terminate()
        usleep(200_000)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        _ = group.wait(timeout: .now() + 5)
        throw CommandTimedOut(command: ([executable] + arguments).joined(separator: " "))
    }
    process.waitUntilExit()
    _ = group.wait(timeout: .now() + 30)
    return CommandResult(status: process.terminationStatus,
                         stdout: String(decoding: outData.get(), as: UTF8.self),
                         stderr: String(decoding: errData.get(), as: UTF8.self),
                         seconds: Date().timeIntervalSince(start))
}

/// Runs the imgfs binary under test.
@discardableResult
func imgfs(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 900) throws -> CommandResult {
    try runCommand(TestEnvironment.imgfs, arguments, environment: environment, timeout: timeout)
}

/// Runs a shell pipeline and requires it to succeed.
@discardableResult
func shell(_ script: String, timeout: Double = 900) throws -> String {
    let result = try runCommand("/bin/bash", ["-c", "set -euo pipefail; " + script], timeout: timeout)
    guard result.status == 0 else { throw ShellFailed(script: script, result: result) }
    return result.stdout
}

struct ShellFailed: Error, CustomStringConvertible {
    var script: String
    var result: CommandResult
    var description: String { "shell failed: \(script)\n\(result)" }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ value: Data) { lock.lock(); data = value; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}
