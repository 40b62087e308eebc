import Foundation

/// The disk image the push and mount tests use: `IMGFS_TEST_CORPUS` (contrib/test/run builds the
/// 8 GiB ext4 corpus of issue 2), else a small one built once per test process.
enum Corpus {
    static func path() throws -> String {
        try sharedCorpus.get()
    }
}

private let sharedCorpus = Result<String, any Error> {
    if let path = TestEnvironment.environment["IMGFS_TEST_CORPUS"] { return path }
    let directory = try TestEnvironment.scratchDirectory("corpus")
    let path = directory + "/corpus.img"
    let result = try runCommand("/usr/bin/env", ["CORPUS_MB=120", TestEnvironment.repositoryRoot + "/contrib/test/make-corpus.sh", path, "1G"], timeout: 600)
    guard result.status == 0 else { throw ShellFailed(script: "make-corpus.sh", result: result) }
    return path
}
