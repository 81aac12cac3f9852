//! The fixtures of the root-free tier, made in Rust with no outside tool: the same two-layer
//! image written in every source format imgfs reads, with every layer compression and every
//! outer compression a format allows. Everything is deterministic (fixed mtimes, ids, gzip
//! headers and zstd levels), so the dumps can be compared with golden files.

use flate2::{write::GzEncoder, Compression};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Write;
use std::path::Path;

/// How layer blobs are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerComp {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd, one frame.
    Zstd,
}

impl LayerComp {
    pub fn name(self) -> &'static str {
        match self {
            LayerComp::None => "tar",
            LayerComp::Gzip => "gzip",
            LayerComp::Zstd => "zstd",
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            LayerComp::None => "application/vnd.oci.image.layer.v1.tar",
            LayerComp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            LayerComp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn apply(self, tar: &[u8]) -> Vec<u8> {
        match self {
            LayerComp::None => tar.to_vec(),
            LayerComp::Gzip => gzip(tar),
            LayerComp::Zstd => zstd::bulk::compress(tar, 3).expect("zstd"),
        }
    }
}

/// gzip with a fixed header (mtime 0), so the bytes are the same on every run.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(data))
}

/// The hex sha256 of `data`.
pub fn hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

const MTIME: u64 = 1_650_000_000;

/// One tar member.
enum M<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, (u64, u64), &'a [u8]),
    Link(&'a str, &'a str),
    Sym(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
    /// A file with PAX xattr records.
    XattrFile(&'a str, &'a [u8], &'a [(&'a str, &'a [u8])]),
}

fn tar_of(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64, ids: (u64, u64)| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(ids.0);
        h.set_gid(ids.1);
        h.set_mtime(MTIME);
        h
    };
    for m in members {
        match *m {
            M::Dir(p, mode) => {
                let mut h = header(tar::EntryType::Directory, mode, 0, (0, 0));
                b.append_data(&mut h, p, &[][..]).expect("tar");
            }
            M::File(p, mode, ids, data) => {
                let mut h = header(tar::EntryType::Regular, mode, data.len() as u64, ids);
                b.append_data(&mut h, p, data).expect("tar");
            }
            M::Link(p, target) => {
                let mut h = header(tar::EntryType::Link, 0o755, 0, (0, 0));
                b.append_link(&mut h, p, target).expect("tar");
            }
            M::Sym(p, target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0, (0, 0));
                b.append_link(&mut h, p, target).expect("tar");
            }
            M::Char(p, major, minor) => {
                let mut h = header(tar::EntryType::Char, 0o666, 0, (0, 0));
                h.set_device_major(major).expect("tar");
                h.set_device_minor(minor).expect("tar");
                b.append_data(&mut h, p, &[][..]).expect("tar");
            }
            M::Fifo(p) => {
                let mut h = header(tar::EntryType::Fifo, 0o644, 0, (0, 0));
                b.append_data(&mut h, p, &[][..]).expect("tar");
            }
            M::XattrFile(p, data, xattrs) => {
                let mut records = Vec::new();
                for (k, v) in xattrs {
                    let body = [b" SCHILY.xattr.".as_slice(), k.as_bytes(), b"=", v, b"\n"].concat();
                    // The length prefix counts itself.
                    let mut len = body.len() + 1;
                    while (len.to_string().len() + body.len()) != len {
                        len = len.to_string().len() + body.len();
                    }
                    records.extend_from_slice(len.to_string().as_bytes());
                    records.extend_from_slice(&body);
                }
                let mut h = header(tar::EntryType::XHeader, 0o644, records.len() as u64, (0, 0));
                b.append_data(&mut h, "PaxHeaders/x", &records[..]).expect("tar");
                let mut h = header(tar::EntryType::Regular, 0o640, data.len() as u64, (1000, 1000));
                b.append_data(&mut h, p, data).expect("tar");
            }
        }
    }
    b.into_inner().expect("tar")
}

/// 200 KiB of pseudo-random bytes: several gzip/zstd blocks, so reads start inside a stream.
fn big_file() -> Vec<u8> {
    let mut out = Vec::with_capacity(200 << 10);
    let mut i = 0u64;
    while out.len() < 200 << 10 {
        out.extend_from_slice(&Sha256::digest(i.to_le_bytes()));
        i += 1;
    }
    out
}

