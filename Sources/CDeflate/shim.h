// libdeflate: whole-buffer gzip, used for frames (their sizes are known up front).
#ifndef IMGFS_CDEFLATE_SHIM_H
#define IMGFS_CDEFLATE_SHIM_H
#include <libdeflate.h>
#endif
