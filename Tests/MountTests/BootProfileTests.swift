import Foundation
import ImgfsFormat
@testable import Mount
import Testing

@Suite struct BootProfileTests {
    @Test func encodingRoundTripsAndDecodingDropsDuplicatesAndFramesPastTheEnd() throws {
        let bytes = BootProfile.encode([4, 9, 4, 1, 99])
        #expect(bytes.count == 16 + 20)
        #expect(BootProfile.decode(bytes, frameCount: 10) == [4, 9, 1])
        #expect(BootProfile.decode(Array(bytes.dropLast()), frameCount: 10) == nil)
    }

    @Test func profileFramesAreFetchedFirstInProfileOrderAheadOfTheSequentialPass() throws {
        // One request at a time, so the registry sees them in dispatch order.
        let mount = try ProfiledSession(frames: 32, profile: [20, 21, 5, 30, 6], workers: 1)
        defer { mount.stop() }
        mount.waitForProfile()
        try mount.disk.bootReads(mount.profile)
        mount.waitUntilComplete()
        #expect(mount.session.cacheComplete)
        let calls = mount.framesOfEachRequest()
        #expect(Array(calls.prefix(4)) == [[20, 21], [5], [30], [6]])
        // Then the sequential pass, from the start, skipping what the profile brought in.
        #expect(calls.dropFirst(4).first?.first == 0)
    }

    @Test func parallelProfileWorkersFetchEveryProfileFrameOnceBeforeTheSequentialPass() throws {
        let profile = [40, 41, 42, 3, 60, 17, 18, 50, 9, 10, 11, 12, 13, 14, 15, 16, 33]
        let mount = try ProfiledSession(frames: 64, profile: profile, workers: 4)
        defer { mount.stop() }
        mount.waitForProfile()
        try mount.disk.bootReads(profile)
        mount.waitUntilComplete()
        #expect(mount.session.cacheComplete)
        let snapshot = mount.disk.statistics.snapshot()
        #expect(snapshot.profileFrames == Int64(profile.count))
        #expect(snapshot.prefetchedFrames == Int64(64 - profile.count))
        #expect(snapshot.framesFetched == 64)
        // Every request before the first one of the sequential pass carries profile frames only.
        let profiled = Set(profile)
        let firstProfileRequests = mount.framesOfEachRequest().prefix { !$0.isEmpty && Set($0).isSubset(of: profiled) }
        #expect(Set(firstProfileRequests.joined()) == profiled)
    }

    @Test func theProfileIsFetchedEvenWithoutBackgroundPrefetch() throws {
        let mount = try ProfiledSession(frames: 32, profile: [7, 8, 25], background: false)
        defer { mount.stop() }
        mount.waitForProfile()
        usleep(300_000)   // time for a background pass, were there one, to fetch more
        #expect(mount.profile.allSatisfy { mount.disk.cache.contains($0) })
        #expect(mount.disk.cache.presentCount == mount.profile.count)
        #expect(mount.disk.statistics.snapshot().prefetchedFrames == 0)
    }

    @Test func theBackgroundPassWaitsUntilTheBootHasReadMostOfTheProfile() throws {
        let profile = Array(10..<20)
        let mount = try ProfiledSession(frames: 32, profile: profile)
        defer { mount.stop() }
        mount.waitForProfile()
        // The boot reads 8 of the 10 profile frames: not yet the 90% that ends it.
        try mount.disk.bootReads(Array(profile.prefix(8)))
        usleep(1_500_000)   // past the quiet period: only the boot holds the pass back
        #expect(mount.disk.cache.presentCount == profile.count)
        #expect(mount.disk.statistics.snapshot().prefetchedFrames == 0)
        // The ninth, through the cache-hit path FUSE takes for cached frames: the boot is over,
        // and the pass fetches the rest of the disk.
        #expect(mount.disk.localExtent(at: UInt64(profile[8] * TestImage.frameSize), count: 4096) != nil)
        mount.waitUntilComplete()
        #expect(mount.session.cacheComplete)
        #expect(mount.disk.statistics.snapshot().prefetchedFrames == 32 - Int64(profile.count))
    }

