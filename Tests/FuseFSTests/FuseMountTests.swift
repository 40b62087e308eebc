import Foundation
import Synchronization
import Testing
@testable import FuseFS

private let seekDataWhence: Int32 = 3
private let seekHoleWhence: Int32 = 4

@Suite("FuseMount over a real FUSE mount", .enabled(if: MountHarness.enabled, "needs /dev/fuse (set CI=true to fail instead of skip)"))
struct FuseMountTests {
    @Test func directoryListsFilesWithSizesAndModes() throws {
        try MountHarness.withMount { running in
            let names = try POSIX.listDirectory(running.directory).sorted()
            #expect(names == [".", "..", "broken.bin", "config.json", "disk.img", "scratch.bin"])

            let root = try POSIX.status(running.directory)
            #expect(root.st_mode & S_IFMT == S_IFDIR)

            let disk = try POSIX.status(running.directory + "/disk.img")
            #expect(disk.st_mode & S_IFMT == S_IFREG)
            #expect(disk.st_mode & 0o7777 == 0o444)
            #expect(UInt64(disk.st_size) == InMemoryBackend.diskSize)
            #expect(disk.st_ino == 2)
            #expect(disk.st_mtim.tv_sec == 1_700_000_000)

            let config = try POSIX.status(running.directory + "/config.json")
            #expect(config.st_size == InMemoryBackend.config.count)
            #expect(config.st_ino == 3)

            let scratch = try POSIX.status(running.directory + "/scratch.bin")
            #expect(scratch.st_mode & 0o7777 == 0o644)

            #expect(throws: POSIXFailure.self) { try POSIX.status(running.directory + "/missing") }
            #expect(running.mount.kernelReferences(file: 0) >= 1)

            // The first open raises the kernel's readahead past the 128 KiB INIT allows.
            if geteuid() == 0, let device = MountTable.fuseMount(at: running.directory)?.device {
                _ = try POSIX.readAll(running.directory + "/config.json")
                let readahead = try String(contentsOfFile: "/sys/class/bdi/\(device)/read_ahead_kb", encoding: .utf8)
                #expect(readahead.trimmingCharacters(in: .whitespacesAndNewlines) == "\(FuseMountOptions().maxReadahead / 1024)")
            }
        }
    }

