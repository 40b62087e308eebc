import Synchronization

/// What the mount's users have been reading, for the background prefetch pass to stay out of
/// their way: when they last read, whether they have started reading (a few distinct frames: a
/// VM's boot under way, not its hypervisor's probe of the first sector), and whether they have
/// read most of the boot profile (the sign that the boot the profile describes is over). Noted
/// on every read, so it is cheap: one atomic store, and a lock only until both are settled.
final class ReadActivity: Sendable {
    /// The share of the profile's frames that counts as read: a boot never reads exactly what
    /// the recording boot read.
    static let profileShare = 0.9
    /// Distinct frames read before the readers count as started. qemu reads frame 0 when it opens
    /// the disk, seconds (tens under load) before the guest's first read (issue 20).
    static let startFrames = 4

    private let lastRead = Atomic<Int64>(-1)
    private let started = Atomic<Bool>(false)
    private let framesBeforeStart = Mutex<Set<Int>>([])
    private let profileRead = Atomic<Bool>(true)
    private let unreadProfile = Mutex<(frames: Set<Int>, readEnough: Int)>(([], 0))

    /// Watches `profile`: `hasReadProfile` is false until `profileShare` of these frames were read.
    func watch(profile: [Int]) {
        let frames = Set(profile)
        guard !frames.isEmpty else { return }
        let left = frames.count - Int((Double(frames.count) * Self.profileShare).rounded(.up))
        unreadProfile.withLock { $0 = (frames, left) }
        profileRead.store(false, ordering: .releasing)
    }

    func note(_ frames: Range<Int>, now: Double) {
        lastRead.store(Int64(now * 1e9), ordering: .relaxed)
        if !started.load(ordering: .relaxed) {
            let enough = framesBeforeStart.withLock { seen -> Bool in
                for frame in frames where seen.count < Self.startFrames { seen.insert(frame) }
                return seen.count >= Self.startFrames
            }
            if enough { started.store(true, ordering: .relaxed) }
        }
        guard !profileRead.load(ordering: .acquiring) else { return }
        let done = unreadProfile.withLock { state -> Bool in
            for frame in frames { state.frames.remove(frame) }
            return state.frames.count <= state.readEnough
        }
        if done { profileRead.store(true, ordering: .releasing) }
    }

    /// Seconds since the last read at `now`; nil if nothing was read yet.
    func secondsSinceLastRead(now: Double) -> Double? {
        let last = lastRead.load(ordering: .relaxed)
        return last < 0 ? nil : now - Double(last) / 1e9
    }

    var hasReadProfile: Bool { profileRead.load(ordering: .acquiring) }

    /// Whether readers have read `startFrames` distinct frames.
    var hasStarted: Bool { started.load(ordering: .relaxed) }
}
