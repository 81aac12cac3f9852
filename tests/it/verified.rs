//! Issue 21: a warm cache never serves unverified bytes. For an uncompressed, a gzip and a zstd
//! layer, in a docker-archive, an OCI layout and a registry:
//! - the genuine image mounts and reads back exactly (and fills the cache);
//! - with that cache warm, a copy of the source whose layer has one flipped byte, and one whose
//!   layer is another valid tar of the same length, serve every read that does not depend on
//!   the changed bytes and fail every read that does with EIO, never a wrong byte, and the log
//!   names the layer; `blobs/` reads of the layer fail exactly for the changed chunks;
//! - a damaged cache file is rebuilt (the genuine source then reads back exactly; a changed
//!   source then fails its layer), and for a registry a damaged downloaded blob behaves like a
//!   changed source.
//!
//! The layers are a few MiB of random (incompressible) data, so that a compressed offset is
//! close to the uncompressed one and a change lands where the test aims it; every file spans
//! several 64 KiB verification chunks.

use crate::registry::{Proxy, Registry, Setup};
use crate::util::{require, tempdir, Mount};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const EIO: i32 = 5;
const FILE_BYTES: usize = 512 << 10;
const FILES: usize = 8;
/// A file at the start of every layer, the same in the genuine and the replacement tar.
const COMMON_BYTES: usize = 1536 << 10;
/// Verification chunk (`blob::verified::CHUNK_SIZE`).
const CHUNK: u64 = 64 << 10;
/// How far a compressed read may reach past the bytes it returns: the decompressed chunk it
/// fills (256 KiB), the decoder's input buffer (64 KiB) and a verification chunk, rounded up.
const AHEAD: u64 = 512 << 10;
/// Length of the file name in the gzip header of test layers (room to make a replacement the
/// same length).
const GZIP_NAME: usize = 64;
/// gzip access points are ~1 MiB of output apart (layer::GZIP_SPACING), plus slack.
const GZIP_RESTART: u64 = (1 << 20) + (256 << 10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Tar,
    Gzip,
    Zstd,
}

