import Foundation
import Mount
import Testing

@Suite struct StatusTests {
    @Test func statusFileNamesDoNotCollide() {
        #expect(MountStatusFiles.path(forMountpoint: "/a/b") != MountStatusFiles.path(forMountpoint: "/a%2Fb"))
        #expect(MountStatusFiles.path(forMountpoint: "/mnt/vm").hasSuffix("/%2Fmnt%2Fvm.json"))
    }
}
