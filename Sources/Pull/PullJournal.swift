import FoundationEssentials
import Glibc
import Synchronization
import SystemIO
import Verity

/// `.imgfs-pull.json` next to `disk.img.partial`: which layers (whole-layer formats) and which
/// frames (imgfs) are already written and verified, so a re-run fetches only the rest.
///
/// A unit is recorded only after its bytes were verified and `fdatasync`ed, and the journal is
/// replaced atomically (write, fsync, rename), so after a crash it never claims more than the
/// disk holds. It belongs to one manifest digest; a journal for another manifest is discarded.
final class PullJournal: Sendable {
    struct State: Codable {
        var manifestDigest: Digest
        var diskSize: UInt64
        var doneBlobs: [Digest] = []
        /// One bit per frame, little-endian within bytes, base64.
        var doneFrames: String?
        var complete = false
    }

    static let fileName = ".imgfs-pull.json"

    let path: String
    private let state: Mutex<(state: State, frames: [UInt8], blobs: Set<Digest>)>

    private init(path: String, state: State) {
        self.path = path
        let frames = state.doneFrames.flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) } ?? []
        self.state = Mutex((state, frames, Set(state.doneBlobs)))
    }

    /// The journal in `directory` if it belongs to this manifest, else a fresh one (`resumed` false).
    static func open(directory: String, manifestDigest: Digest, diskSize: UInt64, frameCount: Int) -> (journal: PullJournal, resumed: Bool) {
        let path = directory + "/" + fileName
        if let data = FileManager.default.contents(atPath: path),
           let state = try? JSONDecoder().decode(State.self, from: data),
           state.manifestDigest == manifestDigest, state.diskSize == diskSize {
            let journal = PullJournal(path: path, state: state)
            journal.state.withLock { value in
                if value.frames.count != (frameCount + 7) / 8 { value.frames = [UInt8](repeating: 0, count: (frameCount + 7) / 8) }
            }
            return (journal, true)
        }
        let journal = PullJournal(path: path, state: State(manifestDigest: manifestDigest, diskSize: diskSize))
        journal.state.withLock { $0.frames = [UInt8](repeating: 0, count: (frameCount + 7) / 8) }
        return (journal, false)
    }

    var isComplete: Bool { state.withLock { $0.state.complete } }

    func isBlobDone(_ digest: Digest) -> Bool { state.withLock { $0.blobs.contains(digest) } }

    func isFrameDone(_ frame: Int) -> Bool {
        state.withLock { frame / 8 < $0.frames.count && $0.frames[frame / 8] & (1 << UInt8(frame & 7)) != 0 }
    }

    func markBlobDone(_ digest: Digest) throws(PullError) {
        try update { value in
            if value.blobs.insert(digest).inserted { value.state.doneBlobs.append(digest) }
        }
    }

    func markFramesDone(_ frames: [Int]) throws(PullError) {
        try update { value in
            for frame in frames where frame / 8 < value.frames.count { value.frames[frame / 8] |= 1 << UInt8(frame & 7) }
        }
    }

    func markComplete() throws(PullError) {
        try update { $0.state.complete = true }
    }

    /// Writes the journal now (a fresh pull records its manifest before any data).
    func save() throws(PullError) { try update { _ in } }

    /// Applies `change` and persists the result; the lock is held across the write so two
    /// workers' updates land in order.
    private func update(_ change: (inout (state: State, frames: [UInt8], blobs: Set<Digest>)) -> Void) throws(PullError) {
        let result: Result<Void, PullError> = state.withLock { value in
            change(&value)
            value.state.doneFrames = value.frames.contains(where: { $0 != 0 }) ? Data(value.frames).base64EncodedString() : nil
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            guard let data = try? encoder.encode(value.state) else { return .failure(.io(path: path, operation: "encode journal", offset: nil, errno: EINVAL)) }
            return Result { () throws(IOError) in try FileIO.writeAtomically([UInt8](data), to: path, durable: true) }.mapError(PullError.init)
        }
        try result.get()
    }

    func remove() { unlink(path) }
}
