//! The root-free tier: every source format imgfs reads, made in Rust (tests/rootfree/images.rs),
//! opened through the same code a mount uses (`imgfs::open_tree` + `fs::Fs`, which the FUSE
//! adapter only translates), and compared as a text dump of the whole tree with golden files in
//! tests/rootfree/golden/. Needs no root, no /dev/fuse and no outside tool: scripts/check.sh runs
//! it as an unprivileged user with an empty environment.
//!
//! Across format x layer compression x outer compression x cold/warm cache:
//! - the dump of a source equals its format's golden file (the same golden for a layout as a
//!   directory, as a tar, and as a gzip- or zstd-compressed tar);
//! - a warm cache (second open, indexes loaded from the cache) gives the same dump, inode numbers
//!   included, as the cold one;
//! - every format shows the same merged `rootfs/`.
//!
//! When the tree changes on purpose, regenerate with `IMGFS_UPDATE_GOLDEN=1 cargo test --release
//! --test rootfree` and review the diff of tests/rootfree/golden/ like code.

mod images;

use images::LayerComp;
use imgfs::cache::Cache;
use imgfs::fs::{Fs, Kind};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One line per path, sorted by the walk (directories in readdir order, which the tree keeps
/// sorted by name). Static nodes carry no mtime: it comes from the source file's own mtime,
/// which a fixture made at test time does not fix. Inode numbers are left out of the golden text
/// (adding a file to the layout renumbers what follows) but compared between cold and warm opens.
struct Dump {
    text: String,
    inos: Vec<u64>,
}

fn dump(fs: &Fs) -> Dump {
    let mut d = Dump {
        text: String::new(),
        inos: Vec::new(),
    };
    walk(fs, Fs::ROOT, "", false, &mut d);
    d
}

fn walk(fs: &Fs, ino: u64, path: &str, in_view: bool, d: &mut Dump) {
    let mut children = Vec::new();
    fs.readdir(ino, 2, |child, _, name| {
        children.push((child, String::from_utf8_lossy(name).into_owned()));
        false
    })
    .unwrap_or_else(|e| panic!("readdir {path}/: {e}"));
    for (child, name) in children {
        let p = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}/{name}")
        };
        let attr = fs
            .lookup(ino, name.as_bytes())
            .unwrap_or_else(|e| panic!("lookup {p}: {e}"));
        assert_eq!(attr.ino, child, "{p}: readdir and lookup disagree on the inode");
        d.inos.push(attr.ino);
        // A view's own directory (rootfs/, layers/<n>/) is static; what is below it is not.
        let below_view = in_view || fs.is_view_root(attr.ino);
        let kind = match attr.kind {
            Kind::Dir => 'd',
            Kind::File => '-',
            Kind::Symlink => 'l',
            Kind::CharDev => 'c',
            Kind::BlockDev => 'b',
            Kind::Fifo => 'p',
        };
        let mut line = format!(
            "{p}\t{kind}{:04o}\t{}:{}\tsize={}\tnlink={}",
            attr.perm, attr.uid, attr.gid, attr.size, attr.nlink
        );
        if in_view {
            let secs = attr
                .mtime
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_secs());
            write!(line, "\tmtime={secs}").expect("string");
        }
        match attr.kind {
            Kind::File => {
                write!(line, "\tsha256={}", images::hex(&read_all(fs, attr.ino, attr.size, &p))).expect("string")
            }
            Kind::Symlink => {
                let t = fs.readlink(attr.ino).unwrap_or_else(|e| panic!("readlink {p}: {e}"));
                write!(line, "\t-> {}", String::from_utf8_lossy(&t)).expect("string")
            }
            Kind::CharDev | Kind::BlockDev => write!(line, "\trdev={:#x}", attr.rdev).expect("string"),
            _ => {}
        }
        let mut xattrs = fs.xattrs(attr.ino).unwrap_or_else(|e| panic!("xattrs {p}: {e}"));
        xattrs.sort();
        for (k, v) in xattrs {
            write!(
                line,
                "\txattr {}={}",
                String::from_utf8_lossy(&k),
                images::hex(&v)[..16].to_owned()
            )
            .expect("string");
        }
        d.text.push_str(&line);
        d.text.push('\n');
        if attr.kind == Kind::Dir {
            walk(fs, attr.ino, &p, below_view, d);
        }
    }
}

fn read_all(fs: &Fs, ino: u64, size: u64, p: &str) -> Vec<u8> {
    fs.open(ino).unwrap_or_else(|e| panic!("open {p}: {e}"));
    let mut out = Vec::with_capacity(size as usize);
    loop {
        // 100 KiB reads: not aligned with anything, so they start and end inside chunks.
        let chunk = fs
            .read(ino, out.len() as u64, 100_000)
            .unwrap_or_else(|e| panic!("read {p} at {}: {e}", out.len()));
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    assert_eq!(
        out.len() as u64,
        size,
        "{p}: read {} bytes, stat says {size}",
        out.len()
    );
    out
}

/// Opens `reference` with a cache in `cache_dir`, as `imgfs mount` does.
fn open(reference: &str, cache_dir: &Path) -> Dump {
    let cache = Cache::new(Some(cache_dir.to_path_buf()));
    let tree = imgfs::open_tree(reference, &cache).unwrap_or_else(|e| panic!("opening {reference}: {e}"));
    dump(&Fs::new(tree, cache))
}

/// Opens a source cold and warm: both dumps must be equal, inode numbers included.
fn open_cold_and_warm(reference: &str) -> Dump {
    let cache = tempfile::tempdir().expect("tempdir");
    let cold = open(reference, cache.path());
    assert!(
        std::fs::read_dir(cache.path()).expect("cache dir").next().is_some(),
        "{reference}: the cold open cached nothing"
    );
    let warm = open(reference, cache.path());
    assert_eq!(
        cold.text, warm.text,
        "{reference}: cold and warm cache show different trees"
    );
    assert_eq!(
        cold.inos, warm.inos,
        "{reference}: cold and warm cache number the inodes differently"
    );
    cold
}

/// tests/rootfree/golden, or `$IMGFS_GOLDEN_DIR` (scripts/check.sh hands an unprivileged user a
/// copy it can read wherever the checkout lives).
fn golden_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("IMGFS_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rootfree/golden"));
    dir.join(format!("{name}.txt"))
}