/// The two uncompressed layers: the lower one with every entry type, the upper one with a
/// whiteout, an opaque directory, a changed file and a file replaced by a directory.
pub fn layer_tars() -> [Vec<u8>; 2] {
    let big = big_file();
    let lower = tar_of(&[
        M::Dir("etc/", 0o755),
        M::File("etc/passwd", 0o644, (0, 0), b"root:x:0:0::/root:/bin/sh\n"),
        M::File("etc/shadow", 0o600, (0, 42), b"root:*:19000::::::\n"),
        M::Dir("usr/", 0o755),
        M::Dir("usr/bin/", 0o755),
        M::File("usr/bin/tool", 0o4755, (0, 0), &big),
        M::Link("usr/bin/tool2", "usr/bin/tool"),
        M::Sym("bin", "usr/bin"),
        M::Dir("var/", 0o755),
        M::Dir("var/cache/", 0o700),
        M::File("var/cache/old", 0o644, (0, 0), b"stale\n"),
        M::Dir("dev/", 0o755),
        M::Char("dev/null", 1, 3),
        M::Fifo("dev/pipe"),
        M::File("swap", 0o644, (0, 0), b"a file in the lower layer\n"),
        M::Dir("home/", 0o755),
        M::XattrFile(
            "home/notes.txt",
            b"notes\n",
            &[("user.comment", b"hi"), ("user.bin", b"\x00\xff")],
        ),
    ]);
    let upper = tar_of(&[
        M::Dir("etc/", 0o755),
        M::File("etc/.wh.shadow", 0o644, (0, 0), b""),
        M::File(
            "etc/passwd",
            0o644,
            (0, 0),
            b"root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        ),
        M::Dir("var/", 0o755),
        M::Dir("var/cache/", 0o755),
        M::File("var/cache/.wh..wh..opq", 0o644, (0, 0), b""),
        M::File("var/cache/new", 0o644, (0, 0), b"fresh\n"),
        M::Dir("swap/", 0o755),
        M::File("swap/inside", 0o644, (0, 0), b"now a directory\n"),
    ]);
    [lower, upper]
}

/// The image's config (diff_ids of the uncompressed layers) and its bytes.
fn config(tars: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = tars.iter().map(|t| digest(t)).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2022-04-15T05:20:00Z",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "lower"}, {"created_by": "upper"}]
    }))
    .expect("json")
}

/// The blobs of an OCI image: (manifest bytes, config bytes, layer blobs).
pub struct Oci {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
}

pub fn oci_image(comp: LayerComp) -> Oci {
    let tars = layer_tars();
    let config = config(&tars);
    let layers: Vec<Vec<u8>> = tars.iter().map(|t| comp.apply(t)).collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": comp.media_type(), "digest": digest(l), "size": l.len()})).collect::<Vec<Value>>()
    }))
    .expect("json");
    Oci {
        manifest,
        config,
        layers,
    }
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

fn write_blob(dir: &Path, data: &[u8]) {
    write(dir, &format!("blobs/sha256/{}", hex(data)), data);
}

/// An OCI image layout with the image under the ref `v1`.
pub fn oci_layout(dir: &Path, comp: LayerComp) {
    let img = oci_image(comp);
    write(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for b in [&img.manifest, &img.config].into_iter().chain(&img.layers) {
        write_blob(dir, b);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&img.manifest), "size": img.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"}
        }]
    });
    write(dir, "index.json", &serde_json::to_vec(&index).expect("json"));
}

/// Docker >= 25 / `ctr export`: an OCI layout (gzip layers) plus a manifest.json naming them.
pub fn docker25(dir: &Path) {
    oci_layout(dir, LayerComp::Gzip);
    let img = oci_image(LayerComp::Gzip);
    let manifest = json!([{
        "Config": format!("blobs/sha256/{}", hex(&img.config)),
        "RepoTags": ["example.com/app:1.0"],
        "Layers": img.layers.iter().map(|l| format!("blobs/sha256/{}", hex(l))).collect::<Vec<_>>()
    }]);
    write(dir, "manifest.json", &serde_json::to_vec(&manifest).expect("json"));
}

