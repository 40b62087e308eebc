#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CFuse3
import Logging
import Synchronization

/// Routes libfuse's own messages (which it would print to stderr) into swift-log, and
/// lets `FuseMount.init` capture the last error libfuse reported on the calling thread,
/// so a failed mount says why.
enum LibfuseLog {
    private struct Sinks {
        /// Messages from threads not capturing (workers) go to the latest mount's logger.
        var fallback: Logger?
        var captures: [pthread_t: Capture] = [:]
    }

    private struct Capture {
        var logger: Logger
        var lastError: String?
    }

    private static let sinks = Mutex(Sinks())
    private static let installed = Mutex(false)

    static func install() {
        installed.withLock { installed in
            guard !installed else { return }
            installed = true
            fuse_set_log_func { level, format, arguments in
                guard let format, let arguments else { return }
                var buffer = [CChar](repeating: 0, count: 1024)
                _ = buffer.withUnsafeMutableBufferPointer { buffer in
                    vsnprintf(buffer.baseAddress, buffer.count, format, arguments)
                }
                let bytes = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
                let message = String(decoding: bytes, as: UTF8.self)
                LibfuseLog.record(level: level, message: message.trimmingTrailingNewlines())
            }
        }
    }

    private static func record(level: fuse_log_level, message: String) {
        let isError = level.rawValue <= FUSE_LOG_ERR.rawValue
        let logger = sinks.withLock { sinks -> Logger? in
            let thread = pthread_self()
            if var capture = sinks.captures[thread] {
                if isError { capture.lastError = message }
                sinks.captures[thread] = capture
                return capture.logger
            }
            return sinks.fallback
        }
        guard let logger else { return }
        let swiftLevel: Logger.Level = switch level.rawValue {
        case ...FUSE_LOG_ERR.rawValue: .error
        case FUSE_LOG_WARNING.rawValue: .warning
        case FUSE_LOG_NOTICE.rawValue, FUSE_LOG_INFO.rawValue: .info
        default: .debug
        }
        logger.log(level: swiftLevel, "libfuse: \(message)")
    }

    /// Runs `body`, returning its value and the last error libfuse logged on this thread meanwhile.
    static func capturing<T>(_ logger: Logger, _ body: () -> T) -> (value: T, lastError: String?) {
        let thread = pthread_self()
        sinks.withLock { sinks in
            sinks.fallback = logger
            sinks.captures[thread] = Capture(logger: logger)
        }
        let value = body()
        let lastError = sinks.withLock { sinks in sinks.captures.removeValue(forKey: thread)?.lastError }
        return (value, lastError)
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var result = self
        while result.last?.isNewline == true { result.removeLast() }
        return result
    }
}
