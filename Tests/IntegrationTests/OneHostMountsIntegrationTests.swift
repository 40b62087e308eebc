import Foundation
import Synchronization
import Testing

/// Issue 12 on one host: N `imgfs mount` daemons of one image sharing one cache root fetch each
/// frame once between them (per-frame claims in the cache entry, `FrameClaims`), and say so in
/// their status (`framesFromOtherMounts`). The registry's access log is the witness.
@Suite(.enabled(if: MountSupport.canMount, "needs /dev/fuse and fusermount3"))
struct OneHostMountsIntegrationTests {
    @Test func fourMountsOfOneImageFetchEachFrameOnce() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("one-host")
        defer { TestEnvironment.remove(scratch) }
        // 24 MiB of random data in a 32 MiB disk of 64 KiB frames: 384 data frames, 128 holes.
        let source = scratch + "/disk.img"
        let made = try runCommand("/bin/sh", ["-c", "head -c 25165824 /dev/urandom > \(source) && truncate -s 32M \(source)"])
        try #require(made.status == 0, "\(made)")
        let image = try PushedImage.push(source, repository: TestEnvironment.repository("one-host"), extra: ["--frame-size", "64K"])
        try #require(image.frameSize == 65536 && image.dataFrames >= 300, "\(image.dataFrames) data frames of \(image.frameSize) bytes")
        let log = AccessLog(path: RegistryLog(registry).path)
        let mark = log.lineCount()

        let cache = scratch + "/cache"
        // No background prefetch: every mount opens the entry before any frame is in it, so each
        // one's frames are exactly those it fetched plus those it found another mount had fetched.
        var mounts: [MountedImage] = []
        defer { for mount in mounts { mount.unmount() } }
        for _ in 0..<4 { mounts.append(try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch"])) }

        // Four readers at once, one per mount, each comparing the whole disk with the source. One
        // `cmp` per thread: a shell's `wait` for background children hangs here, since the test
        // runner's threads (and so its children) block SIGCHLD.
        let compared = Mutex<[Int: CommandResult]>([:])
        let readers = mounts.map(\.disk).enumerated().map { i, disk in
            Thread {
                let result = (try? runCommand("/usr/bin/cmp", [source, disk], timeout: 600))
                    ?? CommandResult(status: -1, stdout: "", stderr: "cmp timed out", seconds: 600)
                compared.withLock { $0[i] = result }
            }
        }
        for reader in readers { reader.start() }
        while compared.withLock({ $0.count }) < readers.count { usleep(50_000) }
        for (i, result) in compared.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            #expect(result.status == 0, "mount \(i) served different bytes: \(result)")
        }

        let statuses = try mounts.map { try $0.settledStatus() }
        let fetched = statuses.map(\.statistics.framesFetched)
        let fromOthers = statuses.map { $0.statistics.framesFromOtherMounts ?? -1 }
        #expect(fetched.reduce(0, +) == Int64(image.dataFrames), "frames fetched per mount \(fetched), \(image.dataFrames) data frames")
        #expect(fromOthers.reduce(0, +) > 0, "no mount reports frames from other mounts: \(fromOthers)")
        for (i, status) in statuses.enumerated() {
            #expect(status.statistics.framesFetched + (status.statistics.framesFromOtherMounts ?? 0) == Int64(image.dataFrames),
                    "mount \(i): \(status.statistics.framesFetched) fetched + \(fromOthers[i]) from other mounts != \(image.dataFrames)")
            #expect(status.statistics.readErrors == 0)
        }
        let text = try imgfs(["status", mounts[0].mountpoint])
        #expect(text.stdout.contains("FROM-MOUNTS") && text.stdout.contains(String(fromOthers[0])), "\(text)")

        // The registry: every chunk blob's bytes served once in all, however many mounts read.
        let served = log.waitUntilQuiet().blobBytes(since: mark, repository: image.repository, digests: image.chunkDigests)
        let oneCopy = try image.chunkDigests.reduce(UInt64(0)) { total, digest in
            let path = try MountSupport.blobDataPath(registry, digest)
            return total + ((try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0)
        }
        let bytes = served.values.reduce(0, +)
        #expect(bytes > 0 && bytes <= oneCopy, "the registry served \(bytes) chunk bytes for four mounts; one copy is \(oneCopy)")
        print("four mounts on one cache root: \(bytes) chunk bytes served, one copy \(oneCopy); fetched \(fetched), from other mounts \(fromOthers)")
    }

