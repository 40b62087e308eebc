#!/usr/bin/env python3
"""A hostile registry that tries to send imgfs beyond HTTP.

- Blob GETs and HEADs are answered with `307 Location: --location`.
- With --realm, every /v2/ request without an Authorization header gets
  `401 WWW-Authenticate: Bearer realm="--realm"`, so the client asks that URL for a token.
- With --tls-cert/--tls-key it speaks HTTPS.
- A raw TCP listener stands where the URLs point (write `{raw}` in them for its port): it
  counts connections and bytes, which must stay 0. /_admin/stats returns them as JSON.

Prints `127.0.0.1:PORT RAWPORT` on stdout once listening. Standard library only.
"""
import argparse
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
stats = {"raw_connections": 0, "raw_bytes": 0, "requests": 0}


def serve_raw(listener):
    while True:
        conn, _ = listener.accept()
        with lock:
            stats["raw_connections"] += 1
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def drain(conn):
    conn.settimeout(5)
    try:
        while True:
            data = conn.recv(4096)
            if not data:
                break
            with lock:
                stats["raw_bytes"] += len(data)
    except OSError:
        pass
    finally:
        conn.close()


def make_handler(args):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def reply(self, status, body=b"", headers=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self):
            if self.path.startswith("/_admin/stats"):
                with lock:
                    body = json.dumps(stats).encode()
                return self.reply(200, body, {"Content-Type": "application/json"})
            with lock:
                stats["requests"] += 1
            if args.realm and not self.headers.get("Authorization"):
                return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}',
                                  {"WWW-Authenticate": f'Bearer realm="{args.realm}",service="hostile"',
                                   "Content-Type": "application/json"})
            if self.path == "/v2/":
                return self.reply(200, b"{}", {"Content-Type": "application/json"})
            if "/blobs/" in self.path:
                return self.reply(307, b"", {"Location": args.location})
            return self.reply(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')

        do_GET = handle_any
        do_HEAD = handle_any

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--location", default="http://127.0.0.1:{raw}/")
    parser.add_argument("--realm")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()

    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(16)
    raw_port = raw.getsockname()[1]
    threading.Thread(target=serve_raw, args=(raw,), daemon=True).start()
    args.location = args.location.replace("{raw}", str(raw_port))
    if args.realm:
        args.realm = args.realm.replace("{raw}", str(raw_port))

    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args))
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"127.0.0.1:{server.server_address[1]} {raw_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
