import COpenSSL

/// Streaming fs-verity file digest: SHA-256, 4096-byte Merkle blocks, no salt.
///
/// The result equals what the kernel reports for `FS_IOC_MEASURE_VERITY` and what
/// `fsverity digest FILE` prints, so a manifest can carry a digest that the kernel enforces.
/// Memory is one 4 KiB pending block per tree level; the tree itself is never stored because
/// only the root matters here.
///
/// Not thread-safe: one hasher per file. `finalize()` ends the stream.
public final class FSVerityHasher {
    public static let blockSize = 4096
    static let hashSize = 32
    static let hashesPerBlock = blockSize / hashSize

    /// The data block being filled. It is hashed lazily, only once a further byte arrives or
    /// at `finalize()`, because a file of exactly one block has that block's hash as its root
    /// rather than a tree level above it.
    private let dataBlock: UnsafeMutableRawPointer
    private var dataFill = 0
    private var dataSize: UInt64 = 0
    /// `levels[i]` collects the hashes of the blocks of level `i - 1` (level -1 being data);
    /// it is emitted upward lazily for the same reason as `dataBlock`.
    private var levels: [TreeLevel] = []

    public init() {
        dataBlock = .allocate(byteCount: Self.blockSize, alignment: 16)
        dataBlock.initializeMemory(as: UInt8.self, repeating: 0, count: Self.blockSize)
    }

    deinit {
        dataBlock.deallocate()
    }

    public func update(_ buffer: UnsafeRawBufferPointer) {
        guard var base = buffer.baseAddress, buffer.count > 0 else { return }
        var remaining = buffer.count
        dataSize += UInt64(remaining)
        while remaining > 0 {
            if dataFill == Self.blockSize { emitDataBlock() }
            if dataFill == 0 {
                // Hash whole blocks straight from the caller's buffer; the strict `>` keeps the
                // last block pending so the single-block case stays decidable at finalize.
                while remaining > Self.blockSize {
                    appendHash(Self.sha256(UnsafeRawBufferPointer(start: base, count: Self.blockSize)), level: 0)
                    base += Self.blockSize
                    remaining -= Self.blockSize
                }
            }
            let n = min(remaining, Self.blockSize - dataFill)
            (dataBlock + dataFill).copyMemory(from: base, byteCount: n)
            dataFill += n
            base += n
            remaining -= n
        }
    }

