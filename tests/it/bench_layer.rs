//! The bench layer read back in full (issue 8): a realistic gzip layer, built at test time from
//! this machine's own files (a few directories of /usr, about 160 MiB of file data, `tar` then
//! `gzip -6`) and mounted as a hand-built OCI image, must show exactly what `tar -xzf` of the
//! same blob extracts: the same path list, types, modes, owners, sizes, link counts, file mtimes,
//! symlink targets, and the sha256 of every regular file. Checked once with an empty index cache
//! (the index pass) and once with the index loaded from the cache (the decoded index).
//!
//! scripts/bench runs the same check on its ~1 GiB layer (`--verify-all`).

use crate::util::{one_layer_image, require, run, sha256_file, start_layout, tempdir, Mount, CMD_TIMEOUT};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// File data in the layer: big enough for many gzip access points and a realistic file mix,
/// small enough for the test to stay well under a minute.
const DATA_CAP: u64 = 160 << 20;

/// Trees of /usr taken in this order, each walked sorted by name, until DATA_CAP is reached:
/// non-ASCII names, many symlinks and tiny files, many small text files (and empty ones), ELF
/// binaries, then documentation (changelog symlinks, compressed files) if there is room.
const SOURCE_TREES: &[&str] = &[
    "usr/share/ca-certificates",
    "usr/share/zoneinfo",
    "usr/lib/python3*",
    "usr/sbin",
    "usr/share/doc",
];

/// Below this the machine lacks the files for a realistic layer: fail rather than pass on a toy.
const MIN_FILES: usize = 2000;
const MIN_DATA: u64 = 20 << 20;

/// How many mismatches an assertion message lists.
const SHOWN: usize = 25;

const REF: &str = "bench";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Dir,
    /// sha256 of the bytes (or the read error, on the imgfs side), link count, mtime in seconds.
    File {
        sha256: String,
        nlink: u64,
        mtime: i64,
    },
    Symlink(PathBuf),
    /// Any other type (its S_IFMT bits): a /usr layer has none, but the check must not skip one.
    Other(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    size: Option<u64>,
    content: Content,
}

/// Every path under `root` (relative; the root itself left out, as its mode is the mount's or
/// the temporary directory's) with what the check compares. Errors on the `lenient` side (the
/// mount) are recorded in the node so every bad path gets reported, not just the first.
fn dump(root: &Path, lenient: bool) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    let mut buf = vec![0u8; 256 << 10];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = match fs::read_dir(&dir) {
            Ok(d) => d.collect::<Result<Vec<_>, _>>(),
            Err(e) => Err(e),
        };
        let entries = entries.unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()));
        for e in entries {
            let rel = rel.join(e.file_name());
            let p = root.join(&rel);
            let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let ft = md.file_type();
            let content = if ft.is_dir() {
                stack.push(rel.clone());
                Content::Dir
            } else if ft.is_symlink() {
                Content::Symlink(fs::read_link(&p).unwrap_or_else(|e| panic!("readlink {}: {e}", p.display())))
            } else if ft.is_file() {
                let sha256 = match hash(&p, &mut buf) {
                    Ok(h) => h,
                    Err(e) if lenient => format!("read error: {e}"),
                    Err(e) => panic!("read {}: {e}", p.display()),
                };
                Content::File {
                    sha256,
                    nlink: md.nlink(),
                    mtime: md.mtime(),
                }
            } else {
                Content::Other(md.mode() & 0o170000)
            };
            let size = (ft.is_file() || ft.is_symlink()).then_some(md.len());
            let node = Node {
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size,
                content,
            };
            out.insert(rel, node);
        }
    }
    out
}

fn hash(p: &Path, buf: &mut [u8]) -> std::io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::util::hex(&h.finalize()))
}

