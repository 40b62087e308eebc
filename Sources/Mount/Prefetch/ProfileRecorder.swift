import FuseFS
import Glibc
import Logging
import Synchronization
import SystemIO
import Threading

/// `imgfs mount --record-profile FILE`: a pass-through disk that notes the order in which frames
/// are first read by the mount's users (demand reads only: readahead and prefetch happen below
/// it, inside `FrameDisk`, and are not seen here), and writes it as a boot profile
/// (docs/FORMAT.md, "Boot profiles") every few seconds and when the mount stops.
public final class ProfileRecorder: VirtualDisk, Sendable {
    public let base: any VirtualDisk
    public let path: String
    let frameSize: UInt64
    let frameCount: Int
    let holes: [Bool]
    let logger: Logger
    private struct State {
        var seen: [Bool]
        var order: [UInt32] = []
        var saved = 0
    }
    private let state: Mutex<State>
    private let thread = BackgroundThread(name: "profile")
    /// Seconds between saves while mounted, so a VM killed with the daemon still leaves a profile.
    let interval: Double

    /// - Parameter holes: per frame, whether it is a hole (never worth prefetching, so not recorded).
    public init(base: any VirtualDisk, path: String, frameSize: Int, holes: [Bool], interval: Double = 3, logger: Logger) {
        self.base = base
        self.path = path
        self.frameSize = UInt64(frameSize)
        self.frameCount = holes.count
        self.holes = holes
        self.interval = interval
        self.logger = logger
        self.state = Mutex(State(seen: [Bool](repeating: false, count: holes.count)))
    }

    /// A recorded boot reads with the kernel's default readahead, so that the profile holds the
    /// frames the guest reads, not the neighbours the mount's 4 MiB windows would add to them
    /// (`FrameDisk.kernelReadahead`).
    public var kernelReadahead: Int? { FrameDisk.kernelDefaultReadahead }
    public var size: UInt64 { base.size }
    public var isWritable: Bool { base.isWritable }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(MountError) -> Int {
        if offset < size, buffer.count > 0 {
            let first = Int(offset / frameSize)
            let last = Int(min(size - 1, offset + UInt64(buffer.count) - 1) / frameSize)
            state.withLock { s in
                for frame in first...min(last, frameCount - 1) where !s.seen[frame] && !holes[frame] {
                    s.seen[frame] = true
                    s.order.append(UInt32(frame))
                }
            }
        }
        return try base.read(at: offset, into: buffer)
    }

    public func seek(from offset: UInt64, whence: SeekWhence) -> UInt64? { base.seek(from: offset, whence: whence) }
    public func write(at offset: UInt64, data: UnsafeRawBufferPointer) throws(MountError) -> Int { try base.write(at: offset, data: data) }
    public func flush() throws(MountError) { try base.flush() }

    /// The frames recorded so far, in first-read order.
    public var frames: [Int] { state.withLock { $0.order.map(Int.init) } }

    public func start() {
        thread.startRepeating(every: interval) { [self] in save() }
    }

    /// Stops the periodic saves and writes the final profile.
    public func stop() {
        thread.stop()
        save(force: true)
    }

    /// Writes the profile if it grew since the last save.
    func save(force: Bool = false) {
        let (order, changed) = state.withLock { s in (s.order, s.order.count != s.saved) }
        guard changed || force else { return }
        do {
            try FileIO.writeAtomically(BootProfile.encode(order), to: path, durable: true)
            state.withLock { $0.saved = order.count }
        } catch {
            logger.warning("could not write the boot profile", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }
}

extension BootProfile {
    /// The profile layer's bytes: `IMGFSPRF`, version 1, count, frame numbers (u32 little-endian).
    public static func encode(_ frames: [UInt32]) -> [UInt8] {
        var bytes = magic
        for value in [UInt32(1), UInt32(frames.count)] + frames {
            for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(8 * i))) }
        }
        return bytes
    }
}
