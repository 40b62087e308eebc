# Sourced by benchmarks (contrib/bench/fleet, contrib/bench/mount): a docker registry behind one
# shaped link. The registry runs on 10.214.0.2:5000 in a network namespace of its own, and the
# namespace's end of a veth pair sends at most MBIT Mbit/s (tc tbf), so a client on this side sees
# a link of that rate, as a host does, rather than loopback. Needs root.
#
#   shaped_link_start WORKDIR MBIT   # starts it; prints the registry's host:port
#   shaped_link_stop WORKDIR         # stops the registry, deletes the veth and the namespace
#   shaped_link_log WORKDIR          # the registry's access log (for blob bytes moved)
#
# The namespace and veth names carry this shell's pid, so that two benchmarks can each hold one;
# they need two nets too: SHAPED_LINK_NET (three octets, default 10.214.0). The registry's pid is
# kept in WORKDIR/registry.pid.

shaped_link_script=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/shaped-link.sh
shaped_link_ns() { echo "imgfs-link-$$"; }
shaped_link_net=${SHAPED_LINK_NET:-10.214.0}

shaped_link_start() {
    local dir=$1 mbit=$2
    # The namespace and the link are contrib/bench/shaped-link.sh's; this adds the registry.
    "$shaped_link_script" up "$(shaped_link_ns)" "$mbit" "$shaped_link_net"
    mkdir -p "$dir/data"
    cat > "$dir/config.yml" <<YAML
version: 0.1
log: {level: warn, formatter: text, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: "$shaped_link_net.2:5000", secret: imgfs-shaped-link}
YAML
    # Inherited descriptors (a caller's $(...) pipe) are closed, or the caller would wait for the registry.
    ( for fd in /proc/self/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
      exec nsenter --net="/run/netns/$(shaped_link_ns)" docker-registry serve "$dir/config.yml" ) </dev/null >>"$dir/registry.log" 2>&1 &
    echo $! > "$dir/registry.pid"
    for _ in $(seq 1 100); do curl -s -o /dev/null http://$shaped_link_net.2:5000/v2/ && break; sleep 0.1; done
    echo $shaped_link_net.2:5000
}

shaped_link_stop() {
    local dir=$1
    [[ -f $dir/registry.pid ]] && kill "$(cat "$dir/registry.pid")" 2>/dev/null || true
    rm -f "$dir/registry.pid"
    "$shaped_link_script" down "$(shaped_link_ns)"
}

shaped_link_log() { echo "$1/registry.log"; }
