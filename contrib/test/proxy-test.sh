#!/usr/bin/env bash
# proxy-test.sh IMGFS: proves that imgfs sends registry traffic through HTTP_PROXY and not to a
# host in NO_PROXY, with a real proxy (Debian's tinyproxy). imgfs always exempts loopback from the
# proxy, so the registry runs on a non-loopback address: 10.213.0.2, inside a network namespace
# this script creates (a veth pair to 10.213.0.1), and removes again. Needs root.
# Prints "ok" and exits 0 when both hold; anything else is a failure.
set -euo pipefail
imgfs=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
ns=imgfs-proxy-$$
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-proxy.XXXXXX")
tinyproxy_pid="" registry_pid=""
stop() {  # stop PID: TERM, then KILL if it is still there after 2 s
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 1 20); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    [[ -n $tinyproxy_pid ]] && stop "$tinyproxy_pid"
    [[ -n $registry_pid ]] && stop "$registry_pid"
    ip link del "veth$$" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
command -v tinyproxy >/dev/null || { echo "tinyproxy not installed (apt-get install tinyproxy)" >&2; exit 1; }

ip netns add "$ns"
ip link add "veth$$" type veth peer name "vpeer$$"
ip link set "vpeer$$" netns "$ns"
ip addr add 10.213.0.1/30 dev "veth$$"
ip link set "veth$$" up
ip netns exec "$ns" ip addr add 10.213.0.2/30 dev "vpeer$$"
ip netns exec "$ns" ip link set "vpeer$$" up
ip netns exec "$ns" ip link set lo up

mkdir -p "$work/data"
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $work/data}}
http: {addr: "10.213.0.2:5000", secret: imgfs-proxy-test}
YAML
# Servers get no descriptor but their logs: a caller reading our output through a pipe must see
# EOF when this script exits.
closefds() { for fd in /proc/self/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done; }
( closefds; exec nsenter --net="/run/netns/$ns" docker-registry serve "$work/registry.yml" ) >"$work/registry.log" 2>&1 </dev/null &
registry_pid=$!

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
cat > "$work/tinyproxy.conf" <<CONF
Port $port
Listen 127.0.0.1
Timeout 60
LogFile "$work/tinyproxy.log"
LogLevel Connect
MaxClients 20
Allow 127.0.0.1
ConnectPort 5000
CONF
( closefds; exec tinyproxy -d -c "$work/tinyproxy.conf" ) >/dev/null 2>&1 </dev/null &
tinyproxy_pid=$!
for _ in $(seq 1 50); do
    curl -s -o /dev/null --noproxy "*" http://10.213.0.2:5000/v2/ && curl -s -o /dev/null --noproxy "*" "http://127.0.0.1:$port/" && break
    sleep 0.1
done

head -c 3000000 /dev/urandom > "$work/disk.img"
ref=10.213.0.2:5000/proxy/test:1
# The push goes through the proxy too: its uploads (POST, PATCH, PUT) are in tinyproxy's log.
# libcurl may have to send a body again there, which needs imgfs's seek callback.
HTTP_PROXY=http://127.0.0.1:$port NO_PROXY= "$imgfs" push --quiet --plain-http "$work/disk.img" "$ref" >/dev/null
uploads=$(grep -cE '(PUT|POST|PATCH) http://10.213.0.2:5000' "$work/tinyproxy.log" || true)
[[ $uploads -ge 3 ]] || { echo "expected the push's uploads through the proxy, tinyproxy logged $uploads" >&2; exit 1; }
pushed=$(grep -c "10.213.0.2:5000" "$work/tinyproxy.log" || true)
# Through the proxy: tinyproxy logs the registry's address for every request of the pull.
HTTP_PROXY=http://127.0.0.1:$port NO_PROXY= "$imgfs" pull --plain-http "$ref" "$work/pulled" >/dev/null 2>&1
cmp "$work/disk.img" "$work/pulled/disk.img"
through=$(grep -c "10.213.0.2:5000" "$work/tinyproxy.log" || true)
[[ $((through - pushed)) -ge 3 ]] || { echo "expected requests through the proxy, tinyproxy logged $through" >&2; exit 1; }
# NO_PROXY names the registry: nothing more reaches the proxy.
HTTP_PROXY=http://127.0.0.1:$port NO_PROXY=10.213.0.2 "$imgfs" pull --plain-http "$ref" "$work/pulled2" >/dev/null 2>&1
cmp "$work/disk.img" "$work/pulled2/disk.img"
after=$(grep -c "10.213.0.2:5000" "$work/tinyproxy.log" || true)
[[ $after -eq $through ]] || { echo "NO_PROXY ignored: tinyproxy logged $((after - through)) more requests" >&2; exit 1; }
echo ok
