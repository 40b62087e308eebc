#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// The self-pipe between the async-signal-safe handler of SIGTERM, SIGINT and SIGHUP and the
/// thread that acts on them: the handler only writes the signal number to the pipe, so it works
/// whichever thread the kernel picks. SIGPIPE is ignored. Process-wide, installed once; the
/// serving daemon (`FuseMount`) and the descriptor holder each read it on their own thread.
enum SignalPipe {
    /// Write end, used by the handler (-1 until installed).
    private static let writeFD = Atomic<Int32>(-1)
    /// Read end, once installed.
    private static let readFD = Mutex<Int32?>(nil)

    /// Installs the handlers (once) and returns the pipe's read end; nil with errno set on failure.
    static func install() -> Int32? {
        readFD.withLock { readFD -> Int32? in
            if let readFD { return readFD }
            var fds: [Int32] = [-1, -1]
            guard makeCloseOnExecPipe(&fds) else { return nil }
            // A full pipe must not block the handler.
            _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
            writeFD.store(fds[1], ordering: .releasing)
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                let savedErrno = errno
                var byte = UInt8(truncatingIfNeeded: signal)
                let fd = SignalPipe.writeFD.load(ordering: .acquiring)
                if fd >= 0 { _ = write(fd, &byte, 1) }
                errno = savedErrno
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            for signal in [SIGTERM, SIGINT, SIGHUP] {
                guard sigaction(signal, &action, nil) == 0 else { return nil }
            }
            var ignore = sigaction()
            ignore.__sigaction_handler.sa_handler = SIG_IGN
            sigemptyset(&ignore.sa_mask)
            _ = sigaction(SIGPIPE, &ignore, nil)
            readFD = fds[0]
            return fds[0]
        }
    }

    /// Blocks until a signal arrives on `fd`; its number, or nil when the pipe is gone.
    static func next(_ fd: Int32) -> Int32? {
        var byte: UInt8 = 0
        return retryingEINTR { read(fd, &byte, 1) } == 1 ? Int32(byte) : nil
    }
}
