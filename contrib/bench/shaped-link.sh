#!/usr/bin/env bash
# contrib/bench/shaped-link.sh up NS MBIT [NET] | rate NS MBIT | down NS
#
# A slow network link for benches: network namespace NS joined to this host by a veth pair. The
# host's end has NET.1, the namespace's NET.2 (NET is three octets, default 10.214.0); a server
# started with `nsenter --net=/run/netns/NS ...` on NET.2 is reached across the link (not `ip netns
# exec`, whose new mount namespace would keep a copy of every FUSE mount on the host alive: a
# mount unmounted later stays served by its daemon, which never sees the unmount). What the namespace
# sends (downloads, for a registry in it) is shaped by tc tbf to MBIT Mbit/s, 0 meaning unshaped;
# `rate` changes it in place, so one namespace and its servers serve several link speeds. `down`
# removes the namespace and the veth (and so the servers' addresses: stop them first). Needs root.
set -euo pipefail
usage() { sed -n '2p' "$0" | sed 's/^# //' >&2; exit 2; }
cmd=${1:-}; ns=${2:-}
[[ -n $cmd && -n $ns ]] || usage
# Interface names are at most 15 bytes: the host's end is named from a hash of NS.
host_if="vs$(echo -n "$ns" | sha256sum | cut -c1-10)"
ns_if=link0

shape() {
    local mbit=$1
    if ((mbit == 0)); then
        ip netns exec "$ns" tc qdisc del dev "$ns_if" root 2>/dev/null || true
    else
        # burst: 8 ms at the rate, at least 32 KB and at most 256 KB (tbf needs at least rate/HZ,
        # 4 ms at HZ=250, or it cannot reach the rate; 256 KB is that above ~500 Mbit/s, and
        # measured 1 Gbit/s links reach 119 MB/s with it); latency bounds the queue,
        # as a real bottleneck's buffer does. A fixed 256 KB let a small transfer after a pause
        # (a 230 KB frame index, one frame) cross a 25 Mbit/s link at veth speed, 84 ms of the
        # link for free, which no 25 Mbit/s link gives.
        local burst=$(( mbit * 1000 ))   # bytes in 8 ms: mbit * 10^6 / 8 * 0.008
        (( burst < 32768 )) && burst=32768
        (( burst > 262144 )) && burst=262144
        ip netns exec "$ns" tc qdisc replace dev "$ns_if" root tbf rate "${mbit}mbit" burst "$burst" latency 100ms
    fi
}

case $cmd in
    up)
        mbit=${3:?usage}; net=${4:-10.214.0}
        ip netns add "$ns"
        ip link add "$host_if" type veth peer name "$ns_if" netns "$ns"
        ip addr add "$net.1/30" dev "$host_if"
        ip link set "$host_if" up
        ip netns exec "$ns" ip addr add "$net.2/30" dev "$ns_if"
        ip netns exec "$ns" ip link set "$ns_if" up
        ip netns exec "$ns" ip link set lo up
        shape "$mbit"
        ;;
    rate) shape "${3:?usage}" ;;
    down)
        ip link del "$host_if" 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
        ;;
    *) usage ;;
esac
