import FoundationEssentials
import ArgumentParser
import Glibc

/// Renders an error once, as one line on stderr, and exits non-zero.
/// Library errors carry their own context (file, offset, blob, HTTP status) in `description`.
func fail(_ error: any Error) -> ExitCode {
    let message = String(describing: error)
    writeStandardError("imgfs: error: \(message)\n")
    return ExitCode(1)
}

func writeStandardError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = write(2, base + offset, bytes.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}

/// A command-line mistake found after parsing (a size or reference that does not parse).
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A command whose every error is rendered once, as one line, by `fail`: it implements
/// `execute()` and gets `run()`.
protocol OneLineErrors: ParsableCommand {
    func execute() throws
}

extension OneLineErrors {
    func run() throws {
        do {
            try execute()
        } catch {
            throw fail(error)
        }
    }
}

/// Prints `value` on stdout as the stable JSON that `--json` promises scripts.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