    /// During the boot a profile describes, files opened get the kernel's default readahead, not
    /// the mount's; once the boot has read the profile, the mount's again. Without a profile, always
    /// the mount's.
    @Test func aProfiledBootGetsTheKernelsDefaultReadaheadUntilItHasReadTheProfile() throws {
        let profile = Array(10..<20)
        let mount = try ProfiledSession(frames: 32, profile: profile, background: false)
        defer { mount.stop() }
        #expect(mount.disk.kernelReadahead == FrameDisk.kernelDefaultReadahead)
        try mount.disk.bootReads(profile)
        #expect(mount.disk.kernelReadahead == nil)

        let plain = try ProfiledSession(frames: 32, profile: [], background: false)
        defer { plain.stop() }
        #expect(plain.disk.kernelReadahead == nil)
    }

    /// Without a profile, files opened get the kernel's default readahead while the link (first
    /// as the frame index's transfer seeded it, then as the mount's own requests measure it)
    /// cannot bring a mount-sized window's frames within `kernelWindowBudget`; the mount's on a
    /// fast link, and once every frame is cached.
    @Test func aSlowLinkGetsTheKernelsDefaultReadaheadUntilEveryFrameIsCached() throws {
        let mount = try ProfiledSession(frames: 32, profile: [], background: false)
        defer { mount.stop() }
        let window = Double(FrameDisk.mountReadahead) / Double(TestImage.frameSize) * mount.disk.meanFrameBytes
        mount.disk.statistics.link.seed(TransferSample(bytes: Int(window), seconds: FrameDisk.kernelWindowBudget * 4))
        #expect(mount.disk.kernelReadahead == FrameDisk.kernelDefaultReadahead)
        mount.disk.statistics.link.seed(TransferSample(bytes: Int(window), seconds: FrameDisk.kernelWindowBudget / 4))
        #expect(mount.disk.kernelReadahead == nil)

        // The seed says fast; every range request now takes 20 ms, and what the reads measure
        // (a few MB/s, against a window of 4 MiB) replaces it. Read from the end backwards, so
        // that no readahead fetches frame 0 before the last check.
        mount.registry.rangeDelay = 0.02
        try mount.disk.bootReads(Array((1..<32).reversed()))
        #expect(mount.disk.statistics.link.snapshot.requests > 0)
        #expect(!mount.session.cacheComplete)
        #expect(mount.disk.kernelReadahead == FrameDisk.kernelDefaultReadahead, "the link measured slow, yet the seed's fast figure decided")
        try mount.disk.bootReads([0])
        // Its read was answered from memory; the cache writer stores it just after.
        waitUntil { mount.session.cacheComplete }
        #expect(mount.session.cacheComplete)
        #expect(mount.disk.kernelReadahead == nil, "nothing is left to fetch: the link no longer matters")
    }

    @Test func theBackgroundPassWaitsForReadersToStartReading() throws {
        let mount = try ProfiledSession(frames: 32, profile: [])
        defer { mount.stop() }
        usleep(500_000)
        #expect(mount.disk.cache.presentCount == 0, "an unread mount prefetched")
        // Three distinct frames (one of them twice, as a hypervisor's probe of the first sector
        // and the guest's first read would): not yet started.
        try mount.disk.bootReads([0, 0, 12, 24])
        usleep(500_000)
        #expect(mount.disk.statistics.snapshot().prefetchedFrames == 0)
        try mount.disk.bootReads([30])
        mount.waitUntilComplete()
        #expect(mount.session.cacheComplete)
        #expect(mount.disk.statistics.snapshot().prefetchedFrames > 0)
    }

    @Test func anUnreadMountIsPrefetchedOnceTheStartHoldHasPassed() throws {
        let mount = try ProfiledSession(frames: 32, profile: [], startHold: 0.5)
        defer { mount.stop() }
        mount.waitUntilComplete()
        #expect(mount.session.cacheComplete)
        #expect(mount.disk.statistics.snapshot().prefetchedFrames == 32)
    }

    @Test func readActivityCountsDistinctProfileFramesAndTheTimeOfTheLastRead() {
        let activity = ReadActivity()
        #expect(activity.hasReadProfile)   // no profile: nothing to wait for
        #expect(activity.secondsSinceLastRead(now: 5) == nil)
        activity.watch(profile: Array(0..<20))
        #expect(!activity.hasReadProfile)
        activity.note(0..<10, now: 10)
        activity.note(0..<10, now: 11)     // the same frames again do not count twice
        activity.note(40..<50, now: 12)    // nor do frames outside the profile
        #expect(!activity.hasReadProfile)
        #expect(activity.secondsSinceLastRead(now: 12.5) == 0.5)
        activity.note(10..<17, now: 13)
        #expect(!activity.hasReadProfile)  // 17 of 20
        activity.note(17..<18, now: 14)
        #expect(activity.hasReadProfile)   // 18 of 20 = 90%
    }

