# contrib/vm/test-lib.sh: what the VM test scripts share; sourced, not run.
# Before sourcing, set `test_name` (the prefix of log lines and of the scratch directory).
# It sets here, root, imgfs and work, defines log/die/require_tools/test_registry/random_hex,
# tracks mounts in `mounted` and unmounts them (and stops a registry it started) on exit.

here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
root=$(cd "$here/../.." && pwd)
imgfs=${IMGFS_BIN:-$root/.build/release/imgfs}

log() { echo "$test_name: $*" >&2; }
die() { echo "$test_name: FAILED: $*" >&2; exit 1; }

# require_tools TOOL...: the imgfs binary and every named command must exist.
require_tools() {
    [[ -x $imgfs ]] || die "no imgfs binary at $imgfs (swift build -c release --product imgfs, or set IMGFS_BIN)"
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool missing (contrib/test/install-deps.sh)"
    done
}

work=$(mktemp -d "${IMGFS_TEST_SCRATCH:-/var/tmp}/imgfs-$test_name.XXXXXX")
mounted=()
started_registry=
cleanup() {
    local m
    for m in "${mounted[@]}"; do
        if grep -qF " $m " /proc/mounts; then
            "$imgfs" umount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m" 2>/dev/null || true
        fi
    done
    if [[ -n $started_registry ]]; then "$root/contrib/test/registry.sh" stop "$started_registry" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# test_registry: prints host:port of IMGFS_TEST_REGISTRY, or of a registry started (and, on exit,
# stopped) here. Call it without command substitution's subshell: `test_registry; registry=$REPLY`.
test_registry() {
    REPLY=${IMGFS_TEST_REGISTRY:-}
    if [[ -z $REPLY ]]; then
        started_registry="$work/registry"
        REPLY=$("$root/contrib/test/registry.sh" start "$started_registry")
    fi
}

# random_hex: 8 hex digits, for repository names no other run uses.
random_hex() { head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
