#!/usr/bin/env bash
# contrib/vm/boot.sh DISK_PATH [--timeout S] [--accel tcg|kvm] [--config FILE] [--expect LINE] [--log FILE] [--append ARGS] [--no-snapshot]
#
# Boots a disk built by contrib/vm/build-disk.sh (a local file or MOUNTPOINT/disk.img of an imgfs
# mount, or MOUNTPOINT/disk.qcow2 of a qcow2 containerDisk: qcow2 is recognised by its magic) and
# checks the marker it prints. Everything comes from the disk: the kernel and initrd are
# extracted from it with debugfs, which reads the image file directly. The boot settings (kernel
# and initrd paths inside the image, command line, memory, expected marker) come from config.json
# beside the disk (--config to name another); without one, the defaults below and the
# expected-marker file beside the disk are used.
#
# qemu runs with -accel tcg unless --accel or IMGFS_VM_ACCEL says kvm (with -cpu host, or
# IMGFS_VM_CPU); the disk is attached as
# virtio with snapshot=on, so the guest writes to a temporary overlay and never to DISK_PATH
# (which may be a read-only mount). Exit status 0 only if the expected marker appeared within the
# timeout (default 180 s). --expect LINE waits for that console line instead of the configured
# marker; --append ARGS adds ARGS to the kernel command line (e.g. "imgfs.mode=write
# imgfs.token=T", see guest/init); --no-snapshot attaches the disk without snapshot=on, so the
# guest's writes reach DISK_PATH (a local copy or the disk.img of an `imgfs mount --writable`). Prints "boot: ok <seconds> s" (or the failure and the console's tail) on
# stderr and, on stdout, the boot time in seconds, debugfs extraction included.
set -euo pipefail

usage() { sed -n '2p' "$0" | sed 's/^# //' >&2; exit 2; }
disk=
timeout_s=${IMGFS_VM_TIMEOUT:-180}
accel=${IMGFS_VM_ACCEL:-tcg}
config=
expect=
console_log=
append=
snapshot=on
while (($#)); do
    case $1 in
        --timeout) timeout_s=${2:?}; shift 2 ;;
        --accel) accel=${2:?}; shift 2 ;;
        --config) config=${2:?}; shift 2 ;;
        --expect) expect=${2:?}; shift 2 ;;
        --log) console_log=${2:?}; shift 2 ;;
        --append) append=${2:?}; shift 2 ;;
        --no-snapshot) snapshot=off; shift ;;
        -h|--help) usage ;;
        -*) echo "boot.sh: unknown option $1" >&2; usage ;;
        *) [[ -z $disk ]] || usage; disk=$1; shift ;;
    esac
done
[[ -n $disk ]] || usage
[[ -r $disk ]] || { echo "boot.sh: cannot read $disk" >&2; exit 2; }
dir=$(dirname "$disk")
[[ -n $config || ! -f $dir/config.json ]] || config=$dir/config.json

kernel_path=/boot/vmlinuz initrd_path=/boot/initrd.img memory=512
cmdline="root=/dev/vda rw console=ttyS0 init=/init panic=1 quiet loglevel=3"
if [[ -n $config ]]; then
    # One line per setting, tab separated, so paths and command lines keep their spaces.
    while IFS=$'\t' read -r key value; do
        case $key in
            kernel) kernel_path=$value ;;
            initrd) initrd_path=$value ;;
            cmdline) cmdline=$value ;;
            memory) memory=$value ;;
            marker) [[ -n $expect ]] || expect=$value ;;
        esac
    done < <(python3 - "$config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
b = c.get("boot", {})
for key, value in (("kernel", b.get("kernel")), ("initrd", b.get("initrd")), ("cmdline", b.get("cmdline")),
                   ("memory", c.get("memoryMiB")), ("marker", c.get("bootCheck", {}).get("marker"))):
    if value is not None:
        print(f"{key}\t{value}")
PY
)
fi
if [[ -z $expect && -f $dir/expected-marker ]]; then expect=$(< "$dir/expected-marker"); fi
[[ -z $append ]] || cmdline="$cmdline $append"
[[ $snapshot == on || -w $disk ]] || { echo "boot.sh: --no-snapshot needs a writable $disk" >&2; exit 2; }
[[ -n $expect ]] || { echo "boot.sh: no expected marker (config.json bootCheck.marker, expected-marker or --expect)" >&2; exit 2; }

