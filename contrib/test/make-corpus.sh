#!/usr/bin/env bash
# make-corpus.sh OUT.img [SIZE]
# Builds a sparse ext4 disk image (default 8G) holding about CORPUS_MB (default 1500) MB of this
# machine's own files, the push and mount tests' corpus. Files are hard-linked into a staging
# tree (copied when /usr is on another filesystem) and written by `mkfs.ext4 -d`.
set -euo pipefail
out=$1
size=${2:-8G}
target_mb=${CORPUS_MB:-1500}
stage=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-corpus.XXXXXX")
trap 'rm -rf "$stage"' EXIT

total_mb=0
# Whole top-level entries of a few system directories, until the target is reached.
for dir in /usr/lib/x86_64-linux-gnu /usr/bin /usr/share /usr/lib/gcc /usr/sbin /usr/lib/python3; do
    [[ -d $dir ]] || continue
    dest="$stage/$(echo "${dir#/}" | tr / _)"
    mkdir -p "$dest"
    for entry in "$dir"/*; do
        ((total_mb < target_mb)) || break 2
        cp -al "$entry" "$dest/" 2>/dev/null || cp -a "$entry" "$dest/"
        [[ -d $entry ]] && total_mb=$(du -sm --apparent-size "$stage" | cut -f1)
    done
    total_mb=$(du -sm --apparent-size "$stage" | cut -f1)
done
# Some frames identical on purpose (dedup), and some written zeros (all-zero data frames, not holes).
head -c 1048576 /dev/urandom > "$stage/block"
for i in $(seq 1 16); do cat "$stage/block"; done > "$stage/repeated.bin"
rm "$stage/block"
head -c 33554432 /dev/zero > "$stage/zeros.bin"

rm -f "$out"
truncate -s "$size" "$out"
mkfs.ext4 -q -F -E root_owner=0:0 -d "$stage" "$out"
echo "corpus: $out ($(du -h --apparent-size "$out" | cut -f1) apparent, $(du -h "$out" | cut -f1) allocated, ${total_mb} MB of files)" >&2
