// inflateInit2 is a macro; the wrapper gives Swift a function to call.
#ifndef IMGFS_CZLIB_SHIM_H
#define IMGFS_CZLIB_SHIM_H
#include <zlib.h>
static inline int imgfs_inflateInit2(z_streamp strm, int windowBits) { return inflateInit2(strm, windowBits); }
static inline int imgfs_deflateInit2(z_streamp strm, int level, int windowBits) { return deflateInit2(strm, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY); }
#endif
