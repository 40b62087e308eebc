#!/usr/bin/env python3
"""boot-frames.py DISK [FRAME_SIZE]

How much of a contrib/vm disk the boot needs, at imgfs frame granularity (default 1 MiB): the
frames holding the data blocks of the files the boot reads (the kernel and initrd that boot.sh
extracts, busybox, /init and every file on /imgfs-boot/read-list), found with debugfs, against
the frames that are not all zeros (the frames an imgfs push stores). File system metadata the guest also
reads (inode tables, directories, extent blocks) is not counted. Prints one line:
"BOOT_FRAMES DATA_FRAMES BOOT_FILE_BYTES"."""
import os, subprocess, sys

def main():
    disk = sys.argv[1]
    frame = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
    listing = subprocess.run(["debugfs", "-R", "cat /imgfs-boot/read-list", disk],
                             capture_output=True, text=True, check=True).stdout.split()
    files = ["/boot/vmlinuz", "/boot/initrd.img", "/bin/busybox", "/init", "/imgfs-boot/read-list"]
    files += ["/" + p for p in listing]
    commands = "".join(f"blocks {f}\n" for f in files)
    out = subprocess.run(["debugfs", "-f", "-", disk], input=commands,
                         capture_output=True, text=True, check=True).stdout
    block_size = 4096
    stats = subprocess.run(["debugfs", "-R", "stats", disk], capture_output=True, text=True).stdout
    for line in stats.splitlines():
        if line.startswith("Block size:"):
            block_size = int(line.split()[-1])
    boot, nbytes = set(), 0
    for line in out.splitlines():
        if line.startswith("debugfs:"):
            continue
        for word in line.split():
            if word.isdigit():
                nbytes += block_size
                boot.add(int(word) * block_size // frame)
    # Frames that hold anything but zeros (what an imgfs push stores; SEEK_DATA alone over-counts,
    # since mkfs leaves unwritten extents whose reported data depends on the page cache).
    data = set()
    fd = os.open(disk, os.O_RDONLY)
    size, pos = os.fstat(fd).st_size, 0
    zero = bytes(frame)
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        for f in range(start // frame, (end - 1) // frame + 1):
            if f not in data:
                chunk = os.pread(fd, frame, f * frame)
                if chunk != zero[:len(chunk)]:
                    data.add(f)
        pos = end
    os.close(fd)
    print(len(boot), len(data), nbytes)

if __name__ == "__main__":
    main()
