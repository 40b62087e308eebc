import Fetch
import Logging
import Synchronization
import SystemIO
import Threading
import Verity

/// Uploads blobs on a few threads, skipping those the registry already has.
final class BlobUploader: Sendable {
    enum Body: Sendable {
        case bytes([UInt8])
        case spool(SpoolFile)
    }

    struct Job: Sendable {
        var digest: Digest
        var size: Int64
        var body: Body
    }

    private let client: RegistryClient
    private let repository: String
    private let progress: PushProgress
    private let logger: Logger
    private let queue: BoundedQueue<Job>
    private let failure: PipelineFailure
    private let threads: Mutex<[WorkerThread]>
    /// Digests already handed over in this push, so a blob listed twice is uploaded once.
    private let seen = Mutex<Set<Digest>>([])

    init(client: RegistryClient, repository: String, threads count: Int, progress: PushProgress, failure: PipelineFailure, logger: Logger) {
        self.client = client
        self.repository = repository
        self.progress = progress
        self.logger = logger
        self.failure = failure
        // One job waiting per thread keeps every uploader busy without spooling more chunks.
        self.queue = BoundedQueue(capacity: count)
        self.threads = Mutex([])
        failure.onFailure { [queue] in queue.cancel() }
        let workers = (0..<count).map { i in
            WorkerThread(name: "upload-\(i)") { [self] in self.run() }
        }
        threads.withLock { $0 = workers }
    }

    /// Queues a blob; blocks while every uploader is busy.
    func submit(_ job: Job) {
        let isNew = seen.withLock { $0.insert(job.digest).inserted }
        guard isNew else { return }
        queue.push(job)
    }

    /// Waits for every queued upload and rethrows the pipeline's first error.
    func finish() throws(PushError) {
        queue.close()
        let workers = threads.withLock { $0 }
        for worker in workers { worker.join() }
        try failure.check()
    }

    private func run() {
        while let job = queue.pop() {
            do {
                try upload(job)
            } catch {
                failure.record(error)
                return
            }
        }
    }

    private func upload(_ job: Job) throws(PushError) {
        do {
            if let size = try client.blobSize(repository, digest: job.digest), size == job.size {
                logger.debug("blob already present", metadata: ["digest": "\(job.digest)"])
                progress.blobsSkipped.add(1, ordering: .relaxed)
                progress.uploadedBytes.add(job.size, ordering: .relaxed)
                return
            }
            switch job.body {
            case .bytes(let bytes):
                try client.uploadBlob(repository, digest: job.digest, size: job.size, body: .bytes(bytes))
                progress.uploadedBytes.add(job.size, ordering: .relaxed)
            case .spool(let spool):
                let progress = self.progress
                try client.uploadBlob(repository, digest: job.digest, size: job.size, body: .reader(size: job.size) { offset, buffer in
                    let n = try spool.read(at: offset, into: buffer)
                    progress.uploadedBytes.add(Int64(n), ordering: .relaxed)
                    return n
                })
            }
            progress.blobsUploaded.add(1, ordering: .relaxed)
            logger.debug("blob uploaded", metadata: ["digest": "\(job.digest)", "size": "\(job.size)"])
        } catch {
            throw .registry(error)
        }
    }
}

/// The first error of a multi-threaded pipeline, and the queues to cancel when it happens.
final class PipelineFailure: Sendable {
    private let state = Mutex<(error: PushError?, handlers: [@Sendable () -> Void])>((nil, []))

    init() {}

    func record(_ error: PushError) {
        let handlers: [@Sendable () -> Void] = state.withLock { state in
            guard state.error == nil else { return [] }
            state.error = error
            return state.handlers
        }
        for handler in handlers { handler() }
    }

    func onFailure(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.handlers.append(handler) }
    }

    func check() throws(PushError) {
        if let error = state.withLock({ $0.error }) { throw error }
    }
}
