import Cache
import ImageLayouts
import Glibc
import Logging
import PieceFetch
import SystemIO
import Threading
import Verity

extension LayerDisk {
    /// Fetches, decodes and verifies one whole layer into the store, retrying up to
    /// `fetchAttempts` times. Runs on a fetch thread; completes exactly one flight.
    func fetch(_ segment: Segment, key: SegmentKey, demanded: Bool) -> Result<VerifiedSegmentFile, MountError> {
        // Another flight (or another mount sharing the cache) may have finished it meanwhile.
        do {
            if let file = try store.openChecked(key, segment: segment, logger: logger) { return .success(file) }
        } catch {
            return .failure(.cache(error))
        }
        let retry = BoundedRetry(attempts: options.fetchAttempts)
        return Result { () throws(MountError) in
            try retry.run(isRetryable: { if case .stopped = $0 { false } else { !isStopping } }, failed: { error, attempt, willRetry in
                if case .foreign(.verification) = error { statistics.verificationFailures.add(1, ordering: .relaxed) }
                if case .stopped = error { return }
                logger.warning("layer fetch failed", metadata: [
                    "layer": "\(segment.name)", "blob": "\(segment.blob.digest)", "attempt": "\(attempt)", "error": "\(error)"])
                if !willRetry {
                    logger.error("layer failed on every attempt; reads in it fail with EIO", metadata: [
                        "layer": "\(segment.name)", "blob": "\(segment.blob.digest)", "attempts": "\(attempt)", "error": "\(error)"])
                }
            }) { (attempt) throws(MountError) in
                guard !isStopping else { throw .stopped }
                let file = try fetchOnce(segment, key: key, attempt: attempt)
                statistics.framesFetched.add(1, ordering: .relaxed)
                if !demanded { statistics.prefetchedFrames.add(1, ordering: .relaxed) }
                logger.debug("layer fetched and verified", metadata: ["layer": "\(segment.name)", "bytes": "\(segment.length)"])
                return file
            }
        }
    }

    /// One try: stream the blob in range requests through the decoder into a sparse partial
    /// file; on success make it durable and rename it to its final name (what marks it verified).
    func fetchOnce(_ segment: Segment, key: SegmentKey, attempt: Int) throws(MountError) -> VerifiedSegmentFile {
        let partial = store.partialPath(key)
        let final = store.finalPath(key)
        func ioError(_ operation: String, _ path: String) -> MountError {
            .foreign(.cacheIO(layer: segment.name, operation: operation, path: path, errno: errno))
        }
        let fd = open(partial, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ioError("create", partial) }
        var isOpen = true
        var renamed = false
        defer {
            if isOpen { close(fd) }
            if !renamed { unlink(partial) }
        }
        // The full length first, so that blocks the writer skips are holes that read as zeros.
        guard ftruncate(fd, off_t(segment.length)) == 0 else { throw ioError("truncate", partial) }

        let writer = SparseWriter(fd: fd, base: segment.diskOffset, path: partial, layer: segment.name)
        // The digest of the decoded bytes, recorded beside the file so that a later daemon can check
        // the file before serving it even when the manifest gives no uncompressed digest.
        let hasher = SHA256Hasher()
        var hashed: UInt64 = 0
        var inOrder = true
        do {
            try LayerStream.decode(segment, chunks: { feed in
                var position: Int64 = 0
                while position < segment.blob.size {
                    guard !isStopping else { throw MountError.stopped }
                    let range = position..<min(segment.blob.size, position + max(4096, options.layerRequestBytes))
                    try request(segment, key: key, range: range).withUnsafeBytes(feed)
                    position = range.upperBound
                }
            }) { diskOffset, decoded in
                try writer.write(decoded, atDiskOffset: diskOffset)
                let at = diskOffset - segment.diskOffset
                if at > hashed { hasher.updateZeros(count: Int(at - hashed)); hashed = at }
                if at == hashed {
                    hasher.update(decoded)
                    hashed += UInt64(decoded.count)
                } else {
                    inOrder = false
                }
            }
        } catch let error as MountError {
            throw error
        } catch let error as SegmentError {
            // The writer's own failures (disk full) are not the layer's fault.
            if case .output(let inner) = error.kind, let local = inner as? MountError { throw local }
            throw .foreign(.verification(error, attempts: attempt))
        } catch {
            throw .foreign(.verification(SegmentError(segment, .output(error)), attempts: attempt))
        }

        if hashed < segment.length { hasher.updateZeros(count: Int(segment.length - hashed)) }
        // Decoders deliver in disk order; if one ever does not, there is no digest to record and
        // the next daemon fetches the layer again rather than trust it unchecked.
        if let digest = inOrder ? hasher.finalize() : segment.uncompressedDigest {
            do { try store.storeDigest(digest, for: key, layer: segment.name) } catch { throw .cache(error) }
        }
        guard fsync(fd) == 0 else { throw ioError("fsync", partial) }
        close(fd)
        isOpen = false
        guard rename(partial, final) == 0 else { throw ioError("rename", final) }
        renamed = true
        try? FileIO.syncDirectory(store.directory)
        let reopened: VerifiedSegmentFile?
        do { reopened = try store.open(key, length: segment.length, layer: segment.name) } catch { throw .cache(error) }
        guard let file = reopened else {
            throw .foreign(.cacheIO(layer: segment.name, operation: "reopen", path: final, errno: ENOENT))
        }
        return file
    }

    /// One range request of the layer's blob, counted in the statistics. A layer a reader waits
    /// for is demand. One only the background pass over the layers wants is `.prefetch`, the
    /// class that pass is (it fetches whole layers in disk order for no reader, as `Prefetcher`
    /// does frames): it holds still for every other class, and is not readahead or the boot
    /// profile, which a reader or a boot will want next. Asked afresh each request, and `urgent`
    /// in between, so a reader who joins the layer's flight stops it holding still.
    private func request(_ segment: Segment, key: SegmentKey, range: Range<Int64>) throws(MountError) -> [UInt8] {
        let fetchClass: FetchClass = flights.isDemanded(key) ? .demand : .prefetch
        let priority: FetchPriority = fetchClass == .demand ? .demand : .background(fetchClass) { [flights] in flights.isDemanded(key) }
        let bytes: [UInt8]
        do {
            bytes = try statistics.countRequest(demand: fetchClass == .demand, foreground: fetchClass != .prefetch) { () throws(SourceError) in
                try source.blob(segment.blob.digest, range: range, mirrors: true, deadline: monotonicNow() + options.backgroundTransferTimeout,
                                priority: priority)
            }
            statistics.countBytes(bytes.count, for: fetchClass)
        } catch {
            throw .foreign(.fetch(layer: segment.name, blob: segment.blob.digest, range: range, error))
        }
        guard Int64(bytes.count) == Int64(range.count) else {
            throw .foreign(.fetch(layer: segment.name, blob: segment.blob.digest, range: range,
                                  SourceError(.other, "the registry returned \(bytes.count) bytes for a range of \(range.count)")))
        }
        return bytes
    }
}
