import Cache
import Foundation
import Glibc
import Testing

/// Cross-process frame claims. Two `FrameCache` handles on one entry in one process stand for two
/// daemons: the claims are open-file-description locks, which conflict between descriptions
/// whatever process holds them. A killed holder is a real child process.
@Suite struct FrameClaimTests {
    @Test func oneHandleFetchesAndTheOtherFindsTheVerifiedFrame() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8, seed: 5)
        let a = try disk.open(dir.path)
        defer { a.close() }
        let b = try disk.open(dir.path)
        defer { b.close() }

        guard case .owned = try a.claim(3, waitUntil: nil) else { throw TestFailure("the first claim of a frame is not owned") }
        guard case .busy = try b.claim(3, waitUntil: nil) else { throw TestFailure("a claim held by another handle is not busy") }
        #expect(try b.isClaimedByAnotherProcess(3))
        #expect(try !a.isClaimedByAnotherProcess(3))
        // Other frames are free for the other handle.
        guard case .owned = try b.claim(4, waitUntil: nil) else { throw TestFailure("frame 4 is not free") }
        b.releaseClaim(4)

        try a.stage(disk.verified(3))
        a.releaseClaim(3)
        #expect(!b.contains(3), "b's bitmap copy does not know frame 3 yet")
        guard case .storedByAnotherProcess(let frame) = try b.claim(3, waitUntil: nil) else {
            throw TestFailure("the frame the other handle stored was not found")
        }
        #expect(frame.index == 3 && frame.bytes == disk.frames[3])
        #expect(b.contains(3) && b.isVerified(3))
        #expect(try b.readFrame(3) == disk.frames[3])
        // b's claim was released with the answer.
        #expect(try !a.isClaimedByAnotherProcess(3))
    }

    @Test func aWaitingClaimEndsWhenTheHolderStoresTheFrame() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8, seed: 6)
        let a = try disk.open(dir.path)
        defer { a.close() }
        let b = try disk.open(dir.path)
        defer { b.close() }

        guard case .owned = try a.claim(5, waitUntil: nil) else { throw TestFailure("not owned") }
        let holder = Thread {
            usleep(300_000)
            try? a.stage(disk.verified(5))
            a.releaseClaim(5)
        }
        holder.start()
        let start = monotonic()
        let result = try b.claim(5, waitUntil: start + 20)
        guard case .storedByAnotherProcess(let frame) = result else { throw TestFailure("got \(result) instead of the stored frame") }
        #expect(frame.bytes == disk.frames[5])
        #expect(monotonic() - start >= 0.25, "it waited for the holder")
    }

    @Test func bytesThatDoNotVerifyAreNeverTakenForTheFrame() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8, seed: 7)
        let a = try disk.open(dir.path)
        defer { a.close() }
        let b = try disk.open(dir.path)
        defer { b.close() }

        // A holder that died half way through its pwrite: half of the frame's bytes, then nothing.
        guard case .owned = try a.claim(6, waitUntil: nil) else { throw TestFailure("not owned") }
        patch(a.dataFilePath, at: 6 * disk.geometry.frameSize, with: Array(disk.frames[6].prefix(disk.frames[6].count / 2)))
        a.releaseClaim(6)
        guard case .owned = try b.claim(6, waitUntil: monotonic() + 5) else { throw TestFailure("half-written bytes were taken for the frame") }
        #expect(!b.contains(6))
        b.releaseClaim(6)
    }

    @Test func aHeldClaimDoesNotHoldAWaiterPastItsDeadline() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8, seed: 8)
        let a = try disk.open(dir.path)
        defer { a.close() }
        let b = try disk.open(dir.path)
        defer { b.close() }

        guard case .owned = try a.claim(2, waitUntil: nil) else { throw TestFailure("not owned") }
        let start = monotonic()
        guard case .busy = try b.claim(2, waitUntil: start + 0.5) else { throw TestFailure("a held claim was taken") }
        let waited = monotonic() - start
        #expect(waited >= 0.45 && waited < 3, "waited \(waited) s for a 0.5 s deadline")
    }

    @Test func closingAHandleReleasesItsClaims() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8, seed: 9)
        let a = try disk.open(dir.path)
        let b = try disk.open(dir.path)
        defer { b.close() }
        guard case .owned = try a.claim(1, waitUntil: nil) else { throw TestFailure("not owned") }
        a.close()
        guard case .owned = try b.claim(1, waitUntil: nil) else { throw TestFailure("a closed handle's claim is still held") }
    }

    /// A daemon killed with SIGKILL while it holds a claim: the kernel drops its locks with its
    /// descriptors, so a waiter gets the claim at once instead of at its deadline.
    @Test func aClaimOfAKilledProcessIsFreedAtOnce() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8, seed: 10)
        let b = try disk.open(dir.path)
        defer { b.close() }
        let claims = entryDirectory(dir.path, disk.key) + "/claims"
        #expect(FileManager.default.fileExists(atPath: claims))

        // struct flock on Linux x86-64 and arm64: short l_type, short l_whence, (pad), off_t l_start,
        // off_t l_len, pid_t l_pid, (pad). F_OFD_SETLK is 37, F_WRLCK is 1.
        let script = """
            import fcntl, os, struct, sys, time
            fd = os.open(sys.argv[1], os.O_RDWR)
            fcntl.fcntl(fd, 37, struct.pack("hhxxxxqqi4x", 1, 0, 7, 1, 0))
            print("held", flush=True)
            time.sleep(120)
            """
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        child.arguments = ["-c", script, claims]
        let output = Pipe()
        child.standardOutput = output
        try child.run()
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) } }
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        try #require(line.hasPrefix("held"), "the child did not take the lock: \(line)")

        guard case .busy = try b.claim(7, waitUntil: nil) else { throw TestFailure("the child's claim was not seen") }
        #expect(try b.isClaimedByAnotherProcess(7))
        let pid = child.processIdentifier
        let killer = Thread {
            usleep(300_000)
            kill(pid, SIGKILL)
        }
        killer.start()
        let start = monotonic()
        let result = try b.claim(7, waitUntil: start + 30)
        let waited = monotonic() - start
        guard case .owned = result else { throw TestFailure("got \(result) after the holder was killed") }
        #expect(waited < 10, "waited \(waited) s for a killed holder's claim")
        b.releaseClaim(7)
        child.waitUntilExit()
    }
}

private func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
