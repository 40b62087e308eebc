import FoundationEssentials
import Glibc
import SystemIO

/// `overlay.json` in a writable mount's layer directory: which image the written blocks sit on.
/// `imgfs push MOUNTPOINT REF` reads it to re-use the base image's unchanged chunk layers, and a
/// later mount of the same directory checks it so that written blocks never land on another image.
public struct OverlayDescription: Codable, Sendable, Equatable {
    public static let fileName = "overlay.json"

    public var format = 1
    /// The base image, pinned: registry, repository and manifest digest.
    public var registry: String
    public var repository: String
    public var manifestDigest: String
    /// The frame index digest (imgfs images only).
    public var indexDigest: String?
    /// The reference as the user typed it (informational).
    public var reference: String
    public var diskSize: UInt64
    public var blockSize: Int

    public init(registry: String, repository: String, manifestDigest: String, indexDigest: String?, reference: String, diskSize: UInt64, blockSize: Int) {
        self.registry = registry
        self.repository = repository
        self.manifestDigest = manifestDigest
        self.indexDigest = indexDigest
        self.reference = reference
        self.diskSize = diskSize
        self.blockSize = blockSize
    }

    /// The description in `directory`, or nil when there is none (a new layer).
    public static func read(directory: String) throws(MountError) -> OverlayDescription? {
        let path = directory + "/" + fileName
        guard access(path, F_OK) == 0 else { return nil }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return try JSONDecoder().decode(OverlayDescription.self, from: data)
        } catch {
            throw MountError.invalidArgument("\(path): not a readable writable-layer description (\(error))")
        }
    }

    /// Writes atomically and durably, so a crash leaves the old description or the new one.
    public func write(directory: String) throws(MountError) {
        let path = directory + "/" + Self.fileName
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let bytes: [UInt8]
        do { bytes = Array(try encoder.encode(self)) } catch {
            throw MountError.invalidArgument("cannot encode \(path): \(error)")
        }
        do { try FileIO.writeAtomically(bytes, to: path, durable: true) } catch { throw MountError(error) }
    }
}
