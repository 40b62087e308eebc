import Glibc
import Testing
@testable import FuseFS

/// A backend failure whose root cause is `causeErrno`.
private struct Failure: BackendFailure {
    var causeErrno: Int32?
    var description: String { "failure with cause \(causeErrno.map(String.init) ?? "none")" }
}

@Suite("Backend failures become one errno")
struct ErrnoMappingTests {
    @Test func aFullOrReadOnlyLocalFileSystemReachesTheCallerAsItself() {
        #expect(FileSystemError.failed(Failure(causeErrno: ENOSPC)).errno == ENOSPC)
        #expect(FileSystemError.failed(Failure(causeErrno: EDQUOT)).errno == EDQUOT)
        #expect(FileSystemError.failed(Failure(causeErrno: EROFS)).errno == EROFS)
    }

    @Test func everyOtherFailureIsEIO() {
        // No errno: a fetch, a verification, a timeout. A disk read that timed out is a failed
        // sector to the guest, not ETIMEDOUT.
        #expect(FileSystemError.failed(Failure(causeErrno: nil)).errno == EIO)
        #expect(FileSystemError.failed(Failure(causeErrno: EACCES)).errno == EIO)
        #expect(FileSystemError.failed(Failure(causeErrno: ETIMEDOUT)).errno == EIO)
        #expect(FileSystemError.failed(Failure(causeErrno: EBADF)).errno == EIO)
    }

    @Test func theFailureIsDescribedAsItself() {
        #expect("\(FileSystemError.failed(Failure(causeErrno: ENOSPC)))" == "failure with cause \(ENOSPC)")
    }
}
