import Foundation

enum TestData {
    static func random(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = generator.next()
            for _ in 0..<8 where i < count {
                bytes[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return bytes
    }

    /// Text-like bytes that compress well but not trivially.
    static func compressible(_ count: Int) -> [UInt8] {
        let words = ["disk", "frame", "layer", "gzip", "verity", "block", "sector", "\n", " ", "0x1f8b"].map { Array($0.utf8) }
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8]()
        bytes.reserveCapacity(count + 16)
        while bytes.count < count { bytes.append(contentsOf: words[Int.random(in: 0..<words.count, using: &generator)]) }
        return Array(bytes.prefix(count))
    }

    static let sizes = [0, 1, 4095, 64 * 1024, 1 << 20, (1 << 20) + 3]

    static func all(size: Int) -> [(String, [UInt8])] {
        [("random", random(size)), ("zeros", [UInt8](repeating: 0, count: size)), ("text", compressible(size))]
    }
}

/// Runs a system tool with `input` on stdin and returns its stdout.
func runTool(_ path: String, _ arguments: [String], input: [UInt8]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let stdin = Pipe()
    let stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    try process.run()
    // Write from another thread so a full stdout pipe cannot deadlock the writer.
    let writer = Thread {
        stdin.fileHandleForWriting.write(Data(input))
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ToolFailure(description: "\(path) \(arguments) exited with \(process.terminationStatus)")
    }
    return [UInt8](output)
}

struct ToolFailure: Error, CustomStringConvertible {
    let description: String
}
