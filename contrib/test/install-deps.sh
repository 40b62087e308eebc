#!/usr/bin/env bash
# Installs the Debian packages imgfs builds against and its tests use. Idempotent: apt runs only
# when something is missing, so a warm machine pays nothing.
set -euo pipefail
packages=(
    libfuse3-dev fuse3 libcurl4-openssl-dev zlib1g-dev libssl-dev libdeflate-dev liblz4-dev   # build
    docker-registry apache2-utils skopeo curl openssl fsverity pigz e2fsprogs python3 bc nginx tinyproxy  # tests, benchmarks (nginx: contrib/mirror; tinyproxy: proxy-test.sh)
    qemu-system-x86 busybox-static                # VM boot test (contrib/vm; it downloads linux-image-amd64 itself)
    qemu-utils                                    # qemu-img: the qcow2 containerDisk tests
    systemd util-linux                            # systemd-analyze verify of contrib/systemd; mount(8) for the fuse.imgfs helper
    dpkg-dev chrpath lintian mmdebstrap prometheus   # the Debian package, its install test, promtool for the metrics
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
