import Cache
import Foundation
import Glibc
import Testing

/// `kill -9` a writer at random moments; after each, every set bit must cover bytes that hash to
/// the frame's digest. The writer is this same test binary, re-executed with an environment
/// variable that turns `crashWriterChild` from a no-op into an endless store loop.
@Suite struct CrashSafetyTests {
    static let rootVariable = "IMGFS_CACHE_CRASH_WRITER_ROOT"
    static let disk = TestDisk(frameCount: 512, shortLast: 40000, holes: [5, 6, 7, 500], seed: 42)

    @Test func crashWriterChild() throws {
        guard let root = ProcessInfo.processInfo.environment[Self.rootVariable] else { return }
        let disk = Self.disk
        let cache = try disk.open(root, holes: disk.holes)
        FileManager.default.createFile(atPath: root + "/writer-ready", contents: nil)
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            var rng = SystemRandomNumberGenerator()
            while true {
                let missing = (0..<disk.geometry.frameCount).filter { !cache.contains($0) }
                if missing.isEmpty { break }
                let batch = Array(missing.shuffled(using: &rng).prefix(Int.random(in: 1...8, using: &rng)))
                if batch.count == 1 || thread == 0 {
                    for i in batch { try? cache.store(disk.verified(i)) }
                } else {
                    try? cache.store(contentsOf: batch.map(disk.verified))
                }
            }
        }
        // Everything is stored: wait to be killed.
        while true { sleep(1) }
    }

    @Test(.timeLimit(.minutes(2)))
    func killNineNeverLeavesAnUnverifiedBit() throws {
        guard ProcessInfo.processInfo.environment[Self.rootVariable] == nil else { return }
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = Self.disk
        var maxPresent = 0
        for round in 0..<12 {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
            child.arguments = ["--testing-library", "swift-testing", "--filter", "CrashSafetyTests/crashWriterChild"]
            var environment = ProcessInfo.processInfo.environment
            environment[Self.rootVariable] = dir.path
            child.environment = environment
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try? FileManager.default.removeItem(atPath: dir.path + "/writer-ready")
            try child.run()
            // Kill at a random moment after the writer has opened the entry (round 0 also at any
            // moment of creating it).
            if round > 0 {
                for _ in 0..<400 where !FileManager.default.fileExists(atPath: dir.path + "/writer-ready") { usleep(25_000) }
            }
            usleep(UInt32.random(in: 1_000...400_000))
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
            #expect(child.terminationReason == .uncaughtSignal, "round \(round): the writer exited by itself")

            let present = try checkEverySetBitVerifies(disk, root: dir.path)
            maxPresent = max(maxPresent, present)

            // Give the next writer work to do, and check eviction keeps the property too.
            if round % 3 == 2 {
                let entry = entryDirectory(dir.path, disk.key)
                _ = try CacheEviction.evict(root: dir.path, limit: allocatedBytes(entry + "/data") / 2, logger: quietLogger)
                _ = try checkEverySetBitVerifies(disk, root: dir.path)
            }
        }
        // The writer got far enough to make the check mean something.
        #expect(maxPresent > disk.holes.count + 8, "only \(maxPresent) frames present")
    }
}
