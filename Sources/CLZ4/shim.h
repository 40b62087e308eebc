// liblz4 block API, for Apple's framed LZ4 (lume legacy and tart disk layers).
#ifndef IMGFS_CLZ4_SHIM_H
#define IMGFS_CLZ4_SHIM_H
#include <lz4.h>
#endif