/// `docker save` of Docker <= 24 (skopeo's docker-archive writes the same): `<hex>.json`,
/// `<hex>.tar` layers, manifest.json with two tags.
pub fn docker_archive(dir: &Path) {
    let tars = layer_tars();
    let config = config(&tars);
    write(dir, &format!("{}.json", hex(&config)), &config);
    for t in &tars {
        write(dir, &format!("{}.tar", hex(t)), t);
    }
    let manifest = json!([{
        "Config": format!("{}.json", hex(&config)),
        "RepoTags": ["imgfs/test:v2", "imgfs/test:latest"],
        "Layers": tars.iter().map(|t| format!("{}.tar", hex(t))).collect::<Vec<_>>()
    }]);
    write(dir, "manifest.json", &serde_json::to_vec(&manifest).expect("json"));
}

/// Docker 20.10's legacy layout: `<id>/{VERSION,json,layer.tar}`, `<hex>.json`,
/// manifest.json and repositories.
pub fn docker_legacy(dir: &Path) {
    let tars = layer_tars();
    let config = config(&tars);
    write(dir, &format!("{}.json", hex(&config)), &config);
    let ids = ["1".repeat(64), "2".repeat(64)];
    for (i, t) in tars.iter().enumerate() {
        write(dir, &format!("{}/VERSION", ids[i]), b"1.0");
        let parent = if i == 0 { json!(null) } else { json!(ids[i - 1]) };
        let json = json!({"id": ids[i], "parent": parent, "created": "2022-04-15T05:20:00Z", "os": "linux"});
        write(
            dir,
            &format!("{}/json", ids[i]),
            &serde_json::to_vec(&json).expect("json"),
        );
        write(dir, &format!("{}/layer.tar", ids[i]), t);
    }
    let manifest = json!([{
        "Config": format!("{}.json", hex(&config)),
        "RepoTags": ["legacy:1"],
        "Layers": ids.iter().map(|id| format!("{id}/layer.tar")).collect::<Vec<_>>()
    }]);
    write(dir, "manifest.json", &serde_json::to_vec(&manifest).expect("json"));
    write(
        dir,
        "repositories",
        &serde_json::to_vec(&json!({"legacy": {"1": ids[1]}})).expect("json"),
    );
}

/// The v1 format alone: repositories and `<id>/{VERSION,json,layer.tar}`, no manifest.json.
pub fn v1(dir: &Path) {
    let tars = layer_tars();
    let ids = ["a".repeat(64), "b".repeat(64)];
    for (i, t) in tars.iter().enumerate() {
        write(dir, &format!("{}/VERSION", ids[i]), b"1.0");
        let parent = if i == 0 { json!(null) } else { json!(ids[i - 1]) };
        let json = json!({
            "id": ids[i], "parent": parent, "created": "2022-04-15T05:20:00Z",
            "os": "linux", "architecture": "amd64", "config": {"Cmd": ["/bin/sh"]}
        });
        write(
            dir,
            &format!("{}/json", ids[i]),
            &serde_json::to_vec(&json).expect("json"),
        );
        write(dir, &format!("{}/layer.tar", ids[i]), t);
    }
    write(
        dir,
        "repositories",
        &serde_json::to_vec(&json!({"old": {"v1": ids[1]}})).expect("json"),
    );
}

/// containers-image's `dir:` transport with the OCI manifest (gzip layers).
pub fn dir_transport(dir: &Path) {
    let img = oci_image(LayerComp::Gzip);
    write(dir, "version", b"Directory Transport Version: 1.1\n");
    write(dir, "manifest.json", &img.manifest);
    for b in [&img.config].into_iter().chain(&img.layers) {
        write(dir, &hex(b), b);
    }
}

/// A tar of everything under `dir` (sorted names, fixed metadata), as `tar -C dir -cf - .` would.
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files);
    files.sort();
    let mut b = tar::Builder::new(Vec::new());
    for rel in files {
        let data = fs::read(dir.join(&rel)).expect("read");
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(MTIME);
        b.append_data(&mut h, &rel, &data[..]).expect("tar");
    }
    b.into_inner().expect("tar")
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).expect("prefix").to_string_lossy().into_owned());
        }
    }
}
