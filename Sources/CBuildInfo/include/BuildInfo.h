// Swift has no compile-time constants with values (`-D` only sets flags), so the commit a
// build was made from reaches the binary through this C function, compiled with
// `-Xcc -DIMGFS_BUILD_COMMIT='"<commit>"'` by contrib/package/build. A plain `swift build`
// passes nothing and the function returns NULL.
#ifndef IMGFS_BUILD_INFO_H
#define IMGFS_BUILD_INFO_H

/// The commit the build was made from (e.g. "e3f6e14a1b2c" or "e3f6e14a1b2c-dirty"), or NULL.
const char *imgfs_build_commit(void);

#endif
