#!/usr/bin/env bash
# Starts and stops a throwaway OCI registry (the CNCF distribution registry v2, Debian's
# docker-registry) on 127.0.0.1 for tests.
#
# Debian packages CI must install: docker-registry apache2-utils curl python3
#
#   registry.sh start DIR [--htpasswd USER:PASS] [--proxy URL]
#                                                  prints 127.0.0.1:PORT once /v2/ answers;
#                                                  --proxy makes it a pull-through cache of URL
#   registry.sh stop DIR                           kills exactly the pid in DIR/registry.pid
#
# Storage lives in DIR/data. DIR/registry.log gets one Apache combined-format access line per
# HTTP request (method, path, status, bytes written; the registry does not log the Range
# header) plus warnings and errors in logfmt.
set -euo pipefail

usage() { echo "usage: $0 start DIR [--htpasswd USER:PASS] [--proxy URL] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    local htpasswd="" proxy=""
    while [ $# -gt 0 ]; do
        case $1 in
            --htpasswd) htpasswd=$2; shift 2 ;;
            --proxy) proxy="proxy:
  remoteurl: $2"; shift 2 ;;
            *) usage ;;
        esac
    done
    command -v docker-registry >/dev/null || { echo "docker-registry not installed (apt-get install docker-registry)" >&2; exit 1; }
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
        echo "a registry is already running from $dir (pid $(cat "$dir/registry.pid"))" >&2; exit 1
    fi
    local auth=""
    if [ -n "$htpasswd" ]; then
        command -v htpasswd >/dev/null || { echo "htpasswd not installed (apt-get install apache2-utils)" >&2; exit 1; }
        # distribution accepts bcrypt entries only.
        htpasswd -Bbn "${htpasswd%%:*}" "${htpasswd#*:}" > "$dir/htpasswd"
        auth="auth:
  htpasswd:
    realm: imgfs-test
    path: $dir/htpasswd"
    fi
    local attempt port status
    # The free port may be taken between choosing and binding it; try a few.
    for attempt in 1 2 3; do
        port=$(free_port)
        cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: imgfs-test-secret
$auth
$proxy
YAML
        # Close every inherited descriptor above 2: a caller reading our stdout through a pipe
        # must see EOF when this script exits, not when the registry does.
        (
            for fd in /proc/self/fd/*; do
                fd=${fd##*/}
                [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
            done
            exec docker-registry serve "$dir/config.yml"
        ) </dev/null >>"$dir/registry.log" 2>&1 &
        echo $! > "$dir/registry.pid"
        for _ in $(seq 1 100); do
            status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
            if [ "$status" = 200 ] || [ "$status" = 401 ]; then
                echo "127.0.0.1:$port"
                return 0
            fi
            kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null || break
            sleep 0.1
        done
        stop_registry
    done
    echo "registry did not start; see $dir/registry.log" >&2
    exit 1
}

stop_registry() {
    [ -f "$dir/registry.pid" ] || return 0
    local pid
    pid=$(cat "$dir/registry.pid")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/registry.pid"
}

case $cmd in
    start) start "$@" ;;
    stop) stop_registry ;;
    *) usage ;;
esac