    public func update(_ bytes: some ContiguousBytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Feeds `count` zero bytes in time proportional to the tree height, not to `count`:
    /// a zero block always hashes to the same value, and a tree block full of equal hashes
    /// hashes to a value that is the same for all of them, level after level.
    public func updateZeros(count: UInt64) {
        guard count > 0 else { return }
        dataSize += count
        var remaining = count
        if dataFill > 0 && dataFill < Self.blockSize {
            let n = Int(min(remaining, UInt64(Self.blockSize - dataFill)))
            zero(from: dataFill, count: n)
            dataFill += n
            remaining -= UInt64(n)
        }
        guard remaining > 0 else { return }
        if dataFill == Self.blockSize { emitDataBlock() }
        let blockSize = UInt64(Self.blockSize)
        let wholeBlocks = (remaining - 1) / blockSize
        if wholeBlocks > 0 {
            appendRepeatedHash(Self.zeroBlockHash, count: wholeBlocks, level: 0)
        }
        let tail = Int(remaining - wholeBlocks * blockSize)
        zero(from: 0, count: tail)
        dataFill = tail
    }

    public func finalize() -> Digest {
        var root = [UInt8](repeating: 0, count: Self.hashSize)
        if dataSize > 0 {
            if dataSize <= UInt64(Self.blockSize) {
                zero(from: dataFill, count: Self.blockSize - dataFill)
                root = Self.sha256(UnsafeRawBufferPointer(start: dataBlock, count: Self.blockSize))
            } else {
                emitDataBlock()
                var i = 0
                while i + 1 < levels.count {
                    emitLevel(i)
                    i += 1
                }
                let top = levels[i]
                top.zeroTail()
                root = Self.sha256(UnsafeRawBufferPointer(start: top.block, count: Self.blockSize))
            }
        }
        return SHA256Hasher.digest(Self.descriptor(dataSize: dataSize, rootHash: root))
    }

    /// The 256-byte `struct fsverity_descriptor` of the kernel's UAPI, whose SHA-256 is the
    /// file digest.
    static func descriptor(dataSize: UInt64, rootHash: [UInt8]) -> [UInt8] {
        var d = [UInt8](repeating: 0, count: 256)
        d[0] = 1   // version
        d[1] = 1   // FS_VERITY_HASH_ALG_SHA256
        d[2] = 12  // log2(4096)
        d[3] = 0   // salt_size
        for i in 0..<8 { d[8 + i] = UInt8(truncatingIfNeeded: dataSize >> (8 * UInt64(i))) }
        for i in 0..<rootHash.count { d[16 + i] = rootHash[i] }
        return d
    }

    // MARK: - Tree

    private func emitDataBlock() {
        zero(from: dataFill, count: Self.blockSize - dataFill)
        appendHash(Self.sha256(UnsafeRawBufferPointer(start: dataBlock, count: Self.blockSize)), level: 0)
        dataFill = 0
    }

    private func emitLevel(_ i: Int) {
        let level = levels[i]
        level.zeroTail()
        let hash = Self.sha256(UnsafeRawBufferPointer(start: level.block, count: Self.blockSize))
        level.fill = 0
        appendHash(hash, level: i + 1)
    }

    private func level(_ i: Int) -> TreeLevel {
        while levels.count <= i { levels.append(TreeLevel()) }
        return levels[i]
    }

    private func appendHash(_ hash: [UInt8], level i: Int) {
        let level = level(i)
        if level.fill == Self.blockSize { emitLevel(i) }
        level.append(hash)
    }

    private func appendRepeatedHash(_ hash: [UInt8], count: UInt64, level i: Int) {
        var remaining = count
        let level = level(i)
        while remaining > 0 && (level.fill != 0 || remaining <= UInt64(Self.hashesPerBlock)) {
            appendHash(hash, level: i)
            remaining -= 1
        }
        guard remaining > 0 else { return }
        // The block here is empty: whole blocks of `hash` go up as one repeated hash, keeping
        // at least one copy back so this level stays lazily pending.
        let perBlock = UInt64(Self.hashesPerBlock)
        let wholeBlocks = (remaining - 1) / perBlock
        if wholeBlocks > 0 {
            appendRepeatedHash(Self.repeatedBlockHash(hash), count: wholeBlocks, level: i + 1)
            remaining -= wholeBlocks * perBlock
        }
        while remaining > 0 {
            level.append(hash)
            remaining -= 1
        }
    }

    private func zero(from offset: Int, count: Int) {
        guard count > 0 else { return }
        (dataBlock + offset).initializeMemory(as: UInt8.self, repeating: 0, count: count)
    }

    // MARK: - Hashing

    static let zeroBlockHash: [UInt8] = [UInt8](repeating: 0, count: blockSize).withUnsafeBytes { sha256($0) }

    private static func repeatedBlockHash(_ hash: [UInt8]) -> [UInt8] {
        var block = [UInt8]()
        block.reserveCapacity(blockSize)
        for _ in 0..<hashesPerBlock { block.append(contentsOf: hash) }
        return block.withUnsafeBytes { sha256($0) }
    }

    static func sha256(_ buffer: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: hashSize) { out, initialized in
            _ = SHA256(buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), buffer.count, out.baseAddress)
            initialized = hashSize
        }
    }
}

/// One pending 4 KiB block of hashes at some tree level.
private final class TreeLevel {
    let block = UnsafeMutableRawPointer.allocate(byteCount: FSVerityHasher.blockSize, alignment: 16)
    var fill = 0

    deinit { block.deallocate() }

    func append(_ hash: [UInt8]) {
        hash.withUnsafeBytes { bytes in
            guard let source = bytes.baseAddress else { return }
            (block + fill).copyMemory(from: source, byteCount: bytes.count)
        }
        fill += hash.count
    }

    func zeroTail() {
        (block + fill).initializeMemory(as: UInt8.self, repeating: 0, count: FSVerityHasher.blockSize - fill)
    }
}