impl Kind {
    fn media_type(self) -> &'static str {
        match self {
            Kind::Tar => "application/vnd.oci.image.layer.v1.tar",
            Kind::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Kind::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn compress(self, tar: &[u8]) -> Vec<u8> {
        self.compress_named(tar, GZIP_NAME)
    }

    /// `tar` compressed to exactly `len` bytes (the gzip header's file name takes up the
    /// difference), for a replacement of the same length.
    fn compress_to(self, tar: &[u8], len: usize) -> Vec<u8> {
        let first = self.compress(tar);
        match self {
            Kind::Gzip => {
                let name = (GZIP_NAME + len).checked_sub(first.len()).expect("a name length");
                self.compress_named(tar, name)
            }
            _ => first,
        }
    }

    fn compress_named(self, tar: &[u8], name_len: usize) -> Vec<u8> {
        match self {
            Kind::Tar => tar.to_vec(),
            Kind::Gzip => {
                let mut e = flate2::GzBuilder::new()
                    .filename(vec![b'n'; name_len])
                    .write(Vec::new(), flate2::Compression::default());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            // One frame, as skopeo writes zstd layers.
            Kind::Zstd => zstd::encode_all(tar, 3).unwrap(),
        }
    }

    /// The uncompressed stream of `blob` as far as it decodes.
    fn decompress(self, blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        let mut r: Box<dyn Read> = match self {
            Kind::Tar => return blob.to_vec(),
            Kind::Gzip => Box::new(flate2::read::GzDecoder::new(blob)),
            Kind::Zstd => Box::new(zstd::stream::read::Decoder::new(blob).unwrap()),
        };
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A layer: the tar, and each file with its data offset in it.
struct Layer {
    tar: Vec<u8>,
    files: Vec<(String, u64, Vec<u8>)>,
}

/// `common.bin`, then FILES files of random bytes drawn from `seed`: two seeds give tars of the
/// same length and layout that differ from the second file on.
fn layer(seed: u64) -> Layer {
    let mut contents = vec![("common.bin".to_owned(), random(1, COMMON_BYTES))];
    for i in 0..FILES {
        contents.push((format!("data/f{i}.bin"), random(seed * 100 + i as u64, FILE_BYTES)));
    }
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in &contents {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut files = Vec::new();
    let mut a = tar::Archive::new(tar.as_slice());
    for (e, (name, data)) in a.entries().unwrap().zip(contents) {
        let e = e.unwrap();
        assert_eq!(e.path().unwrap().to_str().unwrap(), name);
        files.push((name, e.raw_file_position(), data));
    }
    Layer { tar, files }
}

fn sha256_hex(b: &[u8]) -> String {
    crate::util::sha256_bytes(b)
}

/// An image of one layer, written as an OCI layout and as a docker-archive.
struct Image {
    kind: Kind,
    blob: Vec<u8>,
    diff_id: String,
    config: Vec<u8>,
}

impl Image {
    fn new(kind: Kind, l: &Layer) -> Image {
        let blob = kind.compress(&l.tar);
        let diff_id = format!("sha256:{}", sha256_hex(&l.tar));
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .unwrap();
        Image {
            kind,
            blob,
            diff_id,
            config,
        }
    }

    fn digest(&self) -> String {
        sha256_hex(&self.blob)
    }

    /// The same image with other layer bytes under the same names (a changed copy).
    fn with_blob(&self, blob: Vec<u8>) -> Image {
        Image {
            kind: self.kind,
            blob,
            diff_id: self.diff_id.clone(),
            config: self.config.clone(),
        }
    }

    /// An OCI layout in `dir`, tagged `v1`; `layer_digest` names the blob (the genuine one's
    /// for a changed copy).
    fn write_oci(&self, dir: &Path, layer_digest: &str) -> Vec<u8> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        fs::write(blobs.join(layer_digest), &self.blob).unwrap();
        let config_hex = sha256_hex(&self.config);
        fs::write(blobs.join(&config_hex), &self.config).unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_hex}"), "size": self.config.len()},
            "layers": [{"mediaType": self.kind.media_type(),
                        "digest": format!("sha256:{layer_digest}"), "size": self.blob.len()}],
        }))
        .unwrap();
        let manifest_hex = sha256_hex(&manifest);
        fs::write(blobs.join(&manifest_hex), &manifest).unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("sha256:{manifest_hex}"), "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
        });
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        manifest
    }

    /// A `docker save` archive: an uncompressed layer at `<id>/layer.tar` (its digest is the
    /// config's diff_id, taken without reading it), a compressed one at `blobs/sha256/<hex>`
    /// (its digest is its name), as Docker writes them.
    fn write_docker(&self, path: &Path, layer_digest: &str) {
        let layer_path = match self.kind {
            Kind::Tar => format!("{}/layer.tar", &layer_digest[..12]),
            _ => format!("blobs/sha256/{layer_digest}"),
        };
        let config_path = format!("{}.json", sha256_hex(&self.config));
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_path, "RepoTags": ["verified:v1"], "Layers": [layer_path],
        }]))
        .unwrap();
        let mut b = tar::Builder::new(fs::File::create(path).unwrap());
        for (name, data) in [
            ("manifest.json", &manifest),
            (config_path.as_str(), &self.config),
            (layer_path.as_str(), &self.blob),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap().sync_all().unwrap();
    }
}

/// Where a changed copy differs from the genuine layer, in the uncompressed stream: bytes
/// `[from, differs_to)` are known to differ, bytes up to `to` may decode differently.
#[derive(Clone, Copy, Debug)]
struct Change {
    from: u64,
    differs_to: u64,
    to: u64,
}

/// One byte of `blob` flipped near uncompressed offset `at`; returns the blob and where its
/// stream first differs (or stops decoding).
fn flip(kind: Kind, genuine: &Layer, blob: &[u8], at: u64) -> (Vec<u8>, Change) {
    let mut bad = blob.to_vec();
    let pos = (at as usize).min(bad.len() - 1);
    bad[pos] ^= 0x40;
    let out = kind.decompress(&bad);
    let from = out
        .iter()
        .zip(&genuine.tar)
        .position(|(a, b)| a != b)
        .unwrap_or(out.len()) as u64;
    let to = match kind {
        Kind::Tar => from + 1,
        // Everything after a damaged compressed byte may be garbage.
        _ => genuine.tar.len() as u64,
    };
    (
        bad,
        Change {
            from,
            differs_to: from + 1,
            to,
        },
    )
}

