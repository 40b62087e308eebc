#!/usr/bin/env python3
"""A reverse proxy in front of a real test registry, for what the registry itself cannot do.

- --bearer: demands `Authorization: Bearer <token>` with tokens it issues at /token
  (optionally only to --user/--password), which expire after --token-ttl seconds; the
  real token server of a registry deployment is not available offline.
- faults: /_admin/fault?status=503&count=2&retry_after=1 makes the next `count` /v2/
  requests fail with that status.
- redirects: /_admin/redirect?on=1 answers blob GETs with 307 to http://localhost:PORT/_blobstore/...
  (another origin than 127.0.0.1:PORT), which records whether an Authorization header came along.
- corruption: --corrupt-once flips one bit in the body of the first GET of every blob and
  manifest-by-digest (per path and Range), so every object a client fetches arrives damaged once;
  --corrupt-rate R flips one bit in a fraction R of those responses, at random. Counted in stats.
- mirror misbehaviour: /_admin/mirror?whole_blob=1 drops the Range header of blob GETs (answers
  200 with the whole blob, as a pull-through cache does while it has not got the blob);
  /_admin/mirror?corrupt=1 flips the first byte of every blob GET body; corrupt_manifests=1 adds a
  byte to every manifest GET body (still JSON, another digest).
- /_admin/revoke forgets every issued token; /_admin/stats returns counters as JSON.
- --log FILE: one line per request: METHOD PATH STATUS RANGE.

Prints 127.0.0.1:PORT on stdout once listening. Standard library only.
"""
import argparse
import base64
import random
import http.client
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-authenticate", "proxy-authorization", "te", "trailers", "upgrade"}


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.tokens = {}  # token -> expiry (monotonic)
        self.faults = []  # [(status, retry_after)]
        self.redirect = False
        self.whole_blob = False
        self.corrupt = False
        self.corrupt_manifests = False
        self.stats = {"requests": 0, "tokens_issued": 0, "token_denied": 0, "faults_served": 0,
                      "unauthorized": 0, "blobstore_requests": 0, "blobstore_auth_headers": 0,
                      "whole_blob_answers": 0, "corrupted": 0, "blob_gets": 0}
        self.corrupted_keys = set()
        self.port = 0

    def bump(self, key, n=1):
        with self.lock:
            self.stats[key] += n


