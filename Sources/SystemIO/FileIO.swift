import Glibc

/// Whole-buffer reads and a zero check, shared by the pipelines that read disks.
public enum FileIO {
    /// Reads until `buffer` is full or the file ends, retrying EINTR; returns the bytes read
    /// (fewer than `buffer.count` only at the end of the file).
    public static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, path: String) throws(IOError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw IOError(operation: "read", path: path, offset: offset + UInt64(done), errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Whether every byte is zero. Word-at-a-time, checked in blocks so that data bails out early
    /// without a branch per word.
    public static func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let words = bytes.count / 8
        var accumulator: UInt64 = 0
        var i = 0
        while i < words {
            let end = min(words, i + 512)
            while i < end {
                accumulator |= base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                i += 1
            }
            if accumulator != 0 { return false }
        }
        for j in (words * 8)..<bytes.count where bytes[j] != 0 { return false }
        return true
    }

    /// Writes all of `bytes` at `offset`, retrying EINTR and short writes. `operation` names the
    /// write in the error.
    public static func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64, path: String,
                                  operation: String = "write") throws(IOError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw IOError(operation: operation, path: path, offset: offset + UInt64(done), errno: errno)
            }
            done += n
        }
    }

    /// Writes `bytes` at `offset` but skips every all-zero piece between 4 KiB boundaries of the
    /// file: in a file that started as a hole, skipped zeros read back as zeros and allocate nothing.
    public static func writeSkippingZeros(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64, path: String) throws(IOError) {
        let block = 4096
        var position = 0
        var runStart: Int? = nil
        while position < bytes.count {
            let next = min(bytes.count, position + block - Int((offset + UInt64(position)) % UInt64(block)))
            let zero = isAllZero(UnsafeRawBufferPointer(rebasing: bytes[position..<next]))
            if zero, let start = runStart {
                try writeFully(fd, UnsafeRawBufferPointer(rebasing: bytes[start..<position]), at: offset + UInt64(start), path: path)
                runStart = nil
            } else if !zero, runStart == nil {
                runStart = position
            }
            position = next
        }
        if let start = runStart {
            try writeFully(fd, UnsafeRawBufferPointer(rebasing: bytes[start...]), at: offset + UInt64(start), path: path)
        }
    }
}