/// What a read of `[a, b)` of the uncompressed stream must do when `change` is there: true =
/// return the true bytes, false = fail with EIO, None = either (it may depend on the change
/// through its decoder's restart point).
fn expect(kind: Kind, change: Change, a: u64, b: u64, differs: bool) -> Option<bool> {
    if differs {
        return Some(false);
    }
    let clear = match kind {
        Kind::Tar => {
            let (lo, hi) = (a / CHUNK * CHUNK, b.div_ceil(CHUNK) * CHUNK);
            hi <= change.from / CHUNK * CHUNK || lo >= change.to.div_ceil(CHUNK) * CHUNK
        }
        Kind::Gzip => b + AHEAD <= change.from || a >= change.to + GZIP_RESTART,
        // One frame: everything after the change decodes through it.
        Kind::Zstd => b + AHEAD <= change.from,
    };
    clear.then_some(true)
}

/// Reads every file whole, and 4 KiB at its start, middle and end, and checks each read
/// against `expect`; returns how many reads failed.
fn check_reads(root: &Path, genuine: &Layer, kind: Kind, change: Option<Change>, what: &str) -> usize {
    let mut failed = 0;
    let mut problems = Vec::new();
    for (name, off, data) in &genuine.files {
        let path = root.join(name);
        let len = data.len() as u64;
        let mut reads: Vec<(u64, u64)> = vec![(0, len)];
        for at in [0, len / 2, len - 4096] {
            reads.push((at, at + 4096));
        }
        for (a, b) in reads {
            let (ua, ub) = (off + a, off + b);
            let differs = change.is_some_and(|c| ua < c.differs_to && ub > c.from);
            let want = match change {
                None => Some(true),
                Some(c) => expect(kind, c, ua, ub, differs),
            };
            let got = if (a, b) == (0, len) {
                fs::read(&path)
            } else {
                let mut buf = vec![0u8; (b - a) as usize];
                fs::File::open(&path)
                    .and_then(|f| f.read_exact_at(&mut buf, a))
                    .map(|()| buf)
            };
            let label = format!("{what}: {name} [{a}, {b}) (stream {ua}..{ub}, change {change:?})");
            match got {
                Ok(bytes) => {
                    if bytes != data[a as usize..b as usize] {
                        problems.push(format!("{label}: WRONG BYTES returned"));
                    } else if want == Some(false) {
                        problems.push(format!("{label}: read succeeded, want EIO"));
                    }
                }
                Err(e) => {
                    failed += 1;
                    if e.raw_os_error() != Some(EIO) {
                        problems.push(format!("{label}: {e}, want EIO"));
                    } else if want == Some(true) {
                        problems.push(format!("{label}: EIO, want the true bytes"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    failed
}

/// Reads the layer through `blobs/`, one 64 KiB chunk at a time: a chunk `served` has as the
/// genuine blob has it returns its true bytes, any other fails with EIO.
fn check_blob_reads(m: &Mount, digest: &str, genuine: &[u8], served: &[u8], what: &str) {
    let f = fs::File::open(m.path(&format!("blobs/sha256/{digest}"))).unwrap();
    let mut problems = Vec::new();
    for (k, (want, have)) in genuine
        .chunks(CHUNK as usize)
        .zip(served.chunks(CHUNK as usize))
        .enumerate()
    {
        let mut buf = vec![0u8; want.len()];
        let at = k as u64 * CHUNK;
        match f.read_exact_at(&mut buf, at) {
            Ok(()) if buf != want => problems.push(format!("{what}: blobs/ chunk at {at}: WRONG BYTES")),
            Ok(()) if want != have => problems.push(format!("{what}: blobs/ chunk at {at}: read, want EIO")),
            Err(e) if e.raw_os_error() != Some(EIO) => problems.push(format!("{what}: blobs/ chunk at {at}: {e}")),
            Err(e) if want == have => problems.push(format!("{what}: blobs/ chunk at {at}: {e}, want the bytes")),
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Where a source's rootfs is in its mount.
fn rootfs(m: &Mount) -> PathBuf {
    let images = crate::util::ref_dirs(m);
    assert_eq!(images.len(), 1, "{images:?}");
    m.path(&format!("images/{}/rootfs", images.iter().next().unwrap()))
}

fn mount(source: &str, cache: &Path, log: &Path, extra: &[String]) -> Mount {
    let _ = fs::remove_file(log);
    let mut args = vec![
        "--cache-dir".to_owned(),
        cache.display().to_string(),
        "--log-file".into(),
        log.display().to_string(),
        "-v".into(),
    ];
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Mount::with_args(source, &args)
}

/// A source of a test image: how to write (or serve) a copy of it with given layer bytes.
trait Source {
    /// The reference to mount for an image whose layer has the bytes `blob` (named by the
    /// genuine digest).
    fn place(&self, img: &Image, genuine_digest: &str, dir: &Path) -> String;
    /// Extra mount arguments.
    fn args(&self) -> Vec<String> {
        Vec::new()
    }
    /// Removes what of a source the cache keeps besides indexes (a registry's downloads).
    fn forget_downloads(&self, _cache: &Path) {}
    /// True when the cache keeps the source's blobs (a registry's downloads).
    fn has_downloads(&self) -> bool {
        false
    }
}

struct Oci;
impl Source for Oci {
    fn place(&self, img: &Image, genuine_digest: &str, dir: &Path) -> String {
        img.write_oci(dir, genuine_digest);
        format!("oci:{}:v1", dir.display())
    }
}

struct DockerArchive;
impl Source for DockerArchive {
    fn place(&self, img: &Image, genuine_digest: &str, dir: &Path) -> String {
        fs::create_dir_all(dir).unwrap();
        let path = dir.join("image.tar");
        img.write_docker(&path, genuine_digest);
        format!("docker-archive:{}", path.display())
    }
}

/// A registry holding the genuine image; a changed copy is served through a proxy that
/// replaces the layer's bytes.
struct Remote<'a> {
    reg: &'a Registry,
    name: String,
    proxies: std::cell::RefCell<Vec<Proxy>>,
}

impl Source for Remote<'_> {
    fn place(&self, img: &Image, genuine_digest: &str, dir: &Path) -> String {
        if sha256_hex(&img.blob) == genuine_digest {
            return self.reg.url(&self.name);
        }
        fs::create_dir_all(dir).unwrap();
        let file = dir.join("layer");
        fs::write(&file, &img.blob).unwrap();
        let spec = format!("sha256:{genuine_digest}={}", file.display());
        let proxy = Proxy::start(self.reg, &["--replace", &spec]);
        let url = format!("docker://{}/{}", proxy.host, self.name);
        self.proxies.borrow_mut().push(proxy);
        url
    }
    fn args(&self) -> Vec<String> {
        vec!["--tls-verify=false".into()]
    }
    fn has_downloads(&self) -> bool {
        true
    }
    fn forget_downloads(&self, cache: &Path) {
        for e in fs::read_dir(cache).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with("blob-") {
                fs::remove_file(p).unwrap();
            }
        }
    }
}

fn cache_file(cache: &Path, prefix: &str) -> PathBuf {
    fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* in {}", cache.display()))
}

/// (a), (b) and (c) of the issue for one source and one kind of layer.
fn scenario(src: &dyn Source, kind: Kind, what: &str) {
    let genuine = layer(1);
    let other = layer(2);
    assert_eq!(genuine.tar.len(), other.tar.len());
    let img = Image::new(kind, &genuine);
    let digest = img.digest();
    let tmp = tempdir();
    let (cache, log) = (tmp.path().join("cache"), tmp.path().join("log"));
    let args = src.args();
    let what = format!("{what} {kind:?}");

    // (a) The genuine image reads back exactly, and its index is cached.
    let source = src.place(&img, &digest, &tmp.path().join("genuine"));
    {
        let m = mount(&source, &cache, &log, &args);
        assert_eq!(check_reads(&rootfs(&m), &genuine, kind, None, &what), 0);
    }
    cache_file(&cache, "layer-");
    src.forget_downloads(&cache);
    // (a') The same file again, warm: the index is bound to it and no chunk is hashed again
    // (docs/index-format.md); a registry blob has no such identity.
    if !src.has_downloads() {
        let m = mount(&source, &cache, &log, &args);
        assert_eq!(check_reads(&rootfs(&m), &genuine, kind, None, &what), 0);
        drop(m);
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains("bound to the file it was built from"), "{what}: {text}");
    }

    // (b) Warm cache, changed copies: one flipped byte in the middle of f2; another tar.
    let target = genuine.files[3].1 + FILE_BYTES as u64 / 2;
    let (flipped, change) = flip(kind, &genuine, &img.blob, target);
    let replaced = kind.compress_to(&other.tar, img.blob.len());
    assert_eq!(replaced.len(), img.blob.len(), "{what}: replacement of another length");
    // Where the streams part: the tars from f0 on; the blobs (where the gzip header's name
    // differs) maybe before. Stored bytes of random data are about where their stream bytes are.
    let divergence = genuine.tar.iter().zip(&other.tar).position(|(a, b)| a != b).unwrap() as u64;
    let stored = img.blob.iter().zip(&replaced).position(|(a, b)| a != b).unwrap() as u64;
    let divergence = divergence.min((stored / CHUNK * CHUNK).saturating_sub(4096));
    let cases = [
        ("one flipped byte", flipped, change),
        (
            "another tar",
            replaced,
            Change {
                from: divergence,
                differs_to: genuine.tar.len() as u64,
                to: genuine.tar.len() as u64,
            },
        ),
    ];
    for (i, (case, blob, change)) in cases.into_iter().enumerate() {
        let copy = img.with_blob(blob);
        let source = src.place(&copy, &digest, &tmp.path().join(format!("copy{i}")));
        let m = mount(&source, &cache, &log, &args);
        let failed = check_reads(&rootfs(&m), &genuine, kind, Some(change), &format!("{what}, {case}"));
        check_blob_reads(&m, &digest, &img.blob, &copy.blob, &format!("{what}, {case}"));
        drop(m);
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(failed > 0, "{what}, {case}: no read failed\n{text}");
        assert!(
            text.contains("loaded from the cache") && !text.contains("indexed layer"),
            "{what}, {case}: the cache was not warm:\n{text}"
        );
        assert!(
            text.contains(&format!("layer sha256:{digest}: bytes")) && text.contains("do not match the digest"),
            "{what}, {case}: the log does not name the layer and the bytes:\n{text}"
        );
        src.forget_downloads(&cache);
    }

    // (c) A damaged index cache file is never used: the genuine source reads back exactly
    // (rebuilt), a changed one fails its layer as with a cold cache.
    let index = cache_file(&cache, "layer-");
    let mut bytes = fs::read(&index).unwrap();
    let good = bytes.clone();
    for at in [30, bytes.len() / 3, bytes.len() - 5] {
        bytes = good.clone();
        bytes[at] ^= 0x10;
        fs::write(&index, &bytes).unwrap();
        let m = mount(&source_of(src, &img, &digest, &tmp, "genuine"), &cache, &log, &args);
        assert_eq!(
            check_reads(
                &rootfs(&m),
                &genuine,
                kind,
                None,
                &format!("{what}, cache damaged at {at}")
            ),
            0
        );
        drop(m);
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("corrupt") && text.contains("indexed layer"),
            "{what}: {text}"
        );
    }
    fs::write(&index, &bytes).unwrap();
    src.forget_downloads(&cache);
    let copy = img.with_blob(flip(kind, &genuine, &img.blob, target).0);
    let source = src.place(&copy, &digest, &tmp.path().join("copy-c"));
    let m = mount(&source, &cache, &log, &args);
    // Nothing can be served from a layer that cannot be indexed.
    let all = Change {
        from: 0,
        differs_to: genuine.tar.len() as u64,
        to: genuine.tar.len() as u64,
    };
    let what_c = format!("{what}, damaged cache + flipped copy");
    assert!(check_reads(&rootfs(&m), &genuine, kind, Some(all), &what_c) > 0);
    drop(m);
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains(&digest),
        "{what_c}: the log does not name the layer:\n{text}"
    );

    // (d) The very file the index was built from, changed in place with its size and mtime
    // kept (only its ctime tells): it is no longer bound, so its chunks are checked.
    if !src.has_downloads() {
        let dir = tmp.path().join("genuine");
        {
            // A valid index bound to the genuine file again (the one above is damaged).
            let m = mount(&src.place(&img, &digest, &dir), &cache, &log, &args);
            assert_eq!(check_reads(&rootfs(&m), &genuine, kind, None, &what), 0);
        }
        let times: Vec<_> = crate::util::walk(&dir)
            .into_iter()
            .filter(|p| p.is_file())
            .map(|p| {
                let t = fs::metadata(&p).unwrap().modified().unwrap();
                (p, t)
            })
            .collect();
        let (blob, change) = flip(kind, &genuine, &img.blob, target);
        let source = src.place(&img.with_blob(blob), &digest, &dir);
        for (p, t) in &times {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(*t)
                .unwrap();
        }
        let m = mount(&source, &cache, &log, &args);
        let what_d = format!("{what}, genuine file changed in place (size and mtime kept)");
        assert!(check_reads(&rootfs(&m), &genuine, kind, Some(change), &what_d) > 0);
        drop(m);
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("loaded from the cache") && text.contains("do not match the digest"),
            "{what_d}:\n{text}"
        );
    }

    // A registry blob downloaded into the cache and damaged there is a changed source too.
    if src.has_downloads() {
        fs::remove_file(cache_file(&cache, "layer-")).unwrap();
        let source = source_of(src, &img, &digest, &tmp, "genuine");
        {
            let m = mount(&source, &cache, &log, &args);
            rootfs(&m).read_dir().unwrap().for_each(drop);
        }
        let download = cache_file(&cache, "blob-");
        let (bad, change) = flip(kind, &genuine, &img.blob, target);
        fs::write(&download, &bad).unwrap();
        let m = mount(&source, &cache, &log, &args);
        let what_d = format!("{what}, damaged download");
        assert!(check_reads(&rootfs(&m), &genuine, kind, Some(change), &what_d) > 0);
        check_blob_reads(&m, &digest, &img.blob, &bad, &what_d);
        drop(m);
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains(&format!("layer sha256:{digest}: bytes")),
            "{what_d}:\n{text}"
        );
    }
}

fn source_of(src: &dyn Source, img: &Image, digest: &str, tmp: &tempfile::TempDir, name: &str) -> String {
    let dir = tmp.path().join(format!("{name}-again"));
    let _ = fs::remove_dir_all(&dir);
    src.place(img, digest, &dir)
}

/// Pushes `img` as tag `v1` of `name` with the registry API, byte for byte (skopeo would
/// compress an uncompressed layer on the way).
fn push_exact(reg: &Registry, name: &str, img: &Image) {
    let tmp = tempdir();
    let manifest = img.write_oci(tmp.path(), &img.digest());
    let base = reg
        .url(name)
        .replacen("docker://", "http://", 1)
        .replacen(&format!("/{name}"), "", 1);
    let curl = |args: &[&str]| {
        let o = crate::util::run(
            std::process::Command::new("curl").args(["-sS", "-f"]).args(args),
            std::time::Duration::from_secs(60),
        );
        assert!(o.ok(), "curl {args:?}: {}", o.stderr_str());
        o.stdout_str()
    };
    for blob in [&img.blob, &img.config] {
        let file = tmp.path().join("upload");
        fs::write(&file, blob).unwrap();
        let head = curl(&["-i", "-X", "POST", &format!("{base}/v2/{name}/blobs/uploads/")]);
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
            .expect("an upload location")
            .trim()
            .to_owned();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{base}{location}")
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest=sha256:{}", sha256_hex(blob));
        curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &put,
        ]);
    }
    let file = tmp.path().join("manifest");
    fs::write(&file, &manifest).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/v2/{name}/manifests/v1"),
    ]);
}

#[test]
fn oci_layout_layers_are_verified_chunk_by_chunk() {
    for kind in [Kind::Tar, Kind::Gzip, Kind::Zstd] {
        scenario(&Oci, kind, "oci");
    }
}

#[test]
fn docker_archive_layers_are_verified_chunk_by_chunk() {
    for kind in [Kind::Tar, Kind::Gzip, Kind::Zstd] {
        scenario(&DockerArchive, kind, "docker-archive");
    }
}

#[test]
fn registry_layers_are_verified_chunk_by_chunk() {
    require(&["docker-registry", "curl", "python3"]);
    let reg = Registry::start(Setup::default());
    for kind in [Kind::Tar, Kind::Gzip, Kind::Zstd] {
        let img = Image::new(kind, &layer(1));
        let name = format!("verified/{kind:?}").to_lowercase();
        push_exact(&reg, &name, &img);
        let name = format!("{name}:v1");
        let remote = Remote {
            reg: &reg,
            name,
            proxies: Default::default(),
        };
        scenario(&remote, kind, "registry");
    }
}