/// One line per difference, naming the path; empty when the trees are the same.
fn differences(imgfs: &BTreeMap<PathBuf, Node>, tar: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, want) in tar {
        let Some(got) = imgfs.get(p) else {
            out.push(format!("{}: missing from the mount", p.display()));
            continue;
        };
        let mut what = Vec::new();
        if got.content != want.content {
            what.push(match (&got.content, &want.content) {
                (Content::File { sha256: a, .. }, Content::File { sha256: b, .. }) if a != b => {
                    format!("sha256 {a}, tar -x {b}")
                }
                (a, b) => format!("{a:?}, tar -x {b:?}"),
            });
        }
        if (got.mode, got.uid, got.gid) != (want.mode, want.uid, want.gid) {
            what.push(format!(
                "mode/owner {:04o} {}:{}, tar -x {:04o} {}:{}",
                got.mode, got.uid, got.gid, want.mode, want.uid, want.gid
            ));
        }
        if got.size != want.size {
            what.push(format!("size {:?}, tar -x {:?}", got.size, want.size));
        }
        if !what.is_empty() {
            out.push(format!("{}: {}", p.display(), what.join("; ")));
        }
    }
    for p in imgfs.keys().filter(|p| !tar.contains_key(*p)) {
        out.push(format!("{}: in the mount only", p.display()));
    }
    out
}

fn assert_same(what: &str, imgfs: &BTreeMap<PathBuf, Node>, tar: &BTreeMap<PathBuf, Node>) {
    let diffs = differences(imgfs, tar);
    if diffs.is_empty() {
        return;
    }
    let mut msg = format!(
        "{what}: {} of {} paths differ from tar -xzf (imgfs shows {} paths); first {}:\n",
        diffs.len(),
        tar.len(),
        imgfs.len(),
        SHOWN.min(diffs.len())
    );
    for d in diffs.iter().take(SHOWN) {
        let _ = writeln!(msg, "  {d}");
    }
    panic!("{msg}");
}

/// The relative paths of the layer (parents first, each tree sorted by name), cut off once the
/// file data reaches DATA_CAP. Returns the paths and the file data they hold.
fn pick_files() -> (Vec<PathBuf>, u64, usize) {
    let mut trees: Vec<PathBuf> = Vec::new();
    for t in SOURCE_TREES {
        match t.strip_suffix('*') {
            Some(prefix) => {
                let (parent, stem) = prefix.rsplit_once('/').unwrap();
                let mut found: Vec<PathBuf> = fs::read_dir(Path::new("/").join(parent))
                    .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                    .unwrap_or_default();
                found.retain(|p| p.file_name().is_some_and(|n| n.as_bytes().starts_with(stem.as_bytes())));
                found.sort();
                trees.extend(found.into_iter().map(|p| p.strip_prefix("/").unwrap().to_path_buf()));
            }
            None => trees.push(PathBuf::from(t)),
        }
    }
    trees.retain(|t| fs::symlink_metadata(Path::new("/").join(t)).is_ok_and(|m| m.is_dir()));
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in &trees {
        for a in t
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if seen.insert(a.to_path_buf()) {
                paths.push(a.to_path_buf());
            }
        }
    }
    let (mut data, mut files) = (0u64, 0usize);
    'trees: for t in &trees {
        let mut stack = vec![t.clone()];
        while let Some(rel) = stack.pop() {
            if data >= DATA_CAP {
                break 'trees;
            }
            let p = Path::new("/").join(&rel);
            let Ok(md) = fs::symlink_metadata(&p) else { continue };
            let ft = md.file_type();
            if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) || !seen.insert(rel.clone()) {
                continue;
            }
            paths.push(rel.clone());
            if ft.is_file() {
                data += md.len();
                files += 1;
            } else if ft.is_dir() {
                let mut names: Vec<PathBuf> = fs::read_dir(&p)
                    .map(|d| d.filter_map(Result::ok).map(|e| rel.join(e.file_name())).collect())
                    .unwrap_or_default();
                names.sort();
                stack.extend(names.into_iter().rev());
            }
        }
    }
    (paths, data, files)
}

/// How the layer is compressed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// `gzip -6 -n`.
    Gzip,
    /// `zstd -3`: one frame, as skopeo writes it (issue 20: read through checkpoints).
    Zstd,
}

