/// How much of one disk is in the cache.
public struct CacheStats: Sendable, Codable, Equatable {
    /// Frames whose bit is set (holes included: they are present by definition).
    public let presentFrames: Int
    public let totalFrames: Int
    /// Logical bytes of the present frames (holes included), not the allocated size.
    public let presentBytes: UInt64
    public let diskSize: UInt64

    public init(presentFrames: Int, totalFrames: Int, presentBytes: UInt64, diskSize: UInt64) {
        self.presentFrames = presentFrames
        self.totalFrames = totalFrames
        self.presentBytes = presentBytes
        self.diskSize = diskSize
    }
}