    /// A process that holds every frame's claim (as a daemon fetching them all would) and is then
    /// killed with SIGKILL: the kernel drops its locks, and a mount reading the disk, which waits
    /// for those claims, takes them over at once and serves every byte well inside one read
    /// timeout, never bytes the dead process did not verify.
    @Test func claimsOfAKilledProcessDoNotHoldUpTheOtherMounts() throws {
        let scratch = try TestEnvironment.scratchDirectory("one-host-kill")
        defer { TestEnvironment.remove(scratch) }
        let source = scratch + "/disk.img"
        let made = try runCommand("/bin/sh", ["-c", "head -c 4194304 /dev/urandom > \(source)"])
        try #require(made.status == 0, "\(made)")
        let image = try PushedImage.push(source, repository: TestEnvironment.repository("one-host-kill"), extra: ["--frame-size", "64K"])
        let cache = scratch + "/cache"
        let mount = try MountedImage(image.reference, scratch: scratch, cache: cache, extra: ["--no-prefetch", "--read-timeout", "20"])
        defer { mount.unmount() }
        let entries = try FileManager.default.contentsOfDirectory(atPath: cache + "/disks").filter { $0.count == 64 }
        try #require(entries.count == 1, "\(entries)")
        let claims = cache + "/disks/" + entries[0] + "/claims"

        // struct flock (x86-64, arm64): l_type, l_whence, pad, l_start, l_len (0: to the end), l_pid, pad.
        let script = """
            import fcntl, os, struct, sys, time
            fd = os.open(sys.argv[1], os.O_RDWR)
            fcntl.fcntl(fd, 37, struct.pack("hhxxxxqqi4x", 1, 0, 0, 0, 0))  # F_OFD_SETLK, F_WRLCK, every byte
            print("held", flush=True)
            time.sleep(300)
            """
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        holder.arguments = ["-c", script, claims]
        let output = Pipe()
        holder.standardOutput = output
        try holder.run()
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        try #require(line.hasPrefix("held"), "the holder did not take the claims: \(line)")

        let done = Mutex<CommandResult?>(nil)
        let disk = mount.disk
        let reader = Thread {
            let result = (try? runCommand("/usr/bin/cmp", [source, disk], timeout: 300))
                ?? CommandResult(status: -1, stdout: "", stderr: "cmp timed out", seconds: 300)
            done.withLock { $0 = result }
        }
        let start = Date()
        reader.start()
        sleep(2)
        #expect(done.withLock { $0 } == nil, "the read finished while every claim was held elsewhere")
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        while done.withLock({ $0 }) == nil { usleep(50_000) }
        let result = try #require(done.withLock { $0 })
        let seconds = Date().timeIntervalSince(start)
        #expect(result.status == 0, "\(result)")
        #expect(seconds < 15, "the read took \(seconds) s; the claims were freed after 2 s and the read timeout is 20 s")
        let status = try mount.settledStatus()
        #expect(status.statistics.readErrors == 0)
        #expect(status.statistics.framesFetched == Int64(image.dataFrames))
    }
}

/// The registry's access log with the bytes of each answer (Apache combined format), which
/// `RegistryLog` does not keep.
struct AccessLog {
    let path: String

    func lines() -> [Substring] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
    }

    func lineCount() -> Int { lines().count }

    /// Returns once no line has been added for a second (the registry logs an answer when it has
    /// sent it), or after 15 s.
    func waitUntilQuiet() -> AccessLog {
        var count = lineCount()
        var stillSince = Date()
        let end = Date().addingTimeInterval(15)
        while Date() < end && Date().timeIntervalSince(stillSince) < 1 {
            usleep(100_000)
            let now = lineCount()
            if now != count { count = now; stillSince = Date() }
        }
        return self
    }

    /// Bytes of the GETs of `digests` in `repository` answered since line `mark`, by digest.
    func blobBytes(since mark: Int, repository: String, digests: Set<String>) -> [String: UInt64] {
        var bytes: [String: UInt64] = [:]
        for line in lines().dropFirst(mark) {
            // ... "GET /v2/<repo>/blobs/sha256:<hex> HTTP/1.1" 206 65536 "referer" "agent"
            let parts = line.split(separator: "\"", omittingEmptySubsequences: false)
            guard parts.count > 2 else { continue }
            let request = parts[1].split(separator: " ")
            guard request.count == 3, request[0] == "GET", request[1].hasPrefix("/v2/\(repository)/blobs/") else { continue }
            let digest = String(request[1].split(separator: "/").last ?? "")
            guard digests.contains(digest) else { continue }
            let answer = parts[2].split(separator: " ")
            guard answer.count >= 2, let count = UInt64(answer[1]) else { continue }
            bytes[digest, default: 0] += count
        }
        return bytes
    }
}
