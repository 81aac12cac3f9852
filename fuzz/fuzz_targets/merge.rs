//! Layer merge (`imgfs::merge::merge` and `layer_tree`) over tar entries built from fuzz data.
//!
//! Paths are made of components drawn mostly from a small set (so that entries collide, whiteouts
//! hit their targets and hardlinks find theirs), with raw bytes as an escape hatch.
//!
//! Invariants, for `merge` of all layers and `layer_tree` of each layer: `MergedTree::fsck` is Ok;
//! a walk from the root with `MergedTree::children` (each directory once) only yields names that
//! are non-empty, not `.` or `..`, without '/' or NUL, at most 255 bytes, and (for `merge`) never
//! starting with `.wh.`; every inode is reached; merging is deterministic.

#![no_main]

use arbitrary::Arbitrary;
use imgfs::merge::{layer_tree, merge, InodeKind, MergedTree};
use imgfs::tarindex::{Entry, EntryKind};
use libfuzzer_sys::fuzz_target;

/// Components paths are built from (index by a fuzz byte; past the end: raw bytes).
const COMPONENTS: &[&[u8]] = &[
    b"a",
    b"b",
    b"c",
    b"dir",
    b".",
    b"..",
    b"",
    b".wh.a",
    b".wh.b",
    b".wh.dir",
    b".wh..wh..opq",
    b".wh..wh.plnk",
    b".wh.",
    b".wh..",
    b".wh...",
    b"x\0y",
    b"\xff\xfe",
];

#[derive(Arbitrary, Debug)]
struct PathSpec {
    /// 0: none, 1: "/", 2: "./", 3: "//".
    lead: u8,
    comps: Vec<Comp>,
    trailing_slash: bool,
}

#[derive(Arbitrary, Debug)]
enum Comp {
    Known(u8),
    Raw(Vec<u8>),
    /// A component of this many 'n' bytes (around NAME_MAX).
    Long(u8),
}

#[derive(Arbitrary, Debug)]
struct Member {
    path: PathSpec,
    kind: u8,
    link: Option<PathSpec>,
}

fn bytes(p: &PathSpec) -> Vec<u8> {
    let mut out: Vec<u8> = match p.lead % 4 {
        0 => vec![],
        1 => b"/".to_vec(),
        2 => b"./".to_vec(),
        _ => b"//".to_vec(),
    };
    for (i, c) in p.comps.iter().take(12).enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        match c {
            Comp::Known(k) => out.extend_from_slice(COMPONENTS[*k as usize % COMPONENTS.len()]),
            Comp::Raw(r) => out.extend_from_slice(&r[..r.len().min(300)]),
            Comp::Long(n) => out.extend(std::iter::repeat_n(b'n', 200 + *n as usize % 70)),
        }
    }
    if p.trailing_slash {
        out.push(b'/');
    }
    out
}

fn entry(m: &Member) -> Entry {
    let kind = match m.kind % 8 {
        0 | 7 => EntryKind::File,
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        3 => EntryKind::Hardlink,
        4 => EntryKind::CharDev,
        5 => EntryKind::BlockDev,
        _ => EntryKind::Fifo,
    };
    Entry {
        path: bytes(&m.path),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
        size: 0,
        data_offset: 512,
        stored_size: 0,
        link: m.link.as_ref().map(bytes),
        dev_major: 0,
        dev_minor: 0,
        xattrs: vec![],
        sparse: None,
        header_offset: 0,
    }
}

fuzz_target!(|layers: Vec<Vec<Member>>| {
    let layers: Vec<Vec<Entry>> = layers
        .iter()
        .take(6)
        .map(|l| l.iter().take(64).map(entry).collect())
        .collect();
    let refs: Vec<&Vec<Entry>> = layers.iter().collect();
    let (tree, _warnings) = merge(&refs);
    check(&tree, true);
    let (again, _) = merge(&refs);
    assert_eq!(tree, again, "merge is not deterministic");
    for l in &layers {
        let (tree, _) = layer_tree(l);
        check(&tree, false);
    }
});

fn check(tree: &MergedTree, merged: bool) {
    if let Err(e) = tree.fsck() {
        panic!("fsck: {e}");
    }
    let n = tree.inodes().len();
    let mut seen = vec![false; n];
    seen[0] = true;
    let mut dirs = vec![0u32];
    while let Some(dir) = dirs.pop() {
        for (name, ino) in tree.children(dir) {
            let shown = String::from_utf8_lossy(name);
            assert!(!name.is_empty() && name != b"." && name != b"..", "bad name {shown:?}");
            assert!(!name.contains(&b'/') && !name.contains(&0), "bad name {shown:?}");
            assert!(name.len() <= 255, "name over NAME_MAX: {} bytes", name.len());
            if merged {
                assert!(!name.starts_with(b".wh."), "whiteout {shown:?} in a merged tree");
            }
            let i = ino as usize;
            assert!(i < n, "child {ino} out of range");
            let is_dir = tree.inodes()[i].kind() == InodeKind::Dir;
            if is_dir {
                assert!(!seen[i], "directory {ino} reached twice");
                dirs.push(ino);
            }
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "unreachable inodes");
}
