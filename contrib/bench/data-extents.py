#!/usr/bin/env python3
"""data-extents.py FILE: writes the bytes of FILE's data extents (SEEK_DATA/SEEK_HOLE) to stdout,
so that a compressor sees the same data regions imgfs push reads, and no holes."""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
out = sys.stdout.buffer
pos = 0
while pos < size:
    try:
        start = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    end = os.lseek(fd, start, os.SEEK_HOLE)
    while start < end:
        chunk = os.pread(fd, min(8 << 20, end - start), start)
        if not chunk:
            break
        out.write(chunk)
        start += len(chunk)
    pos = end