    /// The backend chooses each open's readahead: the kernel takes the bdi's value when a file
    /// is opened, so FuseFS writes it before answering the open.
    @Test func eachOpenGetsTheReadaheadTheBackendAsksFor() throws {
        guard geteuid() == 0 else { return }
        let backend = InMemoryBackend()
        backend.diskReadahead.withLock { $0 = 128 << 10 }
        try MountHarness.withMount(backend) { running in
            let device = try #require(MountTable.fuseMount(at: running.directory)?.device)
            func readahead() throws -> String {
                try String(contentsOfFile: "/sys/class/bdi/\(device)/read_ahead_kb", encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let disk = try POSIX.open(running.directory + "/disk.img", O_RDONLY)
            close(disk)
            #expect(try readahead() == "128")
            _ = try POSIX.readAll(running.directory + "/config.json")
            #expect(try readahead() == "\(FuseMountOptions().maxReadahead / 1024)")
            backend.diskReadahead.withLock { $0 = nil }
            let again = try POSIX.open(running.directory + "/disk.img", O_RDONLY)
            close(again)
            #expect(try readahead() == "\(FuseMountOptions().maxReadahead / 1024)")
        }
    }

    @Test func readsWholeFilesRangesAndPastEOF() throws {
        try MountHarness.withMount { running in
            let config = try POSIX.readAll(running.directory + "/config.json")
            #expect(config == InMemoryBackend.config)

            let fd = try POSIX.open(running.directory + "/disk.img", O_RDONLY)
            defer { close(fd) }
            let whole = try POSIX.pread(fd, offset: 0, count: Int(InMemoryBackend.diskSize))
            #expect(whole.count == Int(InMemoryBackend.diskSize))
            #expect(whole == InMemoryBackend.expected(.disk, offset: 0, count: whole.count))

            var generator = SystemRandomNumberGenerator()
            for _ in 0..<200 {
                let offset = UInt64.random(in: 0..<InMemoryBackend.diskSize, using: &generator)
                let count = Int.random(in: 1...(3 << 20), using: &generator)
                let bytes = try POSIX.pread(fd, offset: offset, count: count)
                #expect(bytes == InMemoryBackend.expected(.disk, offset: offset, count: count), "range \(offset)+\(count)")
            }
            // Across the end, at the end, and past it.
            #expect(try POSIX.pread(fd, offset: InMemoryBackend.diskSize - 10, count: 100).count == 10)
            #expect(try POSIX.pread(fd, offset: InMemoryBackend.diskSize, count: 100).isEmpty)
            #expect(try POSIX.pread(fd, offset: InMemoryBackend.diskSize + (1 << 30), count: 100).isEmpty)
        }
    }

    @Test func warmReadsComeFromThePageCache() throws {
        let backend = InMemoryBackend()
        try MountHarness.withMount(backend) { running in
            let path = running.directory + "/disk.img"
            let fd = try POSIX.open(path, O_RDONLY)
            _ = try POSIX.pread(fd, offset: 10 << 20, count: 2 << 20)
            close(fd)
            let before = backend.readCalls.load(ordering: .relaxed)
            #expect(before > 0)
            let again = try POSIX.open(path, O_RDONLY)
            defer { close(again) }
            let bytes = try POSIX.pread(again, offset: 10 << 20, count: 2 << 20)
            #expect(bytes == InMemoryBackend.expected(.disk, offset: 10 << 20, count: 2 << 20))
            #expect(backend.readCalls.load(ordering: .relaxed) == before, "keep_cache should serve the second open from the page cache")
        }
    }

    @Test func seekDataAndHoleAgreeWithTheBackend() throws {
        let backend = InMemoryBackend()
        try MountHarness.withMount(backend) { running in
            let fd = try POSIX.open(running.directory + "/disk.img", O_RDONLY)
            defer { close(fd) }
            let size = InMemoryBackend.diskSize
            var offsets: [UInt64] = [0, 1, 4095, 4096, 5000, size - 1]
            for island in InMemoryBackend.islands {
                offsets += [island.lowerBound, island.upperBound - 1, island.upperBound, island.lowerBound &- 1].filter { $0 < size }
            }
            for _ in 0..<100 { offsets.append(UInt64.random(in: 0..<size)) }
            for offset in offsets {
                for (whence, kind) in [(seekDataWhence, SeekWhence.data), (seekHoleWhence, .hole)] {
                    let expected = try backend.seek(file: 0, offset: offset, whence: kind).map { Int64($0) } ?? -Int64(ENXIO)
                    let actual = POSIX.lseek(fd, Int64(offset), whence)
                    #expect(actual == expected, "lseek(\(offset), \(kind))")
                }
            }
            // At and past the end there is neither data nor hole.
            #expect(POSIX.lseek(fd, Int64(size), seekDataWhence) == -Int64(ENXIO))
            #expect(POSIX.lseek(fd, Int64(size), seekHoleWhence) == -Int64(ENXIO))
            #expect(POSIX.lseek(fd, Int64(size) + 1, seekDataWhence) == -Int64(ENXIO))
            // Ordinary seeks are answered by the kernel.
            #expect(POSIX.lseek(fd, 0, SEEK_END) == Int64(size))
            #expect(POSIX.lseek(fd, 123, SEEK_SET) == 123)
        }
    }

    @Test func writesToReadOnlyFilesAreRefused() throws {
        try MountHarness.withMount { running in
            let disk = running.directory + "/disk.img"
            #expect(POSIX.openErrno(disk, O_RDWR) == EROFS)
            #expect(POSIX.openErrno(disk, O_WRONLY) == EROFS)
            #expect(POSIX.openErrno(disk, O_RDONLY | O_TRUNC) == EROFS)
            #expect(truncate(disk, 0) < 0 && errno == EROFS)
            #expect(POSIX.openErrno(running.directory + "/new.bin", O_CREAT | O_WRONLY) == EROFS)
            #expect(unlink(disk) < 0 && errno == EROFS)
            #expect(mkdir(running.directory + "/dir", 0o755) < 0 && errno == EROFS)
            #expect(rename(disk, running.directory + "/moved.img") < 0 && errno == EROFS)
            #expect(chmod(disk, 0o666) < 0 && errno == EROFS)
            // Still readable afterwards.
            let config = try POSIX.readAll(running.directory + "/config.json")
            #expect(config == InMemoryBackend.config)
        }
    }

    @Test func writableFilesReachTheBackend() throws {
        let backend = InMemoryBackend()
        try MountHarness.withMount(backend) { running in
            let path = running.directory + "/scratch.bin"
            let fd = try POSIX.open(path, O_RDWR)
            let payload = Array("hello, imgfs".utf8)
            let written = payload.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 100) }
            #expect(written == payload.count)
            #expect(fsync(fd) == 0)
            close(fd)
            let stored = backend.scratch.withLock { Array($0[100..<(100 + payload.count)]) }
            #expect(stored == payload)
            let readBack = try POSIX.readAll(path)
            #expect(readBack.count == InMemoryBackend.scratchSize)
            #expect(Array(readBack[100..<(100 + payload.count)]) == payload)
            // The backend refuses to grow the file: its errno reaches the writer.
            let again = try POSIX.open(path, O_WRONLY)
            defer { close(again) }
            let past = payload.withUnsafeBytes { pwrite(again, $0.baseAddress, $0.count, off_t(InMemoryBackend.scratchSize)) }
            #expect(past < 0 && errno == EFBIG)
        }
    }

