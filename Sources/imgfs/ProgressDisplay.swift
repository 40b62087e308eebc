import FoundationEssentials
import Glibc
import Threading

/// A progress line on stderr: redrawn in place on a terminal, a plain line every few seconds
/// otherwise (CI logs), nothing with --quiet.
final class ProgressDisplay: Sendable {
    struct Sample: Sendable {
        var done: Int64
        var total: Int64
        var detail: String
    }

    private let label: String
    private let sample: @Sendable () -> Sample
    private let isTerminal: Bool
    private let thread = BackgroundThread(name: "progress")

    init(label: String, quiet: Bool, sample: @escaping @Sendable () -> Sample) {
        self.label = label
        self.sample = sample
        self.isTerminal = isatty(2) == 1
        guard !quiet else { return }
        thread.start { [self] in self.run() }
    }

    func stop() {
        thread.stop()
    }

    private func run() {
        let start = monotonicNow()
        var lastPlain = start
        while !thread.pause(isTerminal ? 0.2 : 0.25) {
            let now = monotonicNow()
            let s = sample()
            if isTerminal {
                writeStandardError("\r\u{1B}[K" + line(s, elapsed: now - start))
            } else if now - lastPlain >= 5 {
                lastPlain = now
                writeStandardError(line(s, elapsed: now - start) + "\n")
            }
        }
        let final = sample()
        if isTerminal {
            writeStandardError("\r\u{1B}[K" + line(final, elapsed: monotonicNow() - start) + "\n")
        }
    }

    private func line(_ s: Sample, elapsed: Double) -> String {
        let fraction = s.total > 0 ? min(1, Double(s.done) / Double(s.total)) : 0
        let width = 24
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let rate = elapsed > 0 ? Double(s.done) / elapsed : 0
        let eta = rate > 0 && fraction < 1 ? Double(s.total - s.done) / rate : 0
        return "\(label) \(bar) \(Int(fraction * 100))%  \(formatBytes(s.done))/\(formatBytes(s.total))  \(formatBytes(Int64(rate)))/s  ETA \(formatDuration(eta))  \(s.detail)"
    }
}


func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : oneDecimal(value) + " " + units[unit]
}

/// `value` rounded to one decimal, as `%.1f` prints it: the binary links FoundationEssentials
/// only (no ICU), which has no `String(format:)`.
func oneDecimal(_ value: Double) -> String {
    guard value.isFinite else { return "\(value)" }
    if value < 0 { return "-" + oneDecimal(-value) }
    let tenths = Int64((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

func formatDuration(_ seconds: Double) -> String {
    let total = Int(seconds.rounded())
    return total >= 3600 ? "\(total / 3600):\(pad2(total / 60 % 60)):\(pad2(total % 60))" : "\(total / 60):\(pad2(total % 60))"
}

private func pad2(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
