#!/usr/bin/env python3
"""A hostile registry for the test suite: forwards to a real test registry (which serves a real
image) and misbehaves in one way, chosen with --mode:

- ignore-range: blob GETs with a Range header are answered 200 with the whole blob.
- wrong-content-range: 206 answers carry a Content-Range one byte off the one asked for.
- short-body: blob GETs with a Range header send half the body, then close the connection.
- stall: blob GETs with a Range header send half the body, then hold the connection open, silent.
- trickle: blob GETs with a Range header send the body at --trickle-rate bytes per second (2 KiB/s
  by default: above libcurl's low-speed limit of 1 KiB/s, so only a deadline on the whole transfer
  ends it).
- huge-manifest: a manifest GET by tag answers --manifest-size bytes of JSON, streamed.
- wrong-types: a manifest GET by tag answers the real manifest with "size" fields as strings.

Whole-blob GETs (config, frame index) are never touched by the range modes, so a mount succeeds
and its reads meet the misbehaviour. Prints 127.0.0.1:PORT on stdout once listening; /_admin/stats
returns counters as JSON. Standard library only.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-authenticate", "proxy-authorization", "te", "trailers", "upgrade"}


def make_handler(args, stats, lock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def bump(self, key):
            with lock:
                stats[key] = stats.get(key, 0) + 1

        def upstream(self, path, headers):
            conn = http.client.HTTPConnection(args.upstream, timeout=30)
            conn.request(self.command, path, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            return resp, data

        def send(self, status, headers, body, declared=None):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if declared is None else declared))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
                self.wfile.flush()

        def handle_any(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/_admin/stats":
                with lock:
                    return self.send(200, {"Content-Type": "application/json"}, json.dumps(stats).encode())
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            ranged = "Range" in self.headers
            is_blob = "/blobs/sha256:" in url.path
            is_tag_manifest = "/manifests/" in url.path and "/manifests/sha256:" not in url.path
            mode = args.mode
            if mode == "huge-manifest" and is_tag_manifest and self.command == "GET":
                self.bump("huge_manifests")
                return self.huge_manifest()
            if mode == "ignore-range" and is_blob and ranged:
                headers.pop("Range", None)
                self.bump("ranges_ignored")
            resp, data = self.upstream(self.path, headers)
            out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP and k.lower() != "content-length"}
            if mode == "wrong-types" and is_tag_manifest and self.command == "GET" and resp.status == 200:
                manifest = json.loads(data)
                manifest["config"]["size"] = str(manifest["config"]["size"])
                for layer in manifest["layers"]:
                    layer["size"] = str(layer["size"])
                # A registry that serves these bytes would name their digest, not the original's.
                out.pop("Docker-Content-Digest", None)
                self.bump("manifests_mistyped")
                return self.send(200, out, json.dumps(manifest).encode())
            if mode == "wrong-content-range" and is_blob and ranged and resp.status == 206:
                spec = out.get("Content-Range", "")
                try:
                    first, rest = spec[len("bytes "):].split("-", 1)
                    last, total = rest.split("/", 1)
                    out["Content-Range"] = f"bytes {int(first) + 1}-{int(last) + 1}/{total}"
                except ValueError:
                    pass
                self.bump("content_ranges_shifted")
                return self.send(206, out, data)
            if mode in ("short-body", "stall") and is_blob and ranged and self.command == "GET" and len(data) > 16:
                self.bump("short_bodies" if mode == "short-body" else "stalls")
                self.send_response(resp.status)
                for k, v in out.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                if mode == "stall":
                    time.sleep(args.stall_seconds)
                self.close_connection = True
                return
            if mode == "trickle" and is_blob and ranged and self.command == "GET" and resp.status in (200, 206):
                self.bump("trickles")
                return self.trickle(resp.status, out, data)
            return self.send(resp.status, out, data, declared=resp.getheader("Content-Length") if self.command == "HEAD" else None)

        def trickle(self, status, headers, body):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # Eight small writes a second: steady enough that no second falls under the rate.
            step = max(1, args.trickle_rate // 8)
            sent = 0
            try:
                while sent < len(body):
                    chunk = body[sent:sent + step]
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    sent += len(chunk)
                    with lock:
                        stats["trickled_bytes"] = stats.get("trickled_bytes", 0) + len(chunk)
                    time.sleep(0.125)
            except (BrokenPipeError, ConnectionResetError):
                with lock:
                    stats["trickles_abandoned"] = stats.get("trickles_abandoned", 0) + 1
            self.close_connection = True

        def huge_manifest(self):
            size = args.manifest_size
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            head = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":"'
            tail = b'"}}'
            chunk = b"A" * (1 << 20)
            sent = 0
            try:
                self.wfile.write(head)
                sent += len(head)
                while sent < size - len(tail):
                    n = min(len(chunk), size - len(tail) - sent)
                    self.wfile.write(chunk[:n])
                    sent += n
                self.wfile.write(tail)
                with lock:
                    stats["huge_manifest_bytes_sent"] = stats.get("huge_manifest_bytes_sent", 0) + sent + len(tail)
            except (BrokenPipeError, ConnectionResetError):
                with lock:
                    stats["huge_manifest_bytes_sent"] = stats.get("huge_manifest_bytes_sent", 0) + sent
            self.close_connection = True

        do_GET = do_HEAD = handle_any

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--mode", required=True, choices=["ignore-range", "wrong-content-range", "short-body", "stall", "trickle", "huge-manifest", "wrong-types"])
    p.add_argument("--manifest-size", type=int, default=100 * 1000 * 1000)
    p.add_argument("--stall-seconds", type=float, default=600)
    p.add_argument("--trickle-rate", type=int, default=2048)
    args = p.parse_args()
    stats, lock = {}, threading.Lock()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, stats, lock))
    server.daemon_threads = True
    print(f"127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