    @Test func backendErrorsBecomeEIOAndTheMountKeepsServing() throws {
        try MountHarness.withMount { running in
            let fd = try POSIX.open(running.directory + "/broken.bin", O_RDONLY)
            defer { close(fd) }
            #expect(throws: POSIXFailure(call: "pread at 0", code: EIO)) {
                _ = try POSIX.pread(fd, offset: 0, count: 4096)
            }
            #expect(throws: POSIXFailure(call: "pread at 0", code: EIO)) {
                _ = try POSIX.pread(fd, offset: 0, count: 4096)
            }
            #expect(try POSIX.readAll(running.directory + "/config.json") == InMemoryBackend.config)
            let disk = try POSIX.open(running.directory + "/disk.img", O_RDONLY)
            defer { close(disk) }
            #expect(try POSIX.pread(disk, offset: 1 << 20, count: 4096) == InMemoryBackend.expected(.disk, offset: 1 << 20, count: 4096))
        }
    }

    @Test func concurrentReadersGetTheRightBytes() throws {
        try MountHarness.withMount { running in
            let path = running.directory + "/disk.img"
            let failures = Mutex<[String]>([])
            let group = DispatchGroup()
            for reader in 0..<8 {
                group.enter()
                Thread {
                    defer { group.leave() }
                    do {
                        let fd = try POSIX.open(path, O_RDONLY)
                        defer { close(fd) }
                        var generator = SystemRandomNumberGenerator()
                        for _ in 0..<40 {
                            let offset = UInt64.random(in: 0..<InMemoryBackend.diskSize, using: &generator)
                            let count = Int.random(in: 1...(1 << 20), using: &generator)
                            let bytes = try POSIX.pread(fd, offset: offset, count: count)
                            if bytes != InMemoryBackend.expected(.disk, offset: offset, count: count) {
                                failures.withLock { $0.append("reader \(reader): wrong bytes at \(offset)+\(count)") }
                            }
                        }
                    } catch {
                        failures.withLock { $0.append("reader \(reader): \(error)") }
                    }
                }.start()
            }
            #expect(group.wait(timeout: .now() + 120) == .success)
            #expect(failures.withLock { $0 } == [])
        }
    }

    @Test func sparseCopyKeepsHoles() throws {
        try MountHarness.withMount { running in
            let target = try MountHarness.temporaryDirectory("cp")
            defer {
                unlink(target + "/disk.img")
                rmdir(target)
            }
            let copy = try POSIX.shell("cp --sparse=always '\(running.directory)/disk.img' '\(target)/disk.img'")
            #expect(copy.status == 0, "\(copy.output)")
            let compare = try POSIX.shell("cmp '\(running.directory)/disk.img' '\(target)/disk.img'")
            #expect(compare.status == 0, "\(compare.output)")
            let info = try POSIX.status(target + "/disk.img")
            #expect(UInt64(info.st_size) == InMemoryBackend.diskSize)
            let dataBytes = InMemoryBackend.islands.reduce(0) { $0 + $1.count }
            // Allocated blocks: the islands rounded to file-system blocks, far below 64 MiB.
            let allocated = Int(info.st_blocks) * 512
            #expect(allocated >= dataBytes)
            #expect(allocated < dataBytes + (1 << 20), "allocated \(allocated) bytes for \(dataBytes) bytes of data")
        }
    }

    @Test func stopUnmountsAndRunReturns() throws {
        let directory = try MountHarness.temporaryDirectory("stop")
        defer { rmdir(directory) }
        let mount = try FuseMount(mountpoint: directory, backend: InMemoryBackend(), logger: MountHarness.logger)
        let running = MountHarness.Running(mount: mount, directory: directory)
        defer {
            if MountTable.isFuseMount(directory) {
                _ = try? Daemon.runCollectingOutput("/usr/bin/fusermount3", ["-u", "-z", "-q", "--", directory])
            }
        }
        Thread {
            do { try running.mount.run() } catch { running.runError = error }
            running.finished.signal()
        }.start()
        #expect(try POSIX.readAll(directory + "/config.json") == InMemoryBackend.config)
        #expect(MountTable.isFuseMount(directory))
        // A file held open does not keep the loop alive: stop() detaches lazily.
        let held = try POSIX.open(directory + "/disk.img", O_RDONLY)
        mount.stop()
        mount.stop()
        #expect(running.waitForRunToEnd())
        close(held)
        #expect(running.runError == nil)
        #expect(!MountTable.isFuseMount(directory))
        #expect(throws: FuseError.self) { try mount.run() }
    }

    @Test func externalUnmountEndsRun() throws {
        let directory = try MountHarness.temporaryDirectory("umount")
        defer { rmdir(directory) }
        let mount = try FuseMount(mountpoint: directory, backend: InMemoryBackend(), logger: MountHarness.logger)
        let running = MountHarness.Running(mount: mount, directory: directory)
        defer {
            mount.stop()
            _ = running.waitForRunToEnd(seconds: 5)
        }
        Thread {
            do { try running.mount.run() } catch { running.runError = error }
            running.finished.signal()
        }.start()
        #expect(try POSIX.status(directory + "/disk.img").st_size > 0)
        try Daemon.unmount(directory)
        #expect(running.waitForRunToEnd())
        #expect(running.runError == nil)
        #expect(throws: FuseError(mountpoint: directory, reason: .notMounted)) { try Daemon.unmount(directory) }
    }

    @Test func stopBeforeRunMakesRunReturnAtOnce() throws {
        let directory = try MountHarness.temporaryDirectory("early")
        defer { rmdir(directory) }
        let mount = try FuseMount(mountpoint: directory, backend: InMemoryBackend(), logger: MountHarness.logger)
        mount.stop()
        try mount.run()
        #expect(!MountTable.isFuseMount(directory))
    }

    @Test func droppingAMountThatNeverRanUnmounts() throws {
        let directory = try MountHarness.temporaryDirectory("drop")
        defer { rmdir(directory) }
        do {
            let mount = try FuseMount(mountpoint: directory, backend: InMemoryBackend(), logger: MountHarness.logger)
            #expect(MountTable.isFuseMount(mount.mountpoint))
        }
        #expect(!MountTable.isFuseMount(directory))
    }

    @Test func badMountpointsGiveTypedErrors() throws {
        let missing = "/tmp/fusefs-test-does-not-exist-\(getpid())"
        #expect(throws: FuseError(mountpoint: missing, reason: .mountpointMissing)) {
            _ = try FuseMount(mountpoint: missing, backend: InMemoryBackend(), logger: MountHarness.logger)
        }
        let directory = try MountHarness.temporaryDirectory("file")
        let file = directory + "/plain"
        let fd = Glibc.open(file, O_CREAT | O_WRONLY, 0o644)
        close(fd)
        defer {
            unlink(file)
            rmdir(directory)
        }
        #expect(throws: FuseError(mountpoint: file, reason: .notADirectory)) {
            _ = try FuseMount(mountpoint: file, backend: InMemoryBackend(), logger: MountHarness.logger)
        }
        var options = FuseMountOptions()
        options.fsName = "has,comma"
        #expect(throws: FuseError.self) {
            _ = try FuseMount(mountpoint: directory, backend: InMemoryBackend(), options: options, logger: MountHarness.logger)
        }
        #expect(!MountTable.isFuseMount(directory))
    }

    @Test func mountingTwiceIsAlreadyMounted() throws {
        try MountHarness.withMount { running in
            #expect(throws: FuseError(mountpoint: running.directory, reason: .alreadyMounted)) {
                _ = try FuseMount(mountpoint: running.directory, backend: InMemoryBackend(), logger: MountHarness.logger)
            }
            let config = try POSIX.readAll(running.directory + "/config.json")
            #expect(config == InMemoryBackend.config)
        }
    }

    @Test func sigtermUnmounts() throws {
        let directory = try MountHarness.temporaryDirectory("signal")
        defer { rmdir(directory) }
        let mount = try FuseMount(mountpoint: directory, backend: InMemoryBackend(), logger: MountHarness.logger)
        let running = MountHarness.Running(mount: mount, directory: directory)
        defer {
            mount.stop()
            _ = running.waitForRunToEnd(seconds: 5)
        }
        try mount.installSignalHandlers()
        Thread {
            do { try running.mount.run() } catch { running.runError = error }
            running.finished.signal()
        }.start()
        #expect(try POSIX.readAll(directory + "/config.json") == InMemoryBackend.config)
        kill(getpid(), SIGTERM)
        #expect(running.waitForRunToEnd())
        #expect(!MountTable.isFuseMount(directory))
    }
}

