import FuzzSupport
import ImgfsFormat
import OCI

/// Manifest, image index and imgfs config JSON; then an imgfs image from a manifest and a
/// config blob. The input is `manifest NUL config`; the whole input is also tried as each type.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let input = bytes(data, size)
    _ = try? ManifestEncoding.decode(ImageIndex.self, from: input)
    _ = try? ImageConfig(decoding: input)
    let split = parts(input, 2)
    if let manifest = try? ManifestEncoding.decode(Manifest.self, from: split[0]) {
        let again = try? ManifestEncoding.decode(Manifest.self, from: ManifestEncoding.encode(manifest))
        precondition(again == manifest, "a decoded manifest does not survive encoding")
        if ImgfsImage.isImgfs(manifest), let image = try? ImgfsImage(manifest: manifest, configBytes: split[1]) {
            _ = (image.geometry.frameCount, image.chunkNumbers.count)
        }
    }
    return 0
}

runLibFuzzer(fuzz)