    @Test func readersHaveStartedAfterReadingAFewDistinctFrames() {
        let activity = ReadActivity()
        #expect(!activity.hasStarted)
        activity.note(0..<1, now: 1)
        activity.note(0..<1, now: 2)
        activity.note(7..<9, now: 3)
        #expect(!activity.hasStarted)      // 0, 7, 8
        activity.note(8..<10, now: 4)
        #expect(activity.hasStarted)
    }

    @Test func profileBatchesAreAscendingRunsInProfileOrder() {
        #expect(ProfileFetch.batches(of: [20, 21, 5, 30, 31, 32, 6]) == [[20, 21], [5], [30, 31, 32], [6]])
        let long = Array(100..<120)
        #expect(ProfileFetch.batches(of: long) == [Array(100..<108), Array(108..<116), Array(116..<120)])
        #expect(ProfileFetch.batches(of: []) == [])
    }

    @Test func theRecorderNotesFirstReadsInOrderAndWritesAProfile() throws {
        let base = MemoryDisk(size: 8 * 65536)
        let directory = TemporaryDirectory()
        let path = directory.path + "/profile"
        var holes = [Bool](repeating: false, count: 8)
        holes[2] = true
        let recorder = ProfileRecorder(base: base, path: path, frameSize: 65536, holes: holes, logger: testLogger)
        recorder.start()
        // The recorded boot reads with the kernel's default readahead, whatever the base says.
        #expect(recorder.kernelReadahead == FrameDisk.kernelDefaultReadahead)
        for offset in [5 * 65536 + 10, 65536, 2 * 65536, 5 * 65536, 65536 - 1] {
            _ = try recorder.readAll(UInt64(offset), 2)
        }
        recorder.stop()
        // The read at 65535 spans frames 0 and 1; frame 2 is a hole and is not recorded.
        #expect(recorder.frames == [5, 1, 0])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(BootProfile.decode(bytes, frameCount: 8) == [5, 1, 0])
    }
}

extension FrameDisk {
    /// Reads the first byte of each of `frames`, as a booting VM would.
    func bootReads(_ frames: [Int]) throws {
        for frame in frames { _ = try bytes(at: UInt64(frame * TestImage.frameSize), count: 1) }
    }
}

/// A test image in a fake registry, a started session on it with the mount's own prefetch off,
/// and a started `Prefetcher` for `profile`. Call `stop()` when done.
private final class ProfiledSession {
    let image: TestImage
    let registry = FakeRegistry()
    let directory = TemporaryDirectory()
    let session: FrameSession
    let prefetcher: Prefetcher
    let profile: [Int]
    var disk: FrameDisk { session.disk }

    init(frames: Int, profile: [Int], background: Bool = true, workers: Int = 3, startHold: Double = 60) throws {
        image = try TestImage.make(frames: frames, chunkFrames: 8)
        registry.add(image, tag: "v1")
        session = try openSession(registry, root: directory.path, prefetch: false)
        session.start()
        self.profile = profile
        // Readers count as active for 1 s after a read, which the tests' pauses are made for.
        prefetcher = Prefetcher(disk: session.disk, profile: profile, background: background, rate: nil,
                                profileWorkers: workers, quietSeconds: 1, startHold: startHold, logger: testLogger)
        prefetcher.start()
    }

    func stop() {
        prefetcher.stop()
        session.stop()
    }

    func waitForProfile() {
        for _ in 0..<250 where disk.cache.presentCount < profile.count { usleep(20_000) }
    }

    func waitUntilComplete() {
        for _ in 0..<250 where !session.cacheComplete { usleep(20_000) }
    }

    /// The frames each range request carried, in request order.
    func framesOfEachRequest() -> [[Int]] {
        registry.rangeCalls.map { call in
            image.index.frames.indices.filter { frame in
                guard let location = image.index.frames[frame].location,
                      image.index.layers[location.layer].digest == call.digest else { return false }
                return call.range.contains(location.compressedRange.lowerBound) && call.range.contains(location.compressedRange.upperBound - 1)
            }
        }
    }
}
