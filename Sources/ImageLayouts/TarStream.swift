/// An incremental reader of tar streams (ustar, GNU and PAX), for container layers whose file is
/// a VM disk: fed the decoded layer in pieces of any size, it reports each member and the
/// member's content bytes at their offset in the file, skipping headers and padding.
///
/// Read as Go's `archive/tar` reads (what container runtimes unpack layers with): PAX `x`
/// headers (`path`, `size`, GNU sparse 0.1 and 1.0), GNU `L`/`K` long names, old GNU sparse
/// (`S`, map in the header and its extension blocks), base-256 numbers; header-only types
/// (links, directories, devices, FIFOs) have no data whatever their size field says; the
/// archive ends at two zero blocks (what follows is ignored) or at a header boundary.
///
/// Everything in a header is untrusted: sizes are checked for overflow, extension headers and
/// sparse maps are bounded, sparse extents must be in order, disjoint and inside the file.
/// Kept apart from the container-disk logic so that tar offsets can later be mapped to file
/// offsets (`TarMember.dataOffset`, `sparseMap`) for indexes of tar layers. Not thread-safe.
public final class TarStreamReader {
    public enum Event {
        /// A member's headers were read; its data (if any) follows.
        case member(TarMember)
        /// Content of the current member at `offset` in the file (for a sparse member, offsets
        /// skip its holes). Only valid during the call.
        case data(offset: UInt64, bytes: UnsafeRawBufferPointer)
        /// The current member's data ended.
        case memberEnd(TarMember)
    }

    /// Bounds on what an extension header may make the reader hold in memory.
    public static let maximumExtensionSize = 1 << 20
    public static let maximumSparseExtents = 1 << 20

    private enum State {
        case header
        /// The data of a PAX (`x`, `g`) or GNU long-name (`L`, `K`) header, collected whole.
        case extensionData(type: UInt8, remaining: UInt64, padding: UInt64)
        /// Old GNU sparse extension blocks after an `S` header.
        case sparseExtension
        /// The text sparse map at the start of a GNU sparse 1.0 member's data.
        case sparseMapText(remaining: UInt64)
        case data(remaining: UInt64)
        case padding(remaining: UInt64)
        /// One zero block seen: the next must be zero too.
        case endMarker
        case finished
    }

    private var state = State.header
    /// Bytes of the tar stream consumed.
    public private(set) var position: UInt64 = 0
    private var block = [UInt8]()
    private var collected = [UInt8]()
    // Extension headers that apply to the next member.
    private var pax: [String: String] = [:]
    /// GNU sparse 0.0: repeated `GNU.sparse.offset`/`numbytes` records, in order.
    private var pax00Map: [UInt64] = []
    private var longName: String?
    private var longLink: String?
    // The member being read.
    private var member: TarMember?
    private var extents: [TarMember.Extent] = []
    private var extentIndex = 0
    private var extentDone: UInt64 = 0
    // A GNU sparse 1.0 map being parsed, block by block.
    private var mapNumbers = [UInt64]()
    private var mapCurrent: UInt64 = 0
    private var mapDigits = 0

    public init() {
        block.reserveCapacity(512)
    }

    public var isFinished: Bool { if case .finished = state { true } else { false } }