impl Codec {
    fn media_type(self) -> &'static str {
        match self {
            Codec::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Codec::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// The layer (`tar` of the picked paths, then `gzip -6 -n` or `zstd -3`) in a hand-built OCI
/// layout with one ref, and `tar -x` of the same blob. Returns (layout, extracted tree, summary).
fn build(tmp: &Path, codec: Codec) -> (PathBuf, PathBuf, String) {
    let started = Instant::now();
    let (paths, data, files) = pick_files();
    assert!(
        files >= MIN_FILES && data >= MIN_DATA,
        "this machine has only {files} files / {} MiB in {SOURCE_TREES:?}: not a realistic layer",
        data >> 20
    );
    let list = tmp.join("files.list");
    let mut w = std::io::BufWriter::new(File::create(&list).unwrap());
    for p in &paths {
        w.write_all(p.as_os_str().as_bytes()).unwrap();
        w.write_all(b"\0").unwrap();
    }
    w.into_inner().unwrap().sync_all().unwrap();

    let tar = tmp.join("layer.tar");
    let o = run(
        Command::new("tar")
            .args(["--no-recursion", "--null", "--numeric-owner", "-C", "/", "-cf"])
            .arg(&tar)
            .arg("-T")
            .arg(&list),
        CMD_TIMEOUT,
    );
    // Exit 1: a file changed while read. The comparison is with the archive, so that is fine.
    assert!(
        o.ok() || o.status.and_then(|s| s.code()) == Some(1),
        "{}\n{}",
        o.describe(),
        o.stderr_str()
    );
    let diff_id = format!("sha256:{}", sha256_file(&tar));
    let (compress, gz) = match codec {
        Codec::Gzip => (
            Command::new("gzip").args(["-6", "-n", "-k", "-f"]).arg(&tar).output(),
            tmp.join("layer.tar.gz"),
        ),
        Codec::Zstd => (
            Command::new("zstd").args(["-3", "-q", "-k", "-f"]).arg(&tar).output(),
            tmp.join("layer.tar.zst"),
        ),
    };
    let compress = compress.expect("gzip / zstd (scripts/install-deps.sh)");
    assert!(compress.status.success(), "{compress:?}");
    let layer_hex = sha256_file(&gz);
    let layer_size = fs::metadata(&gz).unwrap().len();
    fs::remove_file(&tar).unwrap();

    let layout = tmp.join("oci");
    start_layout(&layout);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": "tests/it/bench_layer.rs: tar + gzip -6 -n or zstd -3" }],
    });
    let layer_path = layout.join("blobs/sha256").join(&layer_hex);
    fs::rename(&gz, &layer_path).unwrap();
    let layer_digest = format!("sha256:{layer_hex}");
    one_layer_image(&layout, &config, (codec.media_type(), &layer_digest, layer_size), REF);

    let tree = tmp.join("tree");
    fs::create_dir(&tree).unwrap();
    run(
        Command::new("tar")
            .args([
                "--numeric-owner",
                "-I",
                if codec == Codec::Zstd { "zstd" } else { "gzip" },
                "-xf",
            ])
            .arg(&layer_path)
            .arg("-C")
            .arg(&tree),
        CMD_TIMEOUT,
    )
    .assert_ok();
    let summary = format!(
        "{} entries, {files} files, {} MiB of file data, {} MiB compressed; built in {:.1} s",
        paths.len(),
        data >> 20,
        layer_size >> 20,
        started.elapsed().as_secs_f64()
    );
    (layout, tree, summary)
}

