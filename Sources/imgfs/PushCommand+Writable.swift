import ArgumentParser
import Fetch
import FoundationEssentials
import Glibc
import Logging
import Mount
import OCI
import Push
import Verity

extension PushCommand {
    /// The base image of a `--writable` mount at `source` (found through the mount's status file
    /// and its layer's `overlay.json`), when it lives on the registry being pushed to; nil for an
    /// ordinary directory or file, which is pushed as usual.
    func writableMountBase(source: String, target: Reference, client: RegistryClient, logger: Logger) throws -> PushBase? {
        guard let resolved = realpath(source, nil) else { return nil }
        let path = String(cString: resolved)
        free(resolved)
        guard let status = MountStatusFiles.read(MountStatusFiles.path(forMountpoint: path)),
              MountStatusFiles.isAlive(status.pid), let directory = status.writableDirectory,
              let overlay = try OverlayDescription.read(directory: directory) else { return nil }
        guard overlay.registry == target.registry else {
            writeStandardError("imgfs: note: \(path) was written over an image on \(overlay.registry); pushing the whole disk to \(target.registry)\n")
            return nil
        }
        let digest: Digest
        do { digest = try Digest(parsing: overlay.manifestDigest) } catch {
            throw ValidationError("\(directory)/\(OverlayDescription.fileName): bad manifest digest: \(error)")
        }
        logger.info("pushing a written disk over its base image", metadata: ["base": "\(overlay.repository)@\(digest)"])
        return try PushBase.fetch(client: client, repository: overlay.repository, manifestDigest: digest)
    }

    /// A boot profile file, checked to be one (docs/FORMAT.md, "Boot profiles").
    func readBootProfile(_ path: String) throws -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            // Foundation's file errors print as NSError dumps; strerror says the same in a few words.
            let reason = access(path, R_OK) == 0 ? "\(error)" : String(cString: strerror(errno))
            throw ValidationError("--profile \(path): \(reason)")
        }
        guard bytes.count <= 64 << 20, BootProfile.decode(bytes, frameCount: Int.max) != nil else {
            throw ValidationError("--profile \(path): not an imgfs boot profile (IMGFSPRF, version 1)")
        }
        return bytes
    }
}
