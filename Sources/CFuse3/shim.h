// FUSE_USE_VERSION must be defined before the header is read; Swift cannot do that,
// so this shim pins the API level (3.12: fuse_loop_cfg_*, fuse_session_loop_mt_312).
#ifndef IMGFS_CFUSE3_SHIM_H
#define IMGFS_CFUSE3_SHIM_H
#define FUSE_USE_VERSION 312
#define _FILE_OFFSET_BITS 64
#include <fuse3/fuse_lowlevel.h>
#include <fuse3/fuse_opt.h>
#endif
