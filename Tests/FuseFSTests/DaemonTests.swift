import Foundation
import Testing
@testable import FuseFS

@Suite("Daemon handshake")
struct DaemonTests {
    @Test func readyChildReturns() throws {
        let child = try Daemon.spawn(executable: "/bin/sh", arguments: ["-c", "echo READY >&3; sleep 0.2"], logFile: nil)
        try Daemon.waitForReady(child, timeout: .seconds(10))
        Daemon.reap(child.pid, within: .seconds(5))
    }

    @Test func errorMessageIsThrown() throws {
        let child = try Daemon.spawn(executable: "/bin/sh", arguments: ["-c", "echo 'ERROR /mnt/x: the mount point does not exist' >&3; exit 1"], logFile: nil)
        #expect(throws: DaemonError.childFailed("/mnt/x: the mount point does not exist")) {
            try Daemon.waitForReady(child, timeout: .seconds(10))
        }
    }

    @Test func silentExitIsReported() throws {
        let child = try Daemon.spawn(executable: "/bin/sh", arguments: ["-c", "exit 7"], logFile: nil)
        #expect(throws: DaemonError.childExited("exit status 7")) {
            try Daemon.waitForReady(child, timeout: .seconds(10))
        }
    }

    @Test func timeoutKillsTheChild() throws {
        let child = try Daemon.spawn(executable: "/bin/sh", arguments: ["-c", "sleep 30"], logFile: nil)
        #expect(throws: DaemonError.timedOut(seconds: 0.3)) {
            try Daemon.waitForReady(child, timeout: .milliseconds(300))
        }
        #expect(kill(child.pid, 0) != 0)
    }

    @Test func childGetsItsOwnSessionAndTheLogFile() throws {
        let directory = try MountHarness.temporaryDirectory("log")
        let log = directory + "/daemon.log"
        defer {
            unlink(log)
            rmdir(directory)
        }
        let child = try Daemon.spawn(
            executable: "/bin/sh",
            arguments: ["-c", "echo out; echo err >&2; ps -o sid= -p $$ | tr -d ' '; echo READY >&3"],
            logFile: log
        )
        try Daemon.waitForReady(child, timeout: .seconds(10))
        Daemon.reap(child.pid, within: .seconds(5))
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.contains("out"))
        #expect(lines.contains("err"))
        #expect(lines.contains(Substring("\(child.pid)")), "the child leads its own session")
    }

    @Test func signalHelpersSpeakTheProtocol() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        Daemon.signalFailure(fd: fds[1], message: "two\nlines")
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(fds[0], &buffer, buffer.count)
        close(fds[0])
        #expect(String(decoding: buffer[..<max(count, 0)], as: UTF8.self) == "ERROR two lines\n")
    }

    @Test func unmountOfAPlainDirectoryIsNotMounted() throws {
        let directory = try MountHarness.temporaryDirectory("plain")
        defer { rmdir(directory) }
        #expect(throws: FuseError(mountpoint: directory, reason: .notMounted)) { try Daemon.unmount(directory) }
    }
}
