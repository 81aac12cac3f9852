//! The tar conformance corpus (issue 17): the 232 archives of shared/fixtures/tar-corpus, which ten
//! other projects wrote for their own test suites (SOURCES.md), each wrapped as a one-layer image,
//! uncompressed and gzip, all in one OCI layout built here, mounted for real with a cold index
//! cache and again with the cache warm. Every rootfs is compared with what GNU tar and bsdtar
//! extract from the same archive and, where it can unpack it, `umoci unpack` of the same image.
//!
//! Each archive must be one of:
//! - identical: the rootfs equals the tree of a reference that read the archive without error;
//! - oci: it equals the tree of a reference that failed only on members the OCI layer rules drop
//!   (a `..` component, a component over 255 bytes, a parent that is a symlink: docs/merge.md);
//! - refused: the rootfs fails (EIO) where GNU tar and bsdtar both fail too.
//!
//! Anything else fails the test with the trees' differences. All four imgfs variants (tar/gzip,
//! cold/warm) must give the same result. Where the references disagree with each other, the test
//! prints it; docs/robustness.md ("The tar corpus") says which one imgfs follows and why.

use crate::util::{
    one_layer_manifest, require, run, sha256_bytes, shared_fixtures, start_layout, tempdir, write_blob, Mount,
    MT_INDEX, MT_MANIFEST,
};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Number of archives SOURCES.md lists.
const CORPUS_SIZE: usize = 232;

/// One line per path (relative, raw bytes), what the comparison looks at.
type Tree = BTreeMap<Vec<u8>, String>;

/// A tree, or why walking it failed.
type Walked = Result<Tree, String>;

/// What one reference tool made of an archive.
struct Reference {
    tool: &'static str,
    ok: bool,
    tree: Walked,
    stderr: String,
}

/// The corpus: (name relative to tar-corpus/, bytes), sorted by name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = shared_fixtures().join("tar-corpus");
    let mut out = Vec::new();
    for dir in fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "tar") {
                let name = f.strip_prefix(&root).unwrap().display().to_string();
                out.push((name, fs::read(&f).unwrap()));
            }
        }
    }
    out.sort();
    assert_eq!(out.len(), CORPUS_SIZE, "archives under {}", root.display());
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Ref names of archive `i`: uncompressed and gzip layer.
fn refs(i: usize) -> [String; 2] {
    [format!("{i:03}-tar"), format!("{i:03}-gz")]
}

fn write_index(layout: &Path, manifests: Vec<serde_json::Value>) {
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests});
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

/// One OCI layout holding every archive as two one-layer images (refs `NNN-tar`, `NNN-gz`), for
/// imgfs; and for umoci, which locks a layout while it unpacks (two at once would wait for each
/// other), a small layout per archive under `single/NNN` with its uncompressed image, its blobs
/// hard links to the big layout's.
fn build_layouts(layout: &Path, single: &Path, corpus: &[(String, Vec<u8>)]) {
    start_layout(layout);
    let mut manifests = Vec::new();
    for (i, (name, tar)) in corpus.iter().enumerate() {
        let (diff_id, _) = write_blob(layout, tar);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"comment": name}],
        });
        let (config_digest, config_size) = write_blob(layout, config.to_string().as_bytes());
        let gz = gzip(tar);
        let [tar_ref, gz_ref] = refs(i);
        let own = single.join(format!("{i:03}"));
        start_layout(&own);
        for (r, blob, media_type) in [
            (tar_ref, &tar[..], "application/vnd.oci.image.layer.v1.tar"),
            (gz_ref, &gz[..], "application/vnd.oci.image.layer.v1.tar+gzip"),
        ] {
            let (digest, size) = write_blob(layout, blob);
            let manifest = one_layer_manifest((&config_digest, config_size), (media_type, &digest, size as u64));
            let (manifest_digest, size) = write_blob(layout, manifest.to_string().as_bytes());
            let desc = serde_json::json!({
                "mediaType": MT_MANIFEST,
                "digest": manifest_digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": r},
            });
            if media_type.ends_with(".tar") {
                for d in [&manifest_digest, &config_digest, &digest] {
                    let hex = &d["sha256:".len()..];
                    let _ = fs::hard_link(
                        layout.join("blobs/sha256").join(hex),
                        own.join("blobs/sha256").join(hex),
                    );
                }
                write_index(&own, vec![desc.clone()]);
            }
            manifests.push(desc);
        }
    }
    write_index(layout, manifests);
}

