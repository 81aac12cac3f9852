#!/usr/bin/env python3
"""Replaces one index blob of a published imgfs index with a damaged one that is correctly
digested, as a producer with a bug (or a hostile pusher) would publish it.

    tamper_index.py --registry 127.0.0.1:PORT --repo NAME --subject sha256:... --mode crc|format

Reads the referrers tag (sha256-<hex>) of SUBJECT on a plain-HTTP registry without auth, takes
the imgfs index artifact it lists, damages the largest index blob:
  crc     one byte of the payload flipped (the envelope's CRC-32 no longer matches);
  format  the index format version changed to 1 and the CRC-32 fixed (a valid cache file of
          another format);
uploads it (POST, then PUT with its digest), pushes the artifact manifest naming it, and writes
the referrers tag with the new manifest in place of the old one. Prints the digest of the layer
whose index was damaged.
"""
import argparse
import hashlib
import http.client
import json
import struct
import zlib

ARTIFACT = "application/vnd.imgfs.index.v1"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HEADER = 8 + 4 + 8 + 4


def request(host, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise SystemExit(f"{method} {path}: HTTP {resp.status}: {data[:200]!r}")
    return resp, data


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--registry", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--mode", choices=["crc", "format"], required=True)
    a = p.parse_args()
    host, repo = a.registry, a.repo
    tag = a.subject.replace(":", "-")
    _, data = request(host, "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_INDEX})
    index = json.loads(data)
    entry = next(m for m in index["manifests"] if m.get("artifactType") == ARTIFACT)
    _, data = request(host, "GET", f"/v2/{repo}/manifests/{entry['digest']}", headers={"Accept": OCI_MANIFEST})
    manifest = json.loads(data)
    layer = max(manifest["layers"], key=lambda l: l["size"])
    _, blob = request(host, "GET", f"/v2/{repo}/blobs/{layer['digest']}")
    blob = bytearray(blob)
    if a.mode == "crc":
        blob[HEADER + len(blob[HEADER:]) // 2] ^= 0x40
    else:
        blob[HEADER:HEADER + 4] = struct.pack("<I", 1)
        blob[20:24] = struct.pack("<I", zlib.crc32(bytes(blob[HEADER:])))
    blob = bytes(blob)
    resp, _ = request(host, "POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    location = resp.getheader("Location")
    sep = "&" if "?" in location else "?"
    path = location.split(host, 1)[-1] if location.startswith("http") else location
    request(host, "PUT", f"{path}{sep}digest={digest(blob)}", body=blob,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))})
    layer["digest"], layer["size"] = digest(blob), len(blob)
    body = json.dumps(manifest).encode()
    request(host, "PUT", f"/v2/{repo}/manifests/{digest(body)}", body=body, headers={"Content-Type": OCI_MANIFEST})
    entry["digest"], entry["size"] = digest(body), len(body)
    body = json.dumps(index).encode()
    request(host, "PUT", f"/v2/{repo}/manifests/{tag}", body=body, headers={"Content-Type": OCI_INDEX})
    print(layer["annotations"]["vnd.imgfs.layer.digest"])


if __name__ == "__main__":
    main()