    public func feed(_ input: UnsafeRawBufferPointer, handler: (Event) throws -> Void) throws {
        var rest = input
        while !rest.isEmpty {
            switch state {
            case .finished:
                // Readers stop at the end marker; whatever follows is not part of the archive.
                position += UInt64(rest.count)
                return
            case .data(let remaining):
                let n = Int(min(UInt64(rest.count), remaining))
                try emitData(UnsafeRawBufferPointer(rebasing: rest.prefix(n)), handler: handler)
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(n))
                position += UInt64(n)
                if remaining - UInt64(n) == 0 { try endMember(handler: handler) } else { state = .data(remaining: remaining - UInt64(n)) }
            case .padding(let remaining):
                let n = Int(min(UInt64(rest.count), remaining))
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(n))
                position += UInt64(n)
                state = remaining - UInt64(n) == 0 ? .header : .padding(remaining: remaining - UInt64(n))
            case .extensionData(let type, let remaining, let padding):
                let n = Int(min(UInt64(rest.count), remaining))
                collected.append(contentsOf: rest.prefix(n))
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(n))
                position += UInt64(n)
                if remaining - UInt64(n) > 0 {
                    state = .extensionData(type: type, remaining: remaining - UInt64(n), padding: padding)
                } else {
                    try applyExtension(type)
                    state = padding > 0 ? .padding(remaining: padding) : .header
                }
            case .header, .endMarker, .sparseExtension, .sparseMapText:
                let n = min(rest.count, 512 - block.count)
                block.append(contentsOf: rest.prefix(n))
                rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(n))
                position += UInt64(n)
                if block.count == 512 {
                    let full = block
                    block.removeAll(keepingCapacity: true)
                    try process(full, handler: handler)
                }
            }
        }
    }

    /// The stream ended: fails unless it ended at a header boundary (after the end marker, or
    /// with none, as Go's reader accepts).
    public func finish() throws(TarError) {
        switch state {
        case .finished: return
        case .header where block.isEmpty && longName == nil && longLink == nil && pax.isEmpty && pax00Map.isEmpty: return
        case .endMarker where block.isEmpty: return
        default:
            throw .truncated(offset: position, member: member?.path)
        }
    }

    // MARK: - Blocks

    private func process(_ block: [UInt8], handler: (Event) throws -> Void) throws {
        let start = position - 512
        switch state {
        case .endMarker:
            guard block.allSatisfy({ $0 == 0 }) else { throw TarError.badHeader(offset: start, reason: "a single zero block inside the archive") }
            state = .finished
        case .sparseExtension:
            try readOldSparseExtension(block, handler: handler)
        case .sparseMapText(let remaining):
            try readSparseMapText(block, remaining: remaining - 512, handler: handler)
        default:
            if block.allSatisfy({ $0 == 0 }) {
                state = .endMarker
                return
            }
            try readHeader(block, at: start, handler: handler)
        }
    }

    private func readHeader(_ h: [UInt8], at start: UInt64, handler: (Event) throws -> Void) throws {
        try verifyChecksum(h, at: start)
        let type = h[156]
        var size = try Self.number(h[124..<136], field: "size", at: start)
        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
            guard size <= UInt64(Self.maximumExtensionSize) else {
                throw TarError.tooLarge(offset: start, what: "extension header of \(size) bytes (the limit is \(Self.maximumExtensionSize))")
            }
            collected.removeAll(keepingCapacity: true)
            if size == 0 {
                try applyExtension(type)
                state = .header
            } else {
                state = .extensionData(type: type, remaining: size, padding: Self.padding(size))
            }
            return
        default:
            break
        }
        let isGNU = h[257..<265].elementsEqual(Array("ustar  \0".utf8))
        let isUstar = h[257..<263].elementsEqual(Array("ustar\0".utf8))
        var path = Self.string(h[0..<100])
        if isUstar {
            let prefix = Self.string(h[345..<500])
            if !prefix.isEmpty { path = prefix + "/" + path }
        }
        if let name = longName { path = name }
        if let name = pax["path"] { path = name }
        if let text = pax["size"] { size = try paxNumber(text, key: "size", at: start) }
        let kind = TarMember.Kind(type)
        var member = TarMember(path: path, kind: kind, size: size, storedSize: size, sparseMap: nil,
                               mode: UInt32(truncatingIfNeeded: (try? Self.number(h[100..<108], field: "mode", at: start)) ?? 0),
                               uid: (try? Self.number(h[108..<116], field: "uid", at: start)) ?? 0,
                               gid: (try? Self.number(h[116..<124], field: "gid", at: start)) ?? 0,
                               headerOffset: start, dataOffset: position)
        if kind.isHeaderOnly {
            member.size = 0
            member.storedSize = 0
        }
        longName = nil
        longLink = nil
        let attributes = pax
        pax = [:]
        let map00 = pax00Map
        pax00Map = []
        if type == UInt8(ascii: "S") {
            guard isGNU else { throw TarError.badHeader(offset: start, reason: "an old GNU sparse member without the GNU magic") }
            member.kind = .regular
            self.member = member
            extents = []
            try readOldSparseEntries(h, range: 386..<482, extended: h[482] != 0, realSize: h[483..<495], at: start, handler: handler)
            return
        }
        if let major = attributes["GNU.sparse.major"], let minor = attributes["GNU.sparse.minor"], major == "1", minor == "0" {
            guard kind == .regular else { throw TarError.badSparse(member: path, reason: "sparse 1.0 on a member that is not a regular file") }
            if let name = attributes["GNU.sparse.name"] { member.path = name }
            guard let real = attributes["GNU.sparse.realsize"] else { throw TarError.badSparse(member: member.path, reason: "no GNU.sparse.realsize") }
            member.size = try paxNumber(real, key: "GNU.sparse.realsize", at: start)
            self.member = member
            extents = []
            mapNumbers = []
            mapCurrent = 0
            mapDigits = 0
            guard member.storedSize >= 512 else { throw TarError.badSparse(member: member.path, reason: "no room for its sparse map") }
            state = .sparseMapText(remaining: member.storedSize)
            return
        }
        if let map = attributes["GNU.sparse.map"] ?? (map00.isEmpty ? nil : map00.map(String.init).joined(separator: ",")) {
            // GNU sparse 0.1 (the map in one PAX record) or 0.0 (in repeated ones): the data right after the header.
            guard kind == .regular else { throw TarError.badSparse(member: path, reason: "a sparse map on a member that is not a regular file") }
            if let name = attributes["GNU.sparse.name"] { member.path = name }
            guard let real = attributes["GNU.sparse.size"] ?? attributes["GNU.sparse.realsize"] else {
                throw TarError.badSparse(member: member.path, reason: "no GNU.sparse.size")
            }
            member.size = try paxNumber(real, key: "GNU.sparse.size", at: start)
            let numbers = try map.split(separator: ",", omittingEmptySubsequences: false).map { (text) throws -> UInt64 in
                try paxNumber(String(text), key: "GNU.sparse.map", at: start)
            }
            guard numbers.count % 2 == 0, numbers.count / 2 <= Self.maximumSparseExtents else {
                throw TarError.badSparse(member: member.path, reason: "GNU.sparse.map has \(numbers.count) numbers")
            }
            let list = stride(from: 0, to: numbers.count, by: 2).map { TarMember.Extent(offset: numbers[$0], length: numbers[$0 + 1]) }
            try startSparse(member, extents: list, dataOffset: position, available: member.storedSize, handler: handler)
            return
        }
        if attributes["GNU.sparse.major"] != nil || attributes["GNU.sparse.offset"] != nil || attributes["GNU.sparse.numblocks"] != nil {
            throw TarError.badSparse(member: path, reason: "a GNU sparse format other than 0.0, 0.1 and 1.0")
        }
        try startData(member, handler: handler)
    }

    private func startData(_ member: TarMember, handler: (Event) throws -> Void) throws {
        self.member = member
        try handler(.member(member))
        if member.storedSize == 0 { try endMember(handler: handler) } else { state = .data(remaining: member.storedSize) }
        extentIndex = 0
        extentDone = 0
    }

    /// `available`: the bytes of stored data that follow `dataOffset`, which the extents must add up to.
    private func startSparse(_ member: TarMember, extents list: [TarMember.Extent], dataOffset: UInt64, available: UInt64,
                             handler: (Event) throws -> Void) throws {
        var member = member
        var end: UInt64 = 0
        var stored: UInt64 = 0
        for extent in list {
            let (extentEnd, overflow) = extent.offset.addingReportingOverflow(extent.length)
            guard !overflow, extent.offset >= end, extentEnd <= member.size else {
                throw TarError.badSparse(member: member.path, reason: "extent \(extent.offset)+\(extent.length) is out of order, overlaps or lies past the file's \(member.size) bytes")
            }
            end = extentEnd
            stored += extent.length
        }
        guard stored == available else {
            throw TarError.badSparse(member: member.path, reason: "its extents hold \(stored) bytes, the archive stores \(available)")
        }
        member.sparseMap = list
        member.dataOffset = dataOffset
        member.storedSize = stored
        extents = list.filter { $0.length > 0 }
        self.member = member
        try handler(.member(member))
        extentIndex = 0
        extentDone = 0
        // The padding that follows is that of the whole stored data, map included.
        if stored == 0 { try endMember(handler: handler) } else { state = .data(remaining: stored) }
    }

    private func emitData(_ bytes: UnsafeRawBufferPointer, handler: (Event) throws -> Void) throws {
        guard member?.sparseMap != nil else {
            try handler(.data(offset: extentDone, bytes: bytes))
            extentDone += UInt64(bytes.count)
            return
        }
        var rest = bytes
        while !rest.isEmpty {
            // startSparse checked that the extents hold exactly the stored bytes.
            guard extentIndex < extents.count else { throw TarError.badSparse(member: member?.path ?? "?", reason: "more data than extents") }
            let extent = extents[extentIndex]
            let n = Int(min(UInt64(rest.count), extent.length - extentDone))
            try handler(.data(offset: extent.offset + extentDone, bytes: UnsafeRawBufferPointer(rebasing: rest.prefix(n))))
            extentDone += UInt64(n)
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(n))
            if extentDone == extent.length {
                extentIndex += 1
                extentDone = 0
            }
        }
    }

    private func endMember(handler: (Event) throws -> Void) throws {
        guard let member else { return }
        self.member = nil
        try handler(.memberEnd(member))
        // A sparse 1.0 map fills whole blocks, so the padding is that of the stored data alone.
        let padding = Self.padding(member.storedSize)
        state = padding > 0 ? .padding(remaining: padding) : .header
    }

    // MARK: - Sparse maps

    private func readOldSparseEntries(_ h: [UInt8], range: Range<Int>, extended: Bool, realSize: ArraySlice<UInt8>?, at start: UInt64,
                                      handler: (Event) throws -> Void) throws {
        guard var member else { return }
        if let realSize { member.size = try Self.number(realSize, field: "realsize", at: start) }
        self.member = member
        for entry in stride(from: range.lowerBound, to: range.upperBound, by: 24) {
            // An entry whose offset field is empty ends the list.
            if h[entry] == 0 { break }
            let offset = try Self.number(h[entry..<entry + 12], field: "sparse offset", at: start)
            let length = try Self.number(h[entry + 12..<entry + 24], field: "sparse length", at: start)
            guard extents.count < Self.maximumSparseExtents else { throw TarError.badSparse(member: member.path, reason: "more than \(Self.maximumSparseExtents) extents") }
            extents.append(TarMember.Extent(offset: offset, length: length))
        }
        if extended {
            state = .sparseExtension
        } else {
            // The size field counts the stored data only, not the extension blocks.
            try startSparse(member, extents: extents, dataOffset: position, available: member.storedSize, handler: handler)
        }
    }

    private func readOldSparseExtension(_ h: [UInt8], handler: (Event) throws -> Void) throws {
        try readOldSparseEntries(h, range: 0..<504, extended: h[504] != 0, realSize: nil, at: position - 512, handler: handler)
    }

    /// GNU sparse 1.0: decimal lines (count, then offset and length per extent) at the start of
    /// the data, padded to a block; parsed a block at a time, so a long map costs linear time.
    private func readSparseMapText(_ block: [UInt8], remaining: UInt64, handler: (Event) throws -> Void) throws {
        guard let member else { return }
        var complete = false
        for byte in block {
            if byte == UInt8(ascii: "\n") {
                guard mapDigits > 0 else { throw TarError.badSparse(member: member.path, reason: "an empty line in its sparse map") }
                mapNumbers.append(mapCurrent)
                mapCurrent = 0
                mapDigits = 0
                if let count = mapNumbers.first {
                    guard count <= UInt64(Self.maximumSparseExtents) else {
                        throw TarError.badSparse(member: member.path, reason: "\(count) extents (the limit is \(Self.maximumSparseExtents))")
                    }
                    if UInt64(mapNumbers.count) == 1 + 2 * count { complete = true; break }
                }
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                let (times, o1) = mapCurrent.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
                guard !o1, !o2 else { throw TarError.badSparse(member: member.path, reason: "a number in its sparse map overflows") }
                mapCurrent = sum
                mapDigits += 1
            } else {
                throw TarError.badSparse(member: member.path, reason: "byte \(byte) in its sparse map")
            }
        }
        guard complete else {
            guard remaining >= 512 else { throw TarError.badSparse(member: member.path, reason: "its sparse map runs past its data") }
            state = .sparseMapText(remaining: remaining)
            return
        }
        let list = stride(from: 1, to: mapNumbers.count, by: 2).map { TarMember.Extent(offset: mapNumbers[$0], length: mapNumbers[$0 + 1]) }
        mapNumbers = []
        try startSparse(member, extents: list, dataOffset: position, available: remaining, handler: handler)
    }

    // MARK: - Extension headers

    private func applyExtension(_ type: UInt8) throws {
        let start = position - UInt64(collected.count)
        switch type {
        case UInt8(ascii: "L"): longName = Self.string(collected[...])
        case UInt8(ascii: "K"): longLink = Self.string(collected[...])
        case UInt8(ascii: "x"):
            for (key, value) in try Self.paxRecords(collected, at: start) {
                if key == "GNU.sparse.offset" || key == "GNU.sparse.numbytes" {
                    // Offsets and lengths alternate; the order is the map's.
                    guard (key == "GNU.sparse.offset") == (pax00Map.count % 2 == 0), pax00Map.count < 2 * Self.maximumSparseExtents else {
                        throw TarError.badHeader(offset: start, reason: "GNU sparse 0.0 records out of order or too many")
                    }
                    pax00Map.append(try paxNumber(value, key: key, at: start))
                } else {
                    pax[key] = value
                }
            }
        default:
            // Global headers: parsed, so that a malformed one is refused, and otherwise ignored (as runtimes do).
            _ = try Self.paxRecords(collected, at: start)
        }
        collected.removeAll(keepingCapacity: true)
    }

    static func paxRecords(_ bytes: [UInt8], at offset: UInt64) throws(TarError) -> [(String, String)] {
        var records = [(String, String)]()
        var index = 0
        while index < bytes.count {
            var length = 0
            var cursor = index
            while cursor < bytes.count, bytes[cursor] >= UInt8(ascii: "0"), bytes[cursor] <= UInt8(ascii: "9"), cursor - index < 8 {
                length = length * 10 + Int(bytes[cursor] - UInt8(ascii: "0"))
                cursor += 1
            }
            guard cursor > index, cursor < bytes.count, bytes[cursor] == UInt8(ascii: " "), length > cursor - index + 1,
                  index + length <= bytes.count, bytes[index + length - 1] == UInt8(ascii: "\n") else {
                throw .badHeader(offset: offset, reason: "malformed PAX record at byte \(index) of the extended header")
            }
            let record = bytes[(cursor + 1)..<(index + length - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")), equals > record.startIndex else {
                throw .badHeader(offset: offset, reason: "PAX record at byte \(index) has no key")
            }
            records.append((String(decoding: record[..<equals], as: UTF8.self), String(decoding: record[(equals + 1)...], as: UTF8.self)))
            index += length
        }
        return records
    }

    // MARK: - Fields

    private func verifyChecksum(_ h: [UInt8], at start: UInt64) throws(TarError) {
        let recorded = try Self.number(h[148..<156], field: "checksum", at: start)
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (i, byte) in h.enumerated() {
            let value = (148..<156).contains(i) ? UInt8(ascii: " ") : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard Int64(recorded) == unsigned || Int64(recorded) == signed else {
            throw .badHeader(offset: start, reason: "header checksum \(recorded) does not match \(unsigned)")
        }
    }

    /// An octal field (NUL/space padded) or a base-256 one (high bit set), as GNU writes large values.
    static func number(_ field: ArraySlice<UInt8>, field name: String, at offset: UInt64) throws(TarError) -> UInt64 {
        guard let first = field.first else { return 0 }
        if first & 0x80 != 0 {
            guard first == 0x80 else { throw .badHeader(offset: offset, reason: "negative or oversized base-256 \(name)") }
            var value: UInt64 = 0
            for byte in field.dropFirst() {
                guard value >> 56 == 0 else { throw .badHeader(offset: offset, reason: "\(name) overflows") }
                value = value << 8 | UInt64(byte)
            }
            return value
        }
        var value: UInt64 = 0
        var seenDigit = false
        var ended = false
        for byte in field {
            if byte == 0 || byte == UInt8(ascii: " ") {
                if seenDigit { ended = true }
                continue
            }
            guard !ended, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "7") else {
                throw .badHeader(offset: offset, reason: "\(name) field is not an octal number")
            }
            guard value >> 60 == 0 else { throw .badHeader(offset: offset, reason: "\(name) overflows") }
            value = value << 3 | UInt64(byte - UInt8(ascii: "0"))
            seenDigit = true
        }
        return value
    }

    private func paxNumber(_ text: String, key: String, at offset: UInt64) throws(TarError) -> UInt64 {
        guard !text.isEmpty, text.utf8.count <= 20, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = UInt64(text) else {
            throw .badHeader(offset: offset, reason: "PAX \(key) '\(text.prefix(40))' is not a decimal number")
        }
        return value
    }

    static func string(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    static func padding(_ size: UInt64) -> UInt64 { (512 - size % 512) % 512 }
}

/// A member of a tar stream, as `TarStreamReader` reports it.
public struct TarMember: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, hardLink, symbolicLink, directory, device, fifo, other(UInt8)

        init(_ type: UInt8) {
            switch type {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "S"): self = .regular
            case UInt8(ascii: "1"): self = .hardLink
            case UInt8(ascii: "2"): self = .symbolicLink
            case UInt8(ascii: "3"), UInt8(ascii: "4"): self = .device
            case UInt8(ascii: "5"): self = .directory
            case UInt8(ascii: "6"): self = .fifo
            default: self = .other(type)
            }
        }

        /// Types whose size field is not followed by data (Go's `isHeaderOnlyType`).
        var isHeaderOnly: Bool {
            switch self {
            case .hardLink, .symbolicLink, .directory, .device, .fifo: true
            case .regular, .other: false
            }
        }
    }

    public struct Extent: Sendable, Equatable {
        public var offset: UInt64
        public var length: UInt64
    }

    public var path: String
    public var kind: Kind
    /// The file's size as extracted (for a sparse member, its logical size, holes included).
    public var size: UInt64
    /// Bytes of the file's data stored in the archive (before padding; without a sparse map).
    public var storedSize: UInt64
    /// For a sparse member: where its stored data goes in the file, in order.
    public var sparseMap: [Extent]?
    public var mode: UInt32
    public var uid: UInt64
    public var gid: UInt64
    /// Offset in the tar stream of the member's own header (after any extension headers).
    public var headerOffset: UInt64
    /// Offset in the tar stream of the member's first data byte (after a sparse 1.0 map).
    public var dataOffset: UInt64
}

/// A tar stream that cannot be read, with the offset in the (decoded) stream.
public enum TarError: Error, Equatable, CustomStringConvertible {
    case badHeader(offset: UInt64, reason: String)
    case badSparse(member: String, reason: String)
    case tooLarge(offset: UInt64, what: String)
    case truncated(offset: UInt64, member: String?)

    public var description: String {
        switch self {
        case .badHeader(let offset, let reason): "tar header at offset \(offset): \(reason)"
        case .badSparse(let member, let reason): "tar member \(member): bad sparse map: \(reason)"
        case .tooLarge(let offset, let what): "tar offset \(offset): \(what)"
        case .truncated(let offset, let member):
            "the tar stream ends at offset \(offset)" + (member.map { " inside member \($0)" } ?? " inside a header")
        }
    }
}
