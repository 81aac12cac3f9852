//! Checkpoints inside single-frame zstd layers beyond `imgfs mount` (docs/cli.md,
//! docs/index-format.md "zstd checkpoints"): `imgfs ls` and `imgfs cat` with
//! `--zstd-checkpoints` build the index with checkpoints (again, when the cache has one without)
//! and a later command loads it from the cache with them. The one-frame image made here is also
//! the one `published.rs` publishes with checkpoints.

use crate::util::{one_layer_image, run_imgfs, sha256_bytes, start_layout, tempdir, write_blob, Rng, CMD_TIMEOUT};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The ref name of the image in its layout.
pub(crate) const REF: &str = "v1";
/// The small file at the very end of the layer: what a random read of a big frame asks for.
pub(crate) const LAST: &str = "zz/last.txt";

/// An OCI layout whose one layer is one zstd frame of ~13 MiB of output (several 2 MiB
/// checkpoint segments).
pub(crate) struct FrameImage {
    /// The layout directory.
    pub layout: PathBuf,
    /// Every regular file of the layer: path -> bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The layer's digest and size.
    pub layer: (String, u64),
    _dir: tempfile::TempDir,
}

impl FrameImage {
    /// `oci:LAYOUT:v1`.
    pub(crate) fn source(&self) -> String {
        format!("oci:{}:{REF}", self.layout.display())
    }
}

/// Words for the compressible files.
const WORDS: &[&str] = &[
    "usr",
    "lib",
    "share",
    "the ",
    "and ",
    "of ",
    "\n",
    "{\"key\": ",
    "import ",
    "return ",
    "    ",
    "#include <stdio.h>\n",
    "checkpoint",
    "frame",
    "window",
    "0x1f8b",
    "layer",
    "/",
    "=",
    "; ",
];

/// `len` bytes of text made of [`WORDS`] (compresses about 4:1).
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

/// `len` bytes that do not compress.
fn noise(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The files, deterministic: random, text, and mixed files (text, noise and a copy of an earlier
/// file's bytes, so later segments match far back), the layer's last 4 MiB all text (its last
/// segments compress well: a read there fetches little), then [`LAST`].
fn contents() -> BTreeMap<String, Vec<u8>> {
    const FILE: usize = 576 << 10;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut files = BTreeMap::new();
    let mut previous: Vec<u8> = Vec::new();
    for i in 0..24 {
        let bytes = match (i < 16).then_some(i % 3) {
            Some(0) => noise(&mut rng, FILE),
            Some(2) => {
                let mut b = text(&mut rng, FILE / 4);
                b.extend(noise(&mut rng, FILE / 4));
                b.extend_from_slice(&previous[..FILE / 2]);
                b
            }
            _ => text(&mut rng, FILE),
        };
        previous = bytes.clone();
        files.insert(format!("data/f{i:02}"), bytes);
    }
    let last = format!("{}\n", String::from_utf8(text(&mut rng, 3000)).unwrap_or_default());
    files.insert(LAST.to_owned(), last.into_bytes());
    files
}

/// Builds the image in a directory of its own: a tar of [`contents`] (directories first, files
/// in name order, so [`LAST`] is the last member), compressed as one zstd frame.
pub(crate) fn single_frame_image() -> FrameImage {
    let dir = tempdir();
    let files = contents();
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for d in ["data/", "zz/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    for (path, bytes) in &files {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        tar.append_data(&mut h, path, &bytes[..]).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    // One frame, as `zstd` and skopeo write it.
    let layer = zstd::encode_all(&tar[..], 3).unwrap();
    let layout = dir.path().join("oci");
    start_layout(&layout);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha256_bytes(&tar))] },
    });
    let (digest, size) = write_blob(&layout, &layer);
    let media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
    one_layer_image(&layout, &config, (media_type, &digest, size as u64), REF);
    FrameImage {
        layout,
        files,
        layer: (digest, size as u64),
        _dir: dir,
    }
}

/// `imgfs -v ARGS... --cache-dir CACHE` (one line of log per step at info level): stdout, stderr.
fn imgfs_v(args: &[&str], cache: &Path) -> (Vec<u8>, String) {
    let mut all = vec!["-v".to_owned()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--cache-dir".to_owned(), cache.display().to_string()]);
    let o = run_imgfs(&all, CMD_TIMEOUT);
    assert!(o.ok(), "imgfs {args:?}: {}\n{}", o.describe(), o.stderr_str());
    (o.stdout.clone(), o.stderr_str())
}

/// How many checkpoints the first index pass in `log` recorded (`... zstd checkpoints: N`).
pub(crate) fn checkpoints_built(log: &str) -> Option<usize> {
    log.lines()
        .find_map(|l| l.split_once("zstd checkpoints: ")?.1.trim().parse().ok())
}

/// How many checkpoints the first index loaded from the cache in `log` has (`... loaded from
/// the cache in 0.4 ms, N zstd checkpoints`).
pub(crate) fn checkpoints_loaded(log: &str) -> Option<usize> {
    log.lines()
        .filter(|l| l.contains("loaded from the cache"))
        .find_map(|l| l.strip_suffix(" zstd checkpoints")?.rsplit(' ').next()?.parse().ok())
}

#[test]
fn ls_and_cat_build_and_reuse_checkpoint_indexes() {
    let img = single_frame_image();
    let source = img.source();
    let cache = tempdir();
    let root = format!("images/{REF}/rootfs");
    let last = format!("{root}/{LAST}");
    // Without the flag: an index of frames only.
    let (out, log) = imgfs_v(&["cat", &source, &last], cache.path());
    assert!(out == img.files[LAST], "cat {LAST} without checkpoints");
    assert!(log.contains("zstd checkpoints: 0"), "cat without the flag:\n{log}");
    // `ls -R --zstd-checkpoints`: that index lacks them, so the layer is indexed again.
    let (out, log) = imgfs_v(&["ls", "-R", "--zstd-checkpoints", &source, &root], cache.path());
    let mut want: BTreeSet<String> = ["data/", "zz/"].map(String::from).into();
    want.extend(img.files.keys().cloned());
    let got: BTreeSet<String> = String::from_utf8(out).unwrap().lines().map(String::from).collect();
    assert_eq!(got, want, "ls -R --zstd-checkpoints");
    assert!(
        log.contains("its cached index has no zstd checkpoints; indexing it again"),
        "ls:\n{log}"
    );
    let built = checkpoints_built(&log);
    assert!(
        built.is_some_and(|n| n >= 4),
        "checkpoints built by ls: {built:?}\n{log}"
    );
    // `cat --zstd-checkpoints` finds them in the cache: loaded, not indexed again.
    for path in [LAST, "data/f07", "data/f22"] {
        let (out, log) = imgfs_v(
            &["cat", "--zstd-checkpoints", &source, &format!("{root}/{path}")],
            cache.path(),
        );
        assert!(out == img.files[path], "cat --zstd-checkpoints {path}: wrong bytes");
        assert!(!log.contains("indexed layer"), "cat indexed again:\n{log}");
        assert_eq!(
            checkpoints_loaded(&log),
            built,
            "cat {path}: the cached index's checkpoints\n{log}"
        );
    }
}
