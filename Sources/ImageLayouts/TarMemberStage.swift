/// The tar stage of `SegmentDecoder` for the tar codecs: passes on the content of the segment's
/// disk member at its offset in the file, and checks that the verified stream holds that member,
/// with the size the segment was given, as the layer's only file under `/disk/`.
final class TarMemberStage {
    let segment: Segment
    let reader = TarStreamReader()
    private var found: String?
    private var inMember = false
    private var ended = false

    init(segment: Segment) {
        self.segment = segment
    }

    func feed(_ bytes: UnsafeRawBufferPointer, output: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
        do {
            try reader.feed(bytes) { event in
                switch event {
                case .member(let member):
                    guard let path = ContainerDiskFormat.diskPath(member.path) else { return }
                    do { try ContainerDiskFormat.checkDiskMember(member, path: path, layer: segment.name) } catch {
                        throw SegmentError(segment, .tar("\(error)"))
                    }
                    guard member.kind == .regular else { return }
                    if let found {
                        throw SegmentError(segment, .tar("a second file under /disk/, \(path), after \(found): exactly one must be the disk"))
                    }
                    guard path == segment.tarMember.map({ ContainerDiskFormat.diskPath($0) ?? $0 }) else {
                        throw SegmentError(segment, .tar("its disk file is \(path), not \(segment.tarMember ?? "?") as its header said when the image was opened"))
                    }
                    guard member.size == segment.length else {
                        throw SegmentError(segment, .tar("\(path) is \(member.size) bytes, not \(segment.length) as its header said when the image was opened"))
                    }
                    found = path
                    inMember = true
                case .data(let offset, let bytes):
                    if inMember { try output(offset, bytes) }
                case .memberEnd:
                    if inMember {
                        inMember = false
                        ended = true
                    }
                }
            }
        } catch let error as TarError {
            throw SegmentError(segment, .tar("\(error)"))
        }
    }

    func finish() throws(SegmentError) {
        do { try reader.finish() } catch { throw SegmentError(segment, .tar("\(error)")) }
        guard ended else {
            throw SegmentError(segment, .tar("no file \(segment.tarMember ?? "under /disk/") in the layer"))
        }
    }
}
