// FUSE_USE_VERSION must be defined before the header is read; Swift cannot do that,
// so this shim pins the API level (3.12: fuse_loop_cfg_*, fuse_session_loop_mt_312).
#ifndef IMGFS_CFUSE3_SHIM_H
#define IMGFS_CFUSE3_SHIM_H
#define FUSE_USE_VERSION 312
/* No _FILE_OFFSET_BITS here: on LP64 glibc off_t is 64-bit already (fuse_common.h
 * static-asserts it), and defining it makes Clang build struct flock / struct statvfs
 * with __off64_t typedefs that conflict with SwiftGlibc's ("has different definitions
 * in different modules"), so Swift could not use fuse_lowlevel_ops at all. */
#include <fuse3/fuse_lowlevel.h>
#include <fuse3/fuse_opt.h>
#include <sys/syscall.h>
#include <unistd.h>

/* memfd_create(2), which Swift's Glibc module does not export (glibc declares it only under
 * _GNU_SOURCE). -1 with errno set where the kernel lacks it. */
static inline int imgfs_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}
#endif
