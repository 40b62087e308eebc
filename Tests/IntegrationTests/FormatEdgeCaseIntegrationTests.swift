import Foundation
import Testing

/// Valid edge cases of docs/FORMAT.md round-trip through push, pull and mount byte for byte
/// (issue 15's conformance corpus, the valid half; the invalid half is ImgfsFormatTests'
/// ConformanceTests).
@Suite(.serialized) struct FormatEdgeCaseIntegrationTests {
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        /// Makes the source disk at the path given.
        var make: String
        var pushFlags: [String]
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "empty disk, multi-layer", make: "truncate -s 0 DISK", pushFlags: []),
        Case(name: "empty disk, single-layer", make: "truncate -s 0 DISK", pushFlags: ["--single-layer"]),
        Case(name: "1000-byte disk, multi-layer", make: "head -c 1000 /dev/urandom > DISK", pushFlags: []),
        Case(name: "1000-byte disk, single-layer", make: "head -c 1000 /dev/urandom > DISK", pushFlags: ["--single-layer"]),
        Case(name: "1000 zero bytes, multi-layer", make: "head -c 1000 /dev/zero > DISK", pushFlags: []),
        Case(name: "an all-hole chunk between data chunks", make: "head -c 1048576 /dev/urandom > DISK && truncate -s 3M DISK && head -c 5000 /dev/urandom | dd of=DISK bs=1 seek=2200000 conv=notrunc status=none",
             pushFlags: ["--chunk-size", "1M", "--frame-size", "64K"]),
        Case(name: "identical chunks sharing one blob", make: "head -c 1048576 /dev/urandom > DISK.a && cat DISK.a DISK.a DISK.a > DISK && truncate -s +777 DISK",
             pushFlags: ["--chunk-size", "1M", "--frame-size", "64K"]),
        Case(name: "64 KiB frames, odd size", make: "head -c 700001 /dev/urandom > DISK", pushFlags: ["--frame-size", "64K"]),
        Case(name: "64 MiB frames", make: "truncate -s 70M DISK && head -c 3000000 /dev/urandom | dd of=DISK bs=1M seek=66 conv=notrunc status=none",
             pushFlags: ["--frame-size", "64M"]),
        Case(name: "64 MiB frames, single-layer", make: "truncate -s 70M DISK && head -c 3000000 /dev/urandom | dd of=DISK bs=1M seek=1 conv=notrunc status=none",
             pushFlags: ["--frame-size", "64M", "--single-layer"]),
    ]

    @Test(arguments: cases)
    func roundTripsThroughPushPullAndMount(_ testCase: Case) throws {
        let scratch = try TestEnvironment.scratchDirectory("edge")
        defer { TestEnvironment.remove(scratch) }
        let disk = scratch + "/disk.img"
        try shell(testCase.make.replacingOccurrences(of: "DISK", with: disk))
        let image = try PushedImage.push(disk, repository: TestEnvironment.repository("edge"), extra: testCase.pushFlags)

        let pulled = scratch + "/pulled"
        let pull = try imgfs(["pull", "--quiet", image.reference, pulled], timeout: 300)
        #expect(pull.status == 0, "\(pull)")
        try shell("cmp \(disk) \(pulled)/disk.img")

        let mounted = try MountedImage(image.reference, scratch: scratch)
        defer { mounted.unmount() }
        try shell("cmp \(disk) \(mounted.disk)")
        #expect(try mounted.status().diskSize == UInt64(try FileManager.default.attributesOfItem(atPath: disk)[.size] as? Int ?? -1))
    }

    /// Issue 15: a 300 GiB disk at 64 KiB frames has an index readers refuse; push says so
    /// before reading the disk, and with the frame size left to it, pushes at 128 KiB and says so.
    @Test func aGeometryReadersWouldRefuseIsNotPushed() throws {
        let scratch = try TestEnvironment.scratchDirectory("huge-index")
        defer { TestEnvironment.remove(scratch) }
        let disk = scratch + "/disk.img"
        try shell("truncate -s 300G \(disk) && printf 'imgfs' | dd of=\(disk) bs=1 seek=1000000 conv=notrunc status=none")
        let registry = try TestRegistry.shared()
        let reference = "\(registry.address)/\(TestEnvironment.repository("huge-index")):v1"
        let refused = try imgfs(["push", "--quiet", "--frame-size", "64K", disk, reference], timeout: 120)
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("use --frame-size 128K or larger"), "\(refused)")
    }
}
