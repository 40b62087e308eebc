/// The tar stage of `SegmentDecoder` for the tar codecs: passes on the content of the segment's
/// disk member at its offset in the file, and checks that the verified stream holds that member,
/// with the size the segment was given, as the layer's only file under `/disk/`.
final class TarMemberStage {
    let segment: Segment
    let reader = TarStreamReader()
    private var found: String?
    private var inMember = false
    private var ended = false
    /// The member's first bytes seen so far (holes as zeros), up to the length of `tarMemberHead`.
    private var head: [UInt8] = []

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
                    guard inMember else { return }
                    try checkHead(offset, bytes)
                    try output(offset, bytes)
                case .memberEnd:
                    if inMember {
                        try checkHead(segment.length, UnsafeRawBufferPointer(start: nil, count: 0))
                        inMember = false
                        ended = true
                    }
                }
            }
        } catch let error as TarError {
            throw SegmentError(segment, .tar("\(error)"))
        }
    }

    /// The disk file was named (disk.img or disk.qcow2) by its first bytes before they were
    /// verified: the verified ones must be the same.
    private func checkHead(_ offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws(SegmentError) {
        guard let expected = segment.tarMemberHead, head.count < expected.count else { return }
        if UInt64(head.count) < offset { head += [UInt8](repeating: 0, count: Int(min(UInt64(expected.count), offset)) - head.count) }
        head += bytes.prefix(expected.count - head.count)
        let complete = head.count == expected.count || offset + UInt64(bytes.count) >= segment.length
        guard complete else { return }
        guard head == expected else {
            throw SegmentError(segment, .tar("the disk file starts with bytes \(head) here, \(expected) when the image was opened"))
        }
    }

    func finish() throws(SegmentError) {
        do { try reader.finish() } catch { throw SegmentError(segment, .tar("\(error)")) }
        guard ended else {
            throw SegmentError(segment, .tar("no file \(segment.tarMember ?? "under /disk/") in the layer"))
        }
    }
}
