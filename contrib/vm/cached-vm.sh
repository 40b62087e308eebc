#!/usr/bin/env bash
# contrib/vm/cached-vm.sh
#
# Prints the path of the test VM directory built by contrib/vm/build-disk.sh, building it first if
# needed. Built VMs are kept under IMGFS_VM_CACHE (default /var/tmp/imgfs-vm-cache), keyed by the
# hash of the scripts that make them and of the build's environment knobs, so a CI machine with a
# warm cache does not rebuild (a build takes about 20 s and 600 MB).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm_cache=${IMGFS_VM_CACHE:-/var/tmp/imgfs-vm-cache}
knobs="PAYLOAD_MB=${PAYLOAD_MB:-} READ_MB=${READ_MB:-} PAYLOAD_SOURCES=${PAYLOAD_SOURCES:-} SIZE=${VM_DISK_SIZE:-}"
key=$(cat "$here/build-disk.sh" "$here"/guest/* <(echo "$knobs") | sha256sum | cut -c1-16)
vm="$vm_cache/$key"
if [[ -f $vm/disk.img && -f $vm/config.json && -f $vm/expected-marker ]]; then
    echo "cached-vm: using $vm" >&2
else
    echo "cached-vm: building $vm ($knobs)" >&2
    t0=$(date +%s)
    mkdir -p "$vm_cache"
    rm -rf "$vm.tmp.$$"
    "$here/build-disk.sh" "$vm.tmp.$$" ${VM_DISK_SIZE:-}
    rm -rf "$vm"
    mv "$vm.tmp.$$" "$vm"
    echo "cached-vm: built in $(( $(date +%s) - t0 )) s" >&2
fi
echo "$vm"
