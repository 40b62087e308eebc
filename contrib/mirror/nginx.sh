#!/usr/bin/env bash
# Starts and stops nginx with contrib/mirror/imgfs-mirror.conf on 127.0.0.1 (tests, benchmarks).
#   nginx.sh start DIR UPSTREAM-URL   prints 127.0.0.1:PORT once it answers
#   nginx.sh stop DIR                 stops exactly the nginx whose pid is in DIR/nginx.pid
# DIR/access.log gets one line per request (status, body bytes, the Range asked for).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 start DIR UPSTREAM-URL | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
case $cmd in
start)
    [ $# -eq 3 ] || usage
    command -v nginx >/dev/null || { echo "nginx not installed (apt-get install nginx)" >&2; exit 1; }
    mkdir -p "$dir/cache" "$dir/tmp"
    dir=$(cd "$dir" && pwd)
    for attempt in 1 2 3; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
        sed -e "s|@CACHE_DIR@|$dir/cache|" -e "s|@LISTEN@|127.0.0.1:$port|" -e "s|@UPSTREAM@|$3|g" \
            "$here/imgfs-mirror.conf" > "$dir/imgfs-mirror.conf"
        # Started as root, nginx runs its workers as nobody, who cannot enter a scratch directory
        # made by mktemp (0700): for this throwaway instance they keep the caller's user.
        user=""
        [ "$(id -u)" = 0 ] && user="user root root;"
        cat > "$dir/nginx.conf" <<CONF
$user
daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 512; }
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    include $dir/imgfs-mirror.conf;
}
CONF
        ( for fd in /proc/self/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
          exec nginx -c "$dir/nginx.conf" -p "$dir" ) </dev/null >>"$dir/nginx.out" 2>&1 &
        echo $! > "$dir/master.pid"
        for _ in $(seq 1 50); do
            if curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; then echo "127.0.0.1:$port"; exit 0; fi
            kill -0 "$(cat "$dir/master.pid")" 2>/dev/null || break
            sleep 0.1
        done
        kill "$(cat "$dir/master.pid")" 2>/dev/null || true
    done
    echo "nginx did not start; see $dir/error.log and $dir/nginx.out" >&2; exit 1 ;;
stop)
    [ -f "$dir/master.pid" ] || exit 0
    pid=$(cat "$dir/master.pid")
    if kill -QUIT "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/master.pid" ;;
*) usage ;;
esac
