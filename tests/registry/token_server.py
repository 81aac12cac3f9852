#!/usr/bin/env python3
"""A token server for Distribution's `auth: token:` in the imgfs registry tests.

    token_server.py --port-file F --key KEY.pem --cert CERT.pem --issuer I --service S
                    [--user USER:PASS] [--ttl SECONDS]

Issues RS256 JWTs (signed with the openssl CLI, so no Python crypto module is needed) whose
header names the signing key by its libtrust key ID, which is how Distribution finds the key in
its `rootcertbundle`. GET /token?service=S&scope=repository:NAME:pull with the right Basic
credentials (or anonymous when no --user is given) answers {"token", "expires_in"}; wrong
credentials answer 401. Every request is appended to the log as one line: method, path, whether
an Authorization header came (never its value). Binds 127.0.0.1 on a free port and writes the
port to --port-file once listening.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(cert_path: str) -> str:
    pub = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class Issuer:
    def __init__(self, args):
        self.args = args
        self.kid = libtrust_key_id(args.cert)
        self.count = 0
        self.lock = threading.Lock()

    def token(self, subject: str, scopes: list) -> str:
        now = int(time.time())
        with self.lock:
            self.count += 1
            jti = f"imgfs-{os.getpid()}-{self.count}"
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) == 3 and parts[0] == "repository":
                access.append({"type": "repository", "name": parts[1],
                               "actions": parts[2].split(",")})
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {"iss": self.args.issuer, "sub": subject, "aud": self.args.service,
                  "exp": now + self.args.ttl, "nbf": now - 5, "iat": now, "jti": jti,
                  "access": access}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.args.key],
                             input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{b64url(sig)}"


def make_handler(issuer: Issuer, log):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            pass

        def do_GET(self):
            from urllib.parse import urlparse, parse_qs
            url = urlparse(self.path)
            authz = self.headers.get("Authorization")
            log.write(f"GET {url.path} auth={'yes' if authz else 'no'}\n")
            log.flush()
            if url.path != "/token":
                return self.reply(404, {"error": "not found"})
            subject = "anonymous"
            if issuer.args.user:
                want = "Basic " + base64.b64encode(issuer.args.user.encode()).decode()
                if authz != want:
                    return self.reply(401, {"details": "incorrect username or password"})
                subject = issuer.args.user.split(":", 1)[0]
            q = parse_qs(url.query)
            token = issuer.token(subject, q.get("scope", []))
            self.reply(200, {"token": token, "access_token": token,
                             "expires_in": issuer.args.ttl,
                             "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--user")
    p.add_argument("--ttl", type=int, default=300)
    p.add_argument("--log", default="/dev/null")
    args = p.parse_args()
    issuer = Issuer(args)
    log = open(args.log, "a")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(issuer, log))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