/// Every path under `root` (not `root` itself) with what is compared: type, permission bits,
/// owner, and per type the size, sha256 and link count (files), target (symlinks), device
/// numbers, and the mtime of files and symlinks (directory times depend on the extraction order
/// of the tools; implicit directories get the time of extraction).
fn walk(root: &Path) -> Walked {
    let mut tree = Tree::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let dir = root.join(&rel);
        let list = fs::read_dir(&dir).map_err(|e| format!("readdir /{}: {e}", rel.display()))?;
        for d in list {
            let d = d.map_err(|e| format!("readdir /{}: {e}", rel.display()))?;
            let rel = rel.join(d.file_name());
            let p = root.join(&rel);
            let md = fs::symlink_metadata(&p).map_err(|e| format!("lstat /{}: {e}", rel.display()))?;
            let ft = md.file_type();
            let common = format!("{:04o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid());
            let line = if ft.is_dir() {
                dirs.push(rel.clone());
                format!("d {common}")
            } else if ft.is_file() {
                let data = fs::read(&p).map_err(|e| format!("read /{}: {e}", rel.display()))?;
                let hash = sha256_bytes(&data);
                format!(
                    "f {common} {} {hash} nlink {} mtime {}",
                    data.len(),
                    md.nlink(),
                    md.mtime()
                )
            } else if ft.is_symlink() {
                let target = fs::read_link(&p).map_err(|e| format!("readlink /{}: {e}", rel.display()))?;
                let target = String::from_utf8_lossy(target.as_os_str().as_bytes()).into_owned();
                format!("l {common} -> {target:?} mtime {}", md.mtime())
            } else if ft.is_char_device() || ft.is_block_device() {
                let t = if ft.is_char_device() { 'c' } else { 'b' };
                let d = md.rdev();
                let (major, minor) = (
                    ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff),
                    ((d >> 12) & 0xffff_ff00) | (d & 0xff),
                );
                format!("{t} {common} {major}:{minor}")
            } else if ft.is_fifo() {
                format!("p {common}")
            } else {
                format!("? {common}")
            };
            tree.insert(rel.as_os_str().as_bytes().to_vec(), line);
        }
    }
    Ok(tree)
}

/// Runs a reference tool that extracts into `out` and walks the result.
fn reference(tool: &'static str, cmd: &mut Command, out: &Path) -> Reference {
    let o = run(cmd, Duration::from_secs(60));
    assert!(!o.timed_out, "{tool} timed out: {}", o.what);
    let tree = if out.is_dir() {
        walk(out)
    } else {
        Err(format!("{tool} made no tree"))
    };
    Reference {
        tool,
        ok: o.ok(),
        tree,
        stderr: o.stderr_str(),
    }
}

/// GNU tar, bsdtar and umoci on archive `i`, each in its own directory under `scratch`.
fn references(i: usize, archive: &Path, single: &Path, scratch: &Path) -> Vec<Reference> {
    let base = scratch.join(format!("{i:03}"));
    let gnu = base.join("gnu");
    let bsd = base.join("bsd");
    fs::create_dir_all(&gnu).unwrap();
    fs::create_dir_all(&bsd).unwrap();
    let mut out = Vec::new();
    let mut cmd = Command::new("tar");
    cmd.arg("--numeric-owner").arg("-xf").arg(archive).arg("-C").arg(&gnu);
    out.push(reference("GNU tar", &mut cmd, &gnu));
    let mut cmd = Command::new("bsdtar");
    cmd.arg("--numeric-owner").arg("-xpf").arg(archive).arg("-C").arg(&bsd);
    out.push(reference("bsdtar", &mut cmd, &bsd));
    // `raw unpack`: the rootfs alone, without the runtime config and the mtree manifest
    // `unpack` also writes (hashing every file again).
    let rootfs = base.join("umoci");
    let mut cmd = Command::new("umoci");
    let image = format!("{}:{}", single.join(format!("{i:03}")).display(), refs(i)[0]);
    cmd.args(["raw", "unpack", "--image"]).arg(&image).arg(&rootfs);
    out.push(reference("umoci", &mut cmd, &rootfs));
    let _ = fs::remove_dir_all(&base);
    out
}

