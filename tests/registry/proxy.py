#!/usr/bin/env python3
"""A faulty HTTP proxy in front of a registry, for the imgfs registry fault tests.

    proxy.py --upstream http://127.0.0.1:PORT --port-file F [--log FILE]
             [--corrupt DIGEST] [--replace DIGEST=FILE] [--redirect] [--fail-first N]
             [--cut-after BYTES]

Forwards every request (method, path, query, Range/Accept/Authorization headers) to the
upstream registry and relays the answer, streaming the body, with these faults:
  --corrupt DIGEST   blob GETs of DIGEST get their first body byte flipped (right size, wrong
                     bytes), in full and in ranged answers that start at byte 0;
  --replace D=FILE   blob GETs of D get the bytes of FILE (same length) in place of the
                     registry's, in full and in ranged answers (a registry or cache that serves
                     another copy of the blob: one flipped byte, or another valid tar);
  --redirect         blob GETs answer 307 to /storage/<digest>?X-Token=sekrit-query-token,
                     served here from upstream (like redirects to S3 with presigned URLs);
  --fail-first N     the first N blob GETs answer 503;
  --cut-after BYTES  each blob GET body stops after BYTES bytes and the connection closes
                     (the client must resume with Range);
  --slow BYTES_PER_S blob GET bodies are sent at about BYTES_PER_S (a slow registry).
Each request is logged as one line "METHOD PATH STATUS" (query strings and headers are left
out). Binds 127.0.0.1 on a free port and writes the port to --port-file once listening.
"""
import argparse
import http.client
import http.server
import os
import re
import sys
import threading
import time
from urllib.parse import urlparse

BLOB_RE = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
STORAGE_RE = re.compile(r"^/storage/(.+)/(sha256:[0-9a-f]{64})$")
FORWARDED = ("Range", "Accept", "Authorization", "User-Agent")
RELAYED = ("Content-Type", "Content-Range", "Docker-Content-Digest", "Accept-Ranges",
           "Www-Authenticate", "Docker-Distribution-Api-Version", "Location")


class State:
    def __init__(self, args):
        self.args = args
        self.failures_left = args.fail_first
        self.lock = threading.Lock()
        self.log = open(args.log, "a") if args.log else None

    def note(self, line):
        if self.log:
            with self.lock:
                self.log.write(line + "\n")
                self.log.flush()

    def take_failure(self):
        with self.lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                return True
            return False


def make_handler(state: State):
    up = urlparse(state.args.upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def do_HEAD(self):
            self.handle_any("HEAD")

        def do_GET(self):
            self.handle_any("GET")

        def handle_any(self, method):
            path = self.path.split("?", 1)[0]
            blob = BLOB_RE.match(path)
            storage = STORAGE_RE.match(path)
            if blob and method == "GET" and state.take_failure():
                return self.simple(method, path, 503, b'{"errors":[{"code":"UNAVAILABLE"}]}')
            if blob and method == "GET" and state.args.redirect:
                location = f"/storage/{blob.group(1)}/{blob.group(2)}?X-Token=sekrit-query-token"
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                state.note(f"{method} {path} 307")
                return
            upstream_path = self.path
            digest = blob.group(2) if blob else None
            if storage:
                upstream_path = f"/v2/{storage.group(1)}/blobs/{storage.group(2)}"
                digest = storage.group(2)
            self.forward(method, path, upstream_path, digest)

        def simple(self, method, path, code, body):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            state.note(f"{method} {path} {code}")

        def forward(self, method, path, upstream_path, digest):
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            headers = {k: self.headers[k] for k in FORWARDED if self.headers.get(k)}
            conn.request(method, upstream_path, headers=headers)
            resp = conn.getresponse()
            self.send_response(resp.status)
            for k in RELAYED:
                v = resp.getheader(k)
                if v:
                    self.send_header(k, v)
            length = resp.getheader("Content-Length")
            cut = state.args.cut_after if digest and method == "GET" else None
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            state.note(f"{method} {path} {resp.status}")
            if method == "HEAD":
                conn.close()
                return
            corrupt = (digest is not None and digest == state.args.corrupt
                       and resp.status in (200, 206)
                       and (resp.status == 200 or
                            (resp.getheader("Content-Range") or "").startswith("bytes 0-")))
            replace = None
            if digest is not None and resp.status in (200, 206):
                for spec in state.args.replace:
                    d, _, path = spec.partition("=")
                    if d == digest:
                        replace = open(path, "rb")
                        m = re.match(r"bytes (\d+)-", resp.getheader("Content-Range") or "")
                        replace.seek(int(m.group(1)) if m else 0)
            sent = 0
            first = True
            while True:
                chunk = resp.read(65536)
                if not chunk:
                    break
                if replace is not None:
                    chunk = replace.read(len(chunk))
                if first and corrupt:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                first = False
                if cut is not None and sent + len(chunk) > cut:
                    chunk = chunk[: max(0, cut - sent)]
                    try:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    except OSError:
                        pass
                    self.close_connection = True
                    conn.close()
                    return
                if state.args.slow and digest is not None:
                    # 16 KiB pieces, paced: the client sees steady progress.
                    for i in range(0, len(chunk), 16384):
                        piece = chunk[i:i + 16384]
                        try:
                            self.wfile.write(piece)
                            self.wfile.flush()
                        except OSError:
                            conn.close()
                            return
                        time.sleep(len(piece) / state.args.slow)
                    sent += len(chunk)
                    continue
                try:
                    self.wfile.write(chunk)
                except OSError:
                    break
                sent += len(chunk)
            conn.close()

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log")
    p.add_argument("--corrupt")
    p.add_argument("--replace", action="append", default=[])
    p.add_argument("--redirect", action="store_true")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--cut-after", type=int)
    p.add_argument("--slow", type=int)
    args = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(State(args)))
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
