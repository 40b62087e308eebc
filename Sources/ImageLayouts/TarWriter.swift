/// Tar headers as `imgfs convert --format containerdisk` writes them: ustar, with a PAX `x`
/// header in front for a size that does not fit ustar's 11 octal digits (8 GiB and more),
/// which is what Go's `archive/tar` (container runtimes) and GNU tar both read.
public enum TarWriter {
    public enum EntryType: UInt8 {
        case regular = 0x30 // "0"
        case directory = 0x35 // "5"
    }

    /// The header block(s) of one member; its data follows, then `padding(size)` zeros.
    public static func header(path: String, type: EntryType, size: UInt64, mode: UInt32, uid: UInt32, gid: UInt32,
                              userName: String = "", groupName: String = "", modificationTime: UInt64 = 0) -> [UInt8] {
        var out = [UInt8]()
        let fitsOctal = size < (1 << 33)
        if !fitsOctal || path.utf8.count > 100 {
            var records = ""
            if !fitsOctal { records += record("size", String(size)) }
            if path.utf8.count > 100 { records += record("path", path) }
            let data = Array(records.utf8)
            out += block(path: "PaxHeaders/" + String(path.suffix(80)), type: UInt8(ascii: "x"), size: UInt64(data.count), mode: 0o644,
                         uid: 0, gid: 0, userName: "", groupName: "", modificationTime: modificationTime)
            out += data
            out += [UInt8](repeating: 0, count: Int(padding(UInt64(data.count))))
        }
        out += block(path: String(path.utf8.prefix(100)) ?? "", type: type.rawValue, size: fitsOctal ? size : 0, mode: mode, uid: uid, gid: gid,
                     userName: userName, groupName: groupName, modificationTime: modificationTime)
        return out
    }

    /// The end of an archive: two zero blocks.
    public static let endOfArchive = [UInt8](repeating: 0, count: 1024)

    public static func padding(_ size: UInt64) -> UInt64 { (512 - size % 512) % 512 }

    /// One PAX record, `"%d %s=%s\n"`, whose length counts its own digits.
    static func record(_ key: String, _ value: String) -> String {
        let body = " \(key)=\(value)\n"
        var length = body.utf8.count + 1
        while String(length).utf8.count + body.utf8.count != length { length = String(length).utf8.count + body.utf8.count }
        return String(length) + body
    }

    static func block(path: String, type: UInt8, size: UInt64, mode: UInt32, uid: UInt32, gid: UInt32,
                      userName: String, groupName: String, modificationTime: UInt64) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: some Sequence<UInt8>, at offset: Int, width: Int) {
            for (i, byte) in bytes.prefix(width).enumerated() { h[offset + i] = byte }
        }
        func octal(_ value: UInt64, at offset: Int, width: Int) {
            let text = String(value, radix: 8)
            let padded = String(repeating: "0", count: max(0, width - 1 - text.count)) + text
            put(Array(padded.utf8), at: offset, width: width - 1)
        }
        put(Array(path.utf8), at: 0, width: 100)
        octal(UInt64(mode), at: 100, width: 8)
        octal(UInt64(uid), at: 108, width: 8)
        octal(UInt64(gid), at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(modificationTime, at: 136, width: 12)
        h[156] = type
        put(Array("ustar\0".utf8), at: 257, width: 6)
        put(Array("00".utf8), at: 263, width: 2)
        put(Array(userName.utf8), at: 265, width: 32)
        put(Array(groupName.utf8), at: 297, width: 32)
        put([UInt8](repeating: UInt8(ascii: " "), count: 8), at: 148, width: 8)
        let sum = h.reduce(0) { $0 + Int($1) }
        let text = String(sum, radix: 8)
        put(Array((String(repeating: "0", count: max(0, 6 - text.count)) + text).utf8) + [0, UInt8(ascii: " ")], at: 148, width: 8)
        return h
    }
}