/// Paths of members the OCI layer rules drop (docs/merge.md): a `..` component, a component over
/// 255 bytes, or a parent that is a symlink in imgfs's tree.
fn oci_drops(archive: &[u8], ours: &Tree) -> Vec<String> {
    let Ok(entries) = imgfs::tarindex::index_seekable(&archive.to_vec()) else {
        return Vec::new();
    };
    let mut drops = Vec::new();
    for e in entries {
        let parts: Vec<&[u8]> = e
            .path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        let dotdot = parts.iter().any(|c| *c == b"..");
        let long = parts.iter().any(|c| c.len() > 255);
        let below_symlink = (1..parts.len()).any(|n| {
            let parent = parts[..n].join(&b'/');
            ours.get(&parent).is_some_and(|l| l.starts_with("l "))
        });
        if dotdot || long || below_symlink {
            drops.push(String::from_utf8_lossy(&e.path).into_owned());
        }
    }
    drops
}

/// The differences of two trees, for messages.
fn diff(a: &Tree, b: &Tree) -> String {
    let mut s = String::new();
    for (p, l) in a {
        if b.get(p) != Some(l) {
            s += &format!("  - /{} {l}\n", String::from_utf8_lossy(p));
        }
    }
    for (p, l) in b {
        if a.get(p) != Some(l) {
            s += &format!("  + /{} {l}\n", String::from_utf8_lossy(p));
        }
    }
    s
}

/// Walks the rootfs of both images of every archive in a mount: [tar, gz] per archive.
fn walk_mount(m: &Mount, n: usize) -> Vec<[Walked; 2]> {
    (0..n)
        .map(|i| refs(i).map(|r| walk(&m.path(&format!("images/{r}/rootfs")))))
        .collect()
}

