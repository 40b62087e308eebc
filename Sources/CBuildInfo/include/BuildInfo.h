// Swift has no compile-time constants with values (`-D` only sets flags), so the commit a
// build was made from reaches the binary through this C function, compiled with
// -DIMGFS_BUILD_COMMIT="<commit>" when IMGFS_BUILD_COMMIT is set (Package.swift;
// contrib/package/build sets it). A plain `swift build` passes nothing and it returns NULL.
#ifndef IMGFS_BUILD_INFO_H
#define IMGFS_BUILD_INFO_H

/// The commit the build was made from (e.g. "e3f6e14a1b2c" or "e3f6e14a1b2c-dirty"), or NULL.
const char *imgfs_build_commit(void);

#endif