case $accel in
    tcg) accel_args=(-accel tcg) ;;
    kvm) accel_args=(-accel kvm -cpu "${IMGFS_VM_CPU:-host}") ;;
    *) echo "boot.sh: --accel must be tcg or kvm" >&2; exit 2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-boot.XXXXXX")
qemu_pid=
cleanup() {
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then kill -KILL "$qemu_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
[[ -n $console_log ]] || console_log=$work/console.log
: > "$console_log"

now() { date +%s.%N; }
start=$(now)
# A qcow2 disk (a KubeVirt containerDisk's disk.qcow2) is attached as qcow2; debugfs reads raw
# images only, so the kernel and initrd come from a raw copy of it (qemu-img, from qemu-utils).
format=raw
kernel_source=$disk
if [[ $(head -c 4 "$disk" | od -An -tx1 | tr -d ' \n') == 514649fb ]]; then
    format=qcow2
    kernel_source=$work/kernel-source.img
    qemu-img convert -f qcow2 -O raw "$disk" "$kernel_source" || { echo "boot.sh: qemu-img could not read $disk" >&2; exit 1; }
fi
for part in kernel initrd; do
    path_var=${part}_path
    debugfs -R "dump ${!path_var} $work/$part" "$kernel_source" 2>"$work/debugfs.err" || true
    if [[ ! -s $work/$part ]]; then
        echo "boot.sh: debugfs could not extract ${!path_var} from $disk:" >&2
        cat "$work/debugfs.err" >&2
        exit 1
    fi
done
extracted=$(now)

# snapshot=on (unless --no-snapshot): writes go to a temporary overlay; file.locking=off: the disk may sit on a FUSE
# mount that does not take locks, and nothing else opens it for writing. IMGFS_VM_DRIVE_OPTIONS
# appends to -drive (e.g. cache=none, to read the disk with O_DIRECT).
qemu-system-x86_64 "${accel_args[@]}" -m "$memory" -smp 1 \
    -nodefaults -no-user-config -display none -monitor none -no-reboot \
    -serial "file:$console_log" \
    -kernel "$work/kernel" -initrd "$work/initrd" -append "$cmdline" \
    -drive "file=$disk,format=$format,if=virtio,snapshot=$snapshot,file.locking=off${IMGFS_VM_DRIVE_OPTIONS:+,$IMGFS_VM_DRIVE_OPTIONS}" \
    > "$work/qemu.out" 2>&1 &
qemu_pid=$!
deadline=$(( $(date +%s) + timeout_s ))
status=timeout
while kill -0 "$qemu_pid" 2>/dev/null; do
    if grep -q '^IMGFS-BOOT-FAIL' "$console_log"; then status=guest-failed; fi
    if (( $(date +%s) >= deadline )); then break; fi
    sleep 0.2
done
if kill -0 "$qemu_pid" 2>/dev/null; then
    kill -TERM "$qemu_pid" 2>/dev/null || true
    sleep 1
    kill -KILL "$qemu_pid" 2>/dev/null || true
else
    [[ $status == guest-failed ]] || status=exited
fi
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
end=$(now)
seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
extract_s=$(awk -v a="$start" -v b="$extracted" 'BEGIN { printf "%.2f", b - a }')

if [[ $status == exited ]] && tr -d '\r' < "$console_log" | grep -qxF "$expect"; then
    echo "boot: ok in $seconds s ($extract_s s extracting the kernel and initrd, accel $accel)" >&2
    echo "$seconds"
    exit 0
fi
if [[ $status == exited ]]; then
    got=$(tr -d '\r' < "$console_log" | grep -m1 -E '^IMGFS-(BOOT-OK|WRITE-OK|READBACK)' || true)
    if [[ -n $got ]]; then status="wrong marker: $got"; else status="no marker"; fi
fi
echo "boot: FAILED ($status) after $seconds s; expected: $expect" >&2
echo "--- qemu output" >&2
tail -n 20 "$work/qemu.out" >&2 || true
echo "--- console (last 40 lines)" >&2
tail -n 40 "$console_log" >&2 || true
exit 1
