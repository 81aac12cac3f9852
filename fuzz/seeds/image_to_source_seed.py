#!/usr/bin/env python3
"""Turns an image tar (docker save, oci-archive, ...) into a seed of the `source` fuzz target.

    image_to_source_seed.py IMAGE.tar OUTDIR

Writes OUTDIR/<sha1> in the target's text format (see fuzz/fuzz_targets/source.rs): a transport
line, then "--- NAME" + content per member. Members larger than 16 KiB (layers) are replaced by
a tiny tar; blobs are renamed to `@N` placeholders and their digests and sizes in the other
members to `@N` / `#N`, so the seed stays a valid image and mutations keep digests right.
Members are ordered so that every document comes before the blobs it names (placeholders only
refer to later members). Does nothing for archives that do not fit (over 10 blobs, too large).
"""
import hashlib
import io
import os
import re
import sys
import tarfile

BIG = 16 << 10
MAX_SEED = 120 << 10


def tiny_layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        data = b"hello\n"
        info = tarfile.TarInfo("etc/hello")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main(src, out):
    try:
        tf = tarfile.open(src)
    except (tarfile.TarError, OSError):
        return
    members = []  # [name, content or None, kind, link]
    with tf:
        for m in tf:
            if m.isfile() and m.size > BIG:
                members.append([m.name, None, "f", None])  # read lazily below, if small enough
            elif m.isfile():
                members.append([m.name, tf.extractfile(m).read(), "f", None])
            elif m.isdir():
                members.append([m.name.rstrip("/") + "/", b"", "d", None])
            elif m.issym():
                members.append([m.name, b"", "l", m.linkname])
            elif m.islnk():
                members.append([m.name, b"", "h", m.linkname])
    originals = {}
    for m in members:
        if m[2] != "f":
            continue
        if m[1] is None:
            # A layer: hashed in pieces (sparse members can be gigabytes), then replaced.
            h, n = hashlib.sha256(), 0
            with tarfile.open(src) as again:
                f = again.extractfile(m[0])
                if f is None or again.getmember(m[0]).size > (64 << 20):
                    return
                for piece in iter(lambda: f.read(1 << 20), b""):
                    h.update(piece)
                    n += len(piece)
            originals[id(m)] = (h.hexdigest(), n)
            m[1] = tiny_layer()
        else:
            originals[id(m)] = (hashlib.sha256(m[1]).hexdigest(), len(m[1]))
    files = [m for m in members if m[2] == "f"]
    # Referrers first: a member goes before every member whose original digest it contains.
    order = []
    pending = list(files)
    while pending:
        for m in pending:
            named_by_pending = any(
                o is not m and originals[id(m)][0].encode() in o[1] for o in pending
            )
            if not named_by_pending:
                order.append(m)
                pending.remove(m)
                break
        else:
            order.extend(pending)  # a cycle: keep the rest as it is
            break
    order.reverse()  # the loop picked leaves first
    blobs = [m for m in order if originals[id(m)][0].encode() in b"".join(o[1] for o in files if o is not m)
             or originals[id(m)][0] in m[0]]
    if len(blobs) > 10:
        return
    slot = {id(m): i for i, m in enumerate(blobs)}
    rest = [m for m in order if id(m) not in slot]
    # Documents that name blobs first, then the blobs (in referrer order), then the rest.
    head = [m for m in rest if any(originals[id(b)][0].encode() in m[1] for b in blobs)]
    tail = [m for m in rest if m not in head]
    final = head + blobs + tail
    index = {id(m): i for i, m in enumerate(final)}
    if len(final) > 10 + len(tail):
        return
    for m in final:
        for b in blobs:
            if b is m or index[id(b)] > 9:
                continue
            hexd, size = originals[id(b)]
            n = index[id(b)]
            if n <= index[id(m)]:
                continue
            if hexd.encode() in m[1]:
                m[1] = m[1].replace(hexd.encode(), b"@%d" % n)
                m[1] = re.sub(rb'("size"\s*:\s*)%d\b' % size, rb"\g<1>#%d" % n, m[1])
    for m in final:
        hexd, _ = originals[id(m)]
        if hexd in m[0] and index[id(m)] <= 9:
            m[0] = m[0].replace(hexd, "@%d" % index[id(m)])
    others = [m for m in members if m[2] != "f"]
    names = {m[0].lstrip("./") for m in members}
    if "index.json" in names or "oci-layout" in names:
        transport = "oci-archive"
    elif "manifest.json" in names or "repositories" in names:
        transport = "docker-archive"
    else:
        transport = "auto"
    parts = [transport.encode()]
    for m in others[:4] + final:
        name = m[0]
        if m[2] == "l":
            name = f"{name} -> {m[3]}"
        elif m[2] == "h":
            name = f"{name} => {m[3]}"
        parts.append(b"--- " + name.encode() + b"\n" + m[1])
    seed = b"\n".join(parts)
    if len(seed) > MAX_SEED:
        return
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, hashlib.sha1(seed).hexdigest()), "wb") as f:
        f.write(seed)


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except (tarfile.TarError, OSError, KeyError, UnicodeError, ValueError):
        pass  # not an archive this seeding can use
