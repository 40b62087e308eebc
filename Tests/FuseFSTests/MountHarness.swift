import Foundation
import Logging
import Testing
@testable import FuseFS

/// Mounting for tests: a fresh directory under /tmp, `run()` on a background thread, and
/// an unmount in every exit path.
enum MountHarness {
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// Whether this machine can mount FUSE at all. With CI=true tests run regardless and fail.
    static var canMount: Bool {
        access("/dev/fuse", R_OK | W_OK) == 0 && (geteuid() == 0 || access("/usr/bin/fusermount3", X_OK) == 0)
    }

    static var enabled: Bool { canMount || isCI }

    static func temporaryDirectory(_ label: String) throws -> String {
        var template = Array("/tmp/fusefs-test-\(label)-XXXXXX".utf8CString)
        guard let path = mkdtemp(&template) else {
            throw POSIXFailure(call: "mkdtemp", code: errno)
        }
        return String(cString: path)
    }

    static let logger: Logger = {
        var logger = Logger(label: "FuseFSTests")
        logger.logLevel = ProcessInfo.processInfo.environment["FUSEFS_TEST_DEBUG"] == nil ? .warning : .trace
        return logger
    }()

    final class Running: @unchecked Sendable {
        let mount: FuseMount
        let directory: String
        let finished = DispatchSemaphore(value: 0)
        // Written by the run thread before `finished` is signalled; read after waiting.
        var runError: (any Error)?

        init(mount: FuseMount, directory: String) {
            self.mount = mount
            self.directory = directory
        }

        /// Waits for `run()` to return; false on timeout.
        func waitForRunToEnd(seconds: Double = 20) -> Bool {
            guard finished.wait(timeout: .now() + seconds) == .success else { return false }
            finished.signal()  // so later waits (in defers) return at once
            return true
        }
    }

    /// Mounts `backend`, serves it on a thread, runs `body`, then stops and checks that
    /// `run()` returned and the mount is gone.
    static func withMount<R>(
        _ backend: any FileSystemBackend = InMemoryBackend(),
        options: FuseMountOptions = FuseMountOptions(),
        label: String = "mnt",
        _ body: (Running) throws -> R
    ) throws -> R {
        let directory = try temporaryDirectory(label)
        defer { rmdir(directory) }
        let mount = try FuseMount(mountpoint: directory, backend: backend, options: options, logger: logger)
        let running = Running(mount: mount, directory: directory)
        // Whatever happens below, leave nothing mounted.
        defer {
            mount.stop()
            if !running.waitForRunToEnd() {
                if ProcessInfo.processInfo.environment["FUSEFS_TEST_GDB"] != nil {
                    _ = try? POSIX.shell("gdb -p \(getpid()) -batch -ex 'thread apply all bt 14' > /tmp/fusefs-stacks.txt 2>&1")
                }
                Issue.record("run() did not return after stop()")
            }
            if MountTable.isFuseMount(directory) {
                _ = try? Daemon.runCollectingOutput("/usr/bin/fusermount3", ["-u", "-z", "-q", "--", directory])
            }
        }
        let thread = Thread {
            do {
                try running.mount.run()
            } catch {
                running.runError = error
            }
            running.finished.signal()
        }
        thread.start()
        return try body(running)
    }
}

struct POSIXFailure: Error, Equatable, CustomStringConvertible {
    var call: String
    var code: Int32
    var description: String { "\(call): \(String(cString: strerror(code))) (\(code))" }
}

/// Thin syscall helpers for the black-box checks.
enum POSIX {
    static func open(_ path: String, _ flags: Int32) throws -> Int32 {
        let fd = Glibc.open(path, flags)
        guard fd >= 0 else { throw POSIXFailure(call: "open \(path)", code: errno) }
        return fd
    }

    /// Errno of `open`, or 0 if it succeeded (the descriptor is closed).
    static func openErrno(_ path: String, _ flags: Int32, mode: mode_t = 0o644) -> Int32 {
        let fd = Glibc.open(path, flags, mode)
        if fd >= 0 {
            close(fd)
            return 0
        }
        return errno
    }

    static func pread(_ fd: Int32, offset: UInt64, count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { bytes in
                Glibc.pread(fd, bytes.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXFailure(call: "pread at \(offset + UInt64(done))", code: errno)
            }
            if n == 0 { break }
            done += n
        }
        return Array(buffer[..<done])
    }

    static func readAll(_ path: String) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw POSIXFailure(call: "fstat", code: errno) }
        return try pread(fd, offset: 0, count: Int(info.st_size) + 4096)
    }

    static func status(_ path: String) throws -> stat {
        var info = stat()
        guard stat(path, &info) == 0 else { throw POSIXFailure(call: "stat \(path)", code: errno) }
        return info
    }

    /// `lseek`, or the negated errno.
    static func lseek(_ fd: Int32, _ offset: Int64, _ whence: Int32) -> Int64 {
        let result = Glibc.lseek(fd, off_t(offset), whence)
        return result < 0 ? -Int64(errno) : Int64(result)
    }

    static func listDirectory(_ path: String) throws -> [String] {
        guard let directory = opendir(path) else { throw POSIXFailure(call: "opendir", code: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            names.append(name)
        }
        return names
    }

    /// Runs a shell command; returns its exit status and output.
    static func shell(_ command: String) throws -> (status: Int32, output: String) {
        let result = try Daemon.runCollectingOutput("/bin/sh", ["-c", command])
        return (result.status == 0 ? 0 : (result.status >> 8) & 0xff, result.output)
    }
}