def make_handler(state):
    args = state.args

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def reply(self, status, body=b"", headers=None, head=False):
            self.send_response(status)
            headers = dict(headers or {})
            if "Content-Length" not in headers:
                headers["Content-Length"] = str(len(body))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if body and not head:
                self.wfile.write(body)
            if args.log:
                with state.lock, open(args.log, "a") as f:
                    f.write(f"{self.command} {self.path} {status} {self.headers.get('Range', '-')}\n")

        def json_reply(self, status, obj, headers=None):
            h = {"Content-Type": "application/json"}
            h.update(headers or {})
            self.reply(status, json.dumps(obj).encode(), h)

        def read_body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def handle_any(self):
            state.bump("requests")
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            body = self.read_body()
            if url.path.startswith("/_admin/"):
                return self.admin(url.path[len("/_admin/"):], query)
            if url.path == "/token":
                return self.token(query)
            if url.path.startswith("/_blobstore/"):
                state.bump("blobstore_requests")
                if self.headers.get("Authorization"):
                    state.bump("blobstore_auth_headers")
                return self.forward(url.path[len("/_blobstore"):] + ("?" + url.query if url.query else ""), body, strip_auth=True)
            with state.lock:
                fault = state.faults.pop(0) if state.faults else None
            if fault:
                state.bump("faults_served")
                status, retry_after = fault
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                return self.json_reply(status, {"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}, headers)
            if args.bearer and not self.bearer_ok():
                state.bump("unauthorized")
                parts = url.path.split("/")
                repo = "/".join(parts[2:-2]) if len(parts) > 4 else ""
                challenge = f'Bearer realm="http://127.0.0.1:{state.port}/token",service="imgfs-test"'
                if repo:
                    challenge += f',scope="repository:{repo}:pull"'
                return self.json_reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                                       {"WWW-Authenticate": challenge})
            if state.redirect and self.command == "GET" and "/blobs/sha256:" in url.path:
                location = f"http://localhost:{state.port}/_blobstore{self.path}"
                return self.reply(307, b"", {"Location": location})
            return self.forward(self.path, body, strip_auth=True)

        def bearer_ok(self):
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                return False
            with state.lock:
                expiry = state.tokens.get(auth[7:])
            return expiry is not None and time.monotonic() < expiry

        def token(self, query):
            if args.user is not None:
                auth = self.headers.get("Authorization", "")
                ok = False
                if auth.startswith("Basic "):
                    try:
                        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                        ok = user == args.user and password == args.password
                    except Exception:
                        ok = False
                if not ok:
                    state.bump("token_denied")
                    return self.json_reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]},
                                           {"WWW-Authenticate": 'Basic realm="imgfs-test-token"'})
            token = secrets.token_hex(16)
            with state.lock:
                state.tokens[token] = time.monotonic() + args.token_ttl
                state.stats["tokens_issued"] += 1
            key = "access_token" if args.access_token else "token"
            return self.json_reply(200, {key: token, "expires_in": args.token_ttl})

        def admin(self, what, query):
            if what == "fault":
                status = int(query.get("status", ["503"])[0])
                count = int(query.get("count", ["1"])[0])
                retry_after = query.get("retry_after", [None])[0]
                with state.lock:
                    state.faults = [(status, retry_after)] * count
                return self.json_reply(200, {})
            if what == "redirect":
                state.redirect = query.get("on", ["1"])[0] == "1"
                return self.json_reply(200, {})
            if what == "mirror":
                state.whole_blob = query.get("whole_blob", ["0"])[0] == "1"
                state.corrupt = query.get("corrupt", ["0"])[0] == "1"
                state.corrupt_manifests = query.get("corrupt_manifests", ["0"])[0] == "1"
                return self.json_reply(200, {})
            if what == "revoke":
                with state.lock:
                    state.tokens.clear()
                return self.json_reply(200, {})
            if what == "stats":
                with state.lock:
                    return self.json_reply(200, dict(state.stats))
            return self.json_reply(404, {})

        def forward(self, path, body, strip_auth):
            conn = http.client.HTTPConnection(args.upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and not (strip_auth and k.lower() == "authorization")}
            blob_get = self.command == "GET" and "/blobs/sha256:" in path
            if blob_get:
                state.bump("blob_gets")
            if blob_get and state.whole_blob:
                if any(k.lower() == "range" for k in headers):
                    state.bump("whole_blob_answers")
                headers = {k: v for k, v in headers.items() if k.lower() != "range"}
            try:
                conn.request(self.command, path, body=body if body or self.command in ("PUT", "POST", "PATCH") else None, headers=headers)
                resp = conn.getresponse()
                data = self.maybe_corrupt(path, resp.status, resp.read())
                manifest_get = self.command == "GET" and "/manifests/" in path
                if manifest_get and state.corrupt_manifests and data and resp.status == 200:
                    data = data + b" "
                    state.bump("corrupted")
                if blob_get and state.corrupt and data and resp.status in (200, 206):
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                    state.bump("corrupted")
                out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP and k.lower() != "content-length"}
                if self.command == "HEAD":
                    out["Content-Length"] = resp.getheader("Content-Length", "0")
                else:
                    out["Content-Length"] = str(len(data))
                self.reply(resp.status, data, out, head=self.command == "HEAD")
            finally:
                conn.close()

        def maybe_corrupt(self, path, status, data):
            if self.command != "GET" or status not in (200, 206) or not data:
                return data
            if "/blobs/sha256:" not in path and "/manifests/sha256:" not in path:
                return data
            corrupt = False
            with state.lock:
                if args.corrupt_once:
                    key = (path, self.headers.get("Range", ""))
                    if key not in state.corrupted_keys:
                        state.corrupted_keys.add(key)
                        corrupt = True
                if not corrupt and args.corrupt_rate > 0 and random.random() < args.corrupt_rate:
                    corrupt = True
                if corrupt:
                    state.stats["corrupted"] += 1
            if not corrupt:
                return data
            damaged = bytearray(data)
            damaged[random.randrange(len(damaged))] ^= 1 << random.randrange(8)
            return bytes(damaged)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--bearer", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--token-ttl", type=int, default=300)
    p.add_argument("--access-token", action="store_true", help="answer with access_token instead of token")
    p.add_argument("--log")
    p.add_argument("--corrupt-once", action="store_true", help="damage the first GET of every blob/manifest-by-digest range")
    p.add_argument("--corrupt-rate", type=float, default=0.0, help="damage this fraction of blob/manifest-by-digest GETs")
    args = p.parse_args()
    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    print(f"127.0.0.1:{state.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