/// Mounts the layout with `cache`, dumps rootfs (while the reference is dumped, when it is not
/// given yet, on another thread), unmounts, and returns both dumps and the mount's log.
fn mount_and_dump(
    layout: &Path,
    cache: &Path,
    log: &Path,
    tree: &Path,
    want: Option<BTreeMap<PathBuf, Node>>,
) -> (BTreeMap<PathBuf, Node>, BTreeMap<PathBuf, Node>, String) {
    let _ = fs::remove_file(log);
    let source = format!("oci:{}:{REF}", layout.display());
    let (got, want) = {
        let m = Mount::with_args(
            &source,
            &[
                "--cache-dir",
                &cache.display().to_string(),
                "--log-file",
                &log.display().to_string(),
                "-v",
                // Single-frame zstd: checkpoints (opt-in); other codecs ignore it.
                "--zstd-checkpoints",
            ],
        );
        let rootfs = m.path(&format!("images/{REF}/rootfs"));
        let (got, want) = std::thread::scope(|s| {
            let reference = s.spawn(|| want.unwrap_or_else(|| dump(tree, false)));
            let got = dump(&rootfs, true);
            (got, reference.join().expect("reference dump"))
        });
        // Files of several MiB were read in order: their next segments were inflated by the
        // read-ahead pool (blob/readahead.rs), whose threads now exist in the daemon.
        let threads = daemon_threads(&m.path(""));
        assert!(
            threads.iter().any(|t| t.starts_with("imgfs-readahea")),
            "no read-ahead thread in the daemon: {threads:?}"
        );
        (got, want)
    };
    (got, want, fs::read_to_string(log).unwrap_or_default())
}

/// Thread names (`comm`, at most 15 bytes) of the imgfs daemon serving `mount_dir`.
fn daemon_threads(mount_dir: &Path) -> Vec<String> {
    let want = mount_dir.as_os_str().as_bytes();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|&b| b == 0).any(|a| a == want) {
            let tasks = fs::read_dir(e.path().join("task")).expect("task dir");
            return tasks
                .flatten()
                .filter_map(|t| fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim_end().to_owned())
                .collect();
        }
    }
    panic!("no process serves {}", mount_dir.display());
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn every_file_of_a_realistic_layer_reads_back_like_tar_xzf() {
    require(&["tar", "gzip"]);
    realistic_layer(Codec::Gzip);
}

/// The same layer as one zstd frame: every read resumes at a checkpoint inside the frame.
#[test]
fn every_file_of_a_single_frame_zstd_layer_reads_back_like_tar_x() {
    require(&["tar", "zstd"]);
    realistic_layer(Codec::Zstd);
}

fn realistic_layer(codec: Codec) {
    let tmp = tempdir();
    let (layout, tree, summary) = build(tmp.path(), codec);
    eprintln!("bench layer: {summary}");
    let (cache, log) = (tmp.path().join("cache"), tmp.path().join("imgfs.log"));

    let started = Instant::now();
    let (cold, want, cold_log) = mount_and_dump(&layout, &cache, &log, &tree, None);
    let cold_secs = started.elapsed().as_secs_f64();
    assert_same("cold index (empty cache dir)", &cold, &want);
    assert_eq!(count(&cold_log, "indexed layer"), 1, "cold mount log:\n{cold_log}");
    if codec == Codec::Zstd {
        // ~160 MiB of output in one frame: a checkpoint every 2 MiB.
        let n = cold_log
            .lines()
            .find_map(|l| l.split_once("zstd checkpoints: ").map(|(_, n)| n.trim().to_owned()))
            .unwrap_or_default();
        assert!(
            n.parse::<usize>().is_ok_and(|n| n >= 20),
            "checkpoints: {n:?}\n{cold_log}"
        );
    }

    // The reference must have covered what the layer is about, or the check proves little.
    let files = want
        .values()
        .filter(|n| matches!(n.content, Content::File { .. }))
        .count();
    let links = want
        .values()
        .filter(|n| matches!(n.content, Content::Symlink(_)))
        .count();
    assert!(
        files >= MIN_FILES && links > 0,
        "tar -x gave {files} files, {links} symlinks"
    );

    let started = Instant::now();
    let (warm, _, warm_log) = mount_and_dump(&layout, &cache, &log, &tree, Some(want.clone()));
    assert_same("warm index (loaded from the cache)", &warm, &want);
    assert_eq!(
        count(&warm_log, "indexed layer"),
        0,
        "warm mount indexed again:\n{warm_log}"
    );
    assert_eq!(
        count(&warm_log, "entries loaded from the cache"),
        1,
        "warm mount log:\n{warm_log}"
    );
    eprintln!(
        "bench layer: {} paths ({files} files, {links} symlinks) identical to tar -xzf; cold {cold_secs:.1} s, \
         warm {:.1} s (mount + hash every file)",
        want.len(),
        started.elapsed().as_secs_f64()
    );
}