#[test]
fn tar_corpus_reads_like_the_reference_tools() {
    require(&["tar", "bsdtar", "umoci"]);
    let started = Instant::now();
    let corpus = corpus();
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let single = tmp.path().join("single");
    build_layouts(&layout, &single, &corpus);
    let archives = tmp.path().join("archives");
    fs::create_dir(&archives).unwrap();
    for (i, (_, bytes)) in corpus.iter().enumerate() {
        fs::write(archives.join(format!("{i:03}.tar")), bytes).unwrap();
    }

    // The references, four archives at a time (the tools spend much of their time waiting:
    // process start, umoci's lock polling).
    let scratch = tmp.path().join("scratch");
    let next = AtomicUsize::new(0);
    let refs_of: Mutex<BTreeMap<usize, Vec<Reference>>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= corpus.len() {
                    return;
                }
                let r = references(i, &archives.join(format!("{i:03}.tar")), &single, &scratch);
                refs_of.lock().unwrap().insert(i, r);
            });
        }
    });
    let refs_of = refs_of.into_inner().unwrap();
    let after_refs = started.elapsed();

    // imgfs: cold index cache, then warm.
    let cache = tempdir();
    let cache_arg = cache.path().display().to_string();
    let cold = {
        let m = Mount::with_args(&layout, &["--cache-dir", &cache_arg]);
        walk_mount(&m, corpus.len())
    };
    let after_cold = started.elapsed();
    let warm = {
        let m = Mount::with_args(&layout, &["--cache-dir", &cache_arg]);
        walk_mount(&m, corpus.len())
    };

    let mut failures = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for (i, (name, bytes)) in corpus.iter().enumerate() {
        let refs = &refs_of[&i];
        let [cold_tar, cold_gz] = &cold[i];
        let [warm_tar, warm_gz] = &warm[i];
        for (what, other) in [("gzip layer", cold_gz), ("warm tar", warm_tar), ("warm gzip", warm_gz)] {
            if other != cold_tar {
                failures.push(format!("{name}: the {what} variant differs from the cold tar one"));
            }
        }
        // Where the references disagree (for docs/robustness.md).
        let trees: Vec<(&str, &Tree)> = refs
            .iter()
            .filter_map(|r| r.tree.as_ref().ok().map(|t| (r.tool, t)))
            .collect();
        if trees.windows(2).any(|w| w[0].1 != w[1].1) || refs.iter().any(|r| r.ok) && refs.iter().any(|r| !r.ok) {
            let states: Vec<String> = refs
                .iter()
                .map(|r| {
                    let same = cold_tar.is_ok() && r.tree.as_ref().ok() == cold_tar.as_ref().ok();
                    // The line that says what went wrong (umoci prints progress lines first).
                    let mut lines = r.stderr.lines().filter(|l| !l.trim().is_empty());
                    let first = (lines
                        .clone()
                        .find(|l| l.to_lowercase().contains("error") || l.contains('⨯')))
                    .or_else(|| lines.next())
                    .unwrap_or("");
                    let first: String = first.chars().take(120).collect();
                    match (r.ok, same) {
                        (true, true) => format!("{} ok = imgfs", r.tool),
                        (true, false) => format!("{} ok", r.tool),
                        (false, true) => format!("{} failed = imgfs ({first})", r.tool),
                        (false, false) => format!("{} failed ({first})", r.tool),
                    }
                })
                .collect();
            disagreements.push(format!("{name}: {}", states.join("; ")));
        }
        let verdict = match cold_tar {
            Ok(ours) => {
                let same: Vec<&Reference> = refs.iter().filter(|r| r.tree.as_ref() == Ok(ours)).collect();
                let drops = oci_drops(bytes, ours);
                if let Some(r) = same.iter().find(|r| r.ok) {
                    Some(format!("identical ({})", r.tool))
                } else if !same.is_empty() && !drops.is_empty() {
                    Some(format!("oci ({}: {} dropped)", same[0].tool, drops.len()))
                } else {
                    let mut msg = format!("{name}: the rootfs matches no reference (OCI drops: {drops:?})\n");
                    for r in refs {
                        match &r.tree {
                            Ok(t) => msg += &format!(" {} (ok {}):\n{}", r.tool, r.ok, diff(t, ours)),
                            Err(e) => msg += &format!(" {}: {e}\n", r.tool),
                        }
                        msg += &format!("  stderr: {}\n", r.stderr.trim().replace('\n', " | "));
                    }
                    failures.push(msg);
                    None
                }
            }
            Err(e) => {
                if refs.iter().take(2).all(|r| !r.ok) {
                    Some("refused".to_string())
                } else {
                    let ok: Vec<&str> = refs.iter().filter(|r| r.ok).map(|r| r.tool).collect();
                    failures.push(format!("{name}: imgfs refused ({e}) but {ok:?} read it"));
                    None
                }
            }
        };
        if let Some(v) = verdict {
            eprintln!("{name}: {v}");
            let kind = v.split(' ').next().unwrap_or("").to_string();
            *counts.entry(kind).or_default() += 1;
        }
    }
    eprintln!("\nwhere the references disagree ({}):", disagreements.len());
    for d in &disagreements {
        eprintln!("  {d}");
    }
    eprintln!(
        "\n{counts:?}; references {:.1} s, cold mount {:.1} s, total {:.1} s",
        after_refs.as_secs_f64(),
        (after_cold - after_refs).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} archives:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
}
