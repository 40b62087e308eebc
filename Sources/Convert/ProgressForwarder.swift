import Threading

/// Copies the push pipeline's counters into the convert counters a few times a second, so the
/// command line samples one set whatever the target format.
final class ProgressForwarder: Sendable {
    private let thread = BackgroundThread(name: "convert-progress")
    private let tick: @Sendable () -> Void

    init(_ tick: @escaping @Sendable () -> Void) {
        self.tick = tick
        tick()
        thread.startRepeating(every: 0.1, tick)
    }

    /// Stops the copies after a last one. The owner always calls it.
    func stop() {
        thread.stop()
        tick()
    }
}