fn check_golden(name: &str, reference: &str, got: &Dump) {
    static WRITTEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let path = golden_path(name);
    if std::env::var_os("IMGFS_UPDATE_GOLDEN").is_some() {
        // The first source of a format writes its golden file; the others are compared with it.
        let mut written = WRITTEN.lock().expect("lock");
        if !written.iter().any(|w| w == name) {
            std::fs::write(&path, &got.text).expect("write golden");
            written.push(name.to_owned());
            return;
        }
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (IMGFS_UPDATE_GOLDEN=1 cargo test --release --test rootfree writes it)",
            path.display()
        )
    });
    if want != got.text {
        let diff: Vec<String> = diff_lines(&want, &got.text);
        panic!(
            "{reference}: tree differs from {} ({} lines differ; if intended: IMGFS_UPDATE_GOLDEN=1 cargo test \
             --release --test rootfree, then review the diff):\n{}",
            path.display(),
            diff.len(),
            diff.join("\n")
        );
    }
}

fn diff_lines(want: &str, got: &str) -> Vec<String> {
    let w: std::collections::BTreeSet<&str> = want.lines().collect();
    let g: std::collections::BTreeSet<&str> = got.lines().collect();
    let mut out: Vec<String> = w.difference(&g).map(|l| format!("- {l}")).collect();
    out.extend(g.difference(&w).map(|l| format!("+ {l}")));
    out.truncate(40);
    out
}

/// The lines of a dump under the first `images/<ref>/rootfs/`, with that prefix cut off.
fn rootfs_of(d: &Dump) -> String {
    let mut first: Option<&str> = None;
    d.text
        .lines()
        .filter_map(|l| {
            let (path, rest) = l.split_once('\t')?;
            let at = path.find("/rootfs/")? + "/rootfs/".len();
            (*first.get_or_insert(&path[..at]) == &path[..at]).then(|| format!("{}\t{rest}\n", &path[at..]))
        })
        .collect()
}

/// A source written as a directory, as a tar, and as gzip- and zstd-compressed tars.
struct Variants {
    _dir: tempfile::TempDir,
    refs: Vec<String>,
}

fn variants(transport: &str, archive_transport: &str, make: impl Fn(&Path)) -> Variants {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("src");
    make(&layout);
    let tar = images::tar_dir(&layout);
    let plain = dir.path().join("image.tar");
    std::fs::write(&plain, &tar).expect("write");
    let gz = dir.path().join("image.tar.gz");
    std::fs::write(&gz, images::gzip(&tar)).expect("write");
    let zst = dir.path().join("image.tar.zst");
    std::fs::write(&zst, zstd::bulk::compress(&tar, 3).expect("zstd")).expect("write");
    let mut refs = vec![format!("{transport}{}", layout.display())];
    for p in [&plain, &gz, &zst] {
        refs.push(format!("{archive_transport}{}", p.display()));
    }
    // The bare path too: the format is found from the content, never from the name.
    refs.push(plain.display().to_string());
    Variants { _dir: dir, refs }
}

/// Checks every variant of one format against one golden file; returns the merged rootfs.
fn check_format(golden: &str, v: &Variants) -> String {
    let mut rootfs = None;
    for r in &v.refs {
        let d = open_cold_and_warm(r);
        check_golden(golden, r, &d);
        rootfs.get_or_insert_with(|| rootfs_of(&d));
    }
    rootfs.expect("at least one variant")
}

#[test]
fn every_format_matches_its_golden_tree_and_all_show_one_rootfs() {
    let mut rootfs: Vec<(String, String)> = Vec::new();
    for comp in [LayerComp::None, LayerComp::Gzip, LayerComp::Zstd] {
        let v = variants("oci:", "oci-archive:", |d| images::oci_layout(d, comp));
        rootfs.push((
            format!("oci-{}", comp.name()),
            check_format(&format!("oci-{}", comp.name()), &v),
        ));
    }
    // (golden name, directory transport, archive transport, writer)
    type Format = (&'static str, &'static str, &'static str, fn(&Path));
    let formats: [Format; 5] = [
        ("docker-archive", "", "docker-archive:", images::docker_archive),
        ("docker-legacy", "", "docker-archive:", images::docker_legacy),
        ("docker25", "oci:", "oci-archive:", images::docker25),
        ("dir", "dir:", "", images::dir_transport),
        ("v1", "", "docker-archive:", images::v1),
    ];
    for (name, transport, archive_transport, make) in formats {
        let v = variants(transport, archive_transport, make);
        rootfs.push((name.to_owned(), check_format(name, &v)));
    }
    let (first_name, first) = &rootfs[0];
    assert!(
        first.lines().count() > 10,
        "{first_name}: rootfs dump too small:\n{first}"
    );
    for (name, r) in &rootfs[1..] {
        assert_eq!(
            r,
            first,
            "{name} shows another rootfs than {first_name}:\n{}",
            diff_lines(first, r).join("\n")
        );
    }
}
