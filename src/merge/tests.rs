//! Table-driven tests of the merge rules, a reference model compared on random layers, and
//! hostile inputs.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::*;
use crate::tarindex::{Entry, EntryKind};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn entry(kind: EntryKind, path: &[u8], link: Option<&[u8]>) -> Entry {
    Entry {
        path: path.to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
        size: 0,
        data_offset: 0,
        stored_size: 0,
        link: link.map(<[u8]>::to_vec),
        dev_major: 0,
        dev_minor: 0,
        xattrs: Vec::new(),
        sparse: None,
        header_offset: 0,
    }
}

/// `"f a/b"`, `"d a"`, `"l a/link -> target"`, `"h a/hl => a/b"`, `"w a/.wh.b"` (a whiteout is
/// just an empty file with a special name), `"c dev"`, `"b dev"`, `"p fifo"`.
pub(super) fn parse(spec: &str) -> Entry {
    let (k, rest) = spec.split_once(' ').unwrap_or((spec, ""));
    let split = |sep: &str| {
        let (p, t) = rest.split_once(sep).unwrap();
        (p.as_bytes(), Some(t.as_bytes()))
    };
    let (kind, (path, link)) = match k {
        "f" | "w" => (EntryKind::File, (rest.as_bytes(), None)),
        "d" => (EntryKind::Dir, (rest.as_bytes(), None)),
        "c" => (EntryKind::CharDev, (rest.as_bytes(), None)),
        "b" => (EntryKind::BlockDev, (rest.as_bytes(), None)),
        "p" => (EntryKind::Fifo, (rest.as_bytes(), None)),
        "l" => (EntryKind::Symlink, split(" -> ")),
        "h" => (EntryKind::Hardlink, split(" => ")),
        _ => panic!("bad spec {spec:?}"),
    };
    entry(kind, path, link)
}

pub(super) fn layer(specs: &[&str]) -> Vec<Entry> {
    specs.iter().map(|s| parse(s)).collect()
}

fn merge_specs(layers: &[&[&str]]) -> (MergedTree, Vec<Warning>) {
    let owned: Vec<Vec<Entry>> = layers.iter().map(|l| layer(l)).collect();
    let refs: Vec<&[Entry]> = owned.iter().map(Vec::as_slice).collect();
    merge(&refs)
}

fn kind_letter(k: InodeKind) -> char {
    match k {
        InodeKind::Dir => 'd',
        InodeKind::File => 'f',
        InodeKind::Symlink => 'l',
        InodeKind::CharDev => 'c',
        InodeKind::BlockDev => 'b',
        InodeKind::Fifo => 'p',
    }
}

/// One line per name, sorted: `"f a/b @1.2"` (`@-` for implicit), `" n2"` appended to
/// non-directories with more than one name; the root is `"d / @..."`.
pub(super) fn dump(tree: &MergedTree) -> Vec<String> {
    let line = |path: &str, ino: u32| {
        let node = &tree.inodes[ino as usize];
        let at = node
            .entry()
            .map_or("-".to_string(), |e| format!("{}.{}", e.layer, e.entry));
        let mut s = format!("{} {path} @{at}", kind_letter(node.kind()));
        if node.kind() != InodeKind::Dir && node.nlink > 1 {
            s += &format!(" n{}", node.nlink);
        }
        s
    };
    let mut out = vec![line("/", 0)];
    let mut stack = vec![(String::new(), 0u32)];
    while let Some((prefix, dir)) = stack.pop() {
        for (name, ino) in tree.children(dir) {
            let path = format!("{prefix}{}", String::from_utf8_lossy(name));
            out.push(line(&path, ino));
            if tree.inodes[ino as usize].kind() == InodeKind::Dir {
                stack.push((format!("{path}/"), ino));
            }
        }
    }
    out.sort();
    out
}

/// Checks that hold for every result: fsck, valid names, and (for merge) no whiteout names.
fn check_invariants(tree: &MergedTree, merged: bool) {
    tree.fsck().unwrap_or_else(|e| panic!("fsck: {e}\n{:#?}", dump(tree)));
    for dir in 0..tree.inodes.len() as u32 {
        for (name, _) in tree.children(dir) {
            assert!(!name.is_empty() && name != b"." && name != b"..");
            assert!(!name.contains(&b'/'));
            if merged {
                assert!(!name.starts_with(b".wh."), "whiteout name {name:?} in output");
            }
        }
    }
}

fn reasons(warnings: &[Warning]) -> Vec<&'static str> {
    warnings.iter().map(|w| w.reason).collect()
}

// ---------------------------------------------------------------------------------------------
// Table of merge cases
// ---------------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    layers: &'static [&'static [&'static str]],
    want: &'static [&'static str],
    warnings: &'static [&'static str],
}

const DOTDOT: &str = "path has a '..' component";
const SYMLINK_PARENT: &str = "parent is a symlink";
const BAD_WH: &str = "whiteout of an empty name, '.' or '..'";

const CASES: &[Case] = &[
    Case {
        name: "whiteout file",
        layers: &[&["f a", "f b"], &["w .wh.a"]],
        want: &["d / @-", "f b @0.1"],
        warnings: &[],
    },
    Case {
        name: "whiteout dir subtree",
        layers: &[&["d a", "f a/x", "d a/y", "f a/y/z", "f b"], &["w .wh.a"]],
        want: &["d / @-", "f b @0.4"],
        warnings: &[],
    },
    Case {
        name: "whiteout in a subdirectory",
        layers: &[&["d a", "f a/x", "f a/y"], &["w ./a/.wh.x"]],
        want: &["d / @-", "d a @0.0", "f a/y @0.2"],
        warnings: &[],
    },
    Case {
        name: "whiteout of an absent name is a no-op",
        layers: &[&["f a"], &["w .wh.b", "w x/y/.wh.z", "w a/.wh.b"]],
        want: &["d / @-", "f a @0.0"],
        warnings: &[],
    },
    Case {
        name: "opaque dir: lower children removed, same-layer children kept in any order",
        layers: &[
            &["d a", "f a/x", "d a/y", "f a/y/z", "f b"],
            &["f a/new", "w a/.wh..wh..opq", "f a/new2"],
        ],
        want: &["d / @-", "d a @0.0", "f a/new @1.0", "f a/new2 @1.2", "f b @0.4"],
        warnings: &[],
    },
    Case {
        name: "opaque dir keeps its metadata unless the layer has a dir entry",
        layers: &[&["d a", "f a/x"], &["w a/.wh..wh..opq"], &["d a", "w a/.wh..wh..opq"]],
        want: &["d / @-", "d a @2.0"],
        warnings: &[],
    },
    Case {
        name: "opaque on an absent dir is a no-op",
        layers: &[&["f b"], &["w a/.wh..wh..opq", "f a/x"]],
        want: &["d / @-", "d a @-", "f a/x @1.1", "f b @0.0"],
        warnings: &[],
    },
    Case {
        name: "opaque root",
        layers: &[&["f a", "d b", "f b/c"], &["w .wh..wh..opq", "f c"]],
        want: &["d / @-", "f c @1.1"],
        warnings: &[],
    },
    Case {
        name: "whiteout and re-add in the same layer (re-add first in the archive)",
        layers: &[&["f a"], &["f a", "w .wh.a"]],
        want: &["d / @-", "f a @1.0"],
        warnings: &[],
    },
    Case {
        name: "whiteout a dir and re-add it empty",
        layers: &[&["d a", "f a/x"], &["w .wh.a", "d a", "f a/y"]],
        want: &["d / @-", "d a @1.1", "f a/y @1.2"],
        warnings: &[],
    },
    Case {
        name: "whiteouts never touch the same layer",
        layers: &[&["f a", "w .wh.a", "d b", "f b/x", "w b/.wh..wh..opq"]],
        want: &["d / @-", "d b @0.2", "f a @0.0", "f b/x @0.3"],
        warnings: &[],
    },
    Case {
        name: "file replaces dir across layers",
        layers: &[&["d a", "f a/x", "d a/y"], &["f a"]],
        want: &["d / @-", "f a @1.0"],
        warnings: &[],
    },
    Case {
        name: "dir replaces file across layers",
        layers: &[&["f a"], &["d a", "f a/x"]],
        want: &["d / @-", "d a @1.0", "f a/x @1.1"],
        warnings: &[],
    },
    Case {
        name: "dir onto dir keeps children, takes metadata",
        layers: &[&["d a", "f a/x"], &["d a/"], &["f a/y"]],
        want: &["d / @-", "d a @1.0", "f a/x @0.1", "f a/y @2.0"],
        warnings: &[],
    },
    Case {
        name: "implicit parents, filled in by a later dir entry",
        layers: &[&["f a/b/c", "d a"]],
        want: &["d / @-", "d a @0.1", "d a/b @-", "f a/b/c @0.0"],
        warnings: &[],
    },
    Case {
        name: "non-dir parent replaced by an implicit dir",
        layers: &[&["f a", "c dev", "p fifo"], &["f a/b", "f dev/x", "f fifo/y"]],
        want: &[
            "d / @-",
            "d a @-",
            "d dev @-",
            "d fifo @-",
            "f a/b @1.0",
            "f dev/x @1.1",
            "f fifo/y @1.2",
        ],
        warnings: &[],
    },
    Case {
        name: "normalization variants",
        layers: &[&["f ./a", "f /b", "d c/", "f c//d", "f c/./e", "f ./c/./f/", "f //g//"]],
        want: &[
            "d / @-",
            "d c @0.2",
            "f a @0.0",
            "f b @0.1",
            "f c/d @0.3",
            "f c/e @0.4",
            "f c/f @0.5",
            "f g @0.6",
        ],
        warnings: &[],
    },
    Case {
        name: "'..' components dropped, never resolved",
        layers: &[&["f b", "f a/../b", "f ../c", "f a/..", "d .."]],
        want: &["d / @-", "f b @0.0"],
        warnings: &[DOTDOT, DOTDOT, DOTDOT, DOTDOT],
    },
    Case {
        name: "root metadata from ./ and /, last wins",
        layers: &[&["d ./", "f a"], &["d /"]],
        want: &["d / @1.0", "f a @0.1"],
        warnings: &[],
    },
    Case {
        name: "non-dir root dropped",
        layers: &[&["d .", "f ./", "l / -> x", "h / => a"]],
        want: &["d / @0.0"],
        warnings: &[
            "non-directory entry for the root",
            "non-directory entry for the root",
            "non-directory entry for the root",
        ],
    },
    Case {
        name: "duplicates in one layer: last wins",
        layers: &[&["f a", "f a", "l a -> x", "d b", "f b/x", "f b"]],
        want: &["d / @-", "f b @0.5", "l a @0.2"],
        warnings: &[],
    },
    Case {
        name: "hardlinks within a layer",
        layers: &[&["f a", "h b => a", "h ./c => /a", "d d", "h d/e => ./a"]],
        want: &[
            "d / @-",
            "d d @0.3",
            "f a @0.0 n4",
            "f b @0.0 n4",
            "f c @0.0 n4",
            "f d/e @0.0 n4",
        ],
        warnings: &[],
    },
    Case {
        name: "hardlink to a lower layer",
        layers: &[&["d x", "f x/a"], &["h b => x/a"]],
        want: &["d / @-", "d x @0.0", "f b @0.1 n2", "f x/a @0.1 n2"],
        warnings: &[],
    },
    Case {
        name: "hardlink to a symlink, device and fifo",
        layers: &[&["l s -> t", "c c", "p p", "h s2 => s", "h c2 => c", "h p2 => p"]],
        want: &[
            "c c @0.1 n2",
            "c c2 @0.1 n2",
            "d / @-",
            "l s @0.0 n2",
            "l s2 @0.0 n2",
            "p p @0.2 n2",
            "p p2 @0.2 n2",
        ],
        warnings: &[],
    },
    Case {
        name: "hardlink chain",
        layers: &[&["f a", "h b => a", "h c => b", "h d => c"]],
        want: &["d / @-", "f a @0.0 n4", "f b @0.0 n4", "f c @0.0 n4", "f d @0.0 n4"],
        warnings: &[],
    },
    Case {
        name: "hardlink target replaced later: other name keeps the old inode",
        layers: &[&["f a", "h b => a", "f a"], &["d b"]],
        want: &["d / @-", "d b @1.0", "f a @0.2"],
        warnings: &[],
    },
    Case {
        name: "hardlink target replaced in an upper layer",
        layers: &[&["f a", "h b => a"], &["f a"]],
        want: &["d / @-", "f a @1.0", "f b @0.0"],
        warnings: &[],
    },
    Case {
        name: "hardlink target whited out: other name keeps the inode",
        layers: &[&["f a", "h b => a", "h c => a"], &["w .wh.a"]],
        want: &["d / @-", "f b @0.0 n2", "f c @0.0 n2"],
        warnings: &[],
    },
    Case {
        name: "hardlink to absent, later, dir, '..', whited-out targets dropped",
        layers: &[
            &["h b => a", "f a", "d d", "h e => d", "h f => x/../a", "h g => /", "f w"],
            &["w .wh.w", "h w2 => w", "h i => .wh.w"],
        ],
        want: &["d / @-", "d d @0.2", "f a @0.1"],
        warnings: &[
            "hardlink target does not exist",
            "hardlink target is a directory",
            "hardlink target has a '..' component",
            "hardlink target is a directory",
            "hardlink target does not exist",
            "hardlink target does not exist",
        ],
    },
    Case {
        name: "dropped hardlink creates no parents",
        layers: &[&["h x/y/z => nowhere"]],
        want: &["d / @-"],
        warnings: &["hardlink target does not exist"],
    },
    Case {
        name: "hardlink onto its own target is harmless",
        layers: &[&["f a", "h a => a"]],
        want: &["d / @-", "f a @0.0"],
        warnings: &[],
    },
    Case {
        name: "hardlink name replaces a dir",
        layers: &[&["d a", "f a/x", "f f"], &["h a => f"]],
        want: &["d / @-", "f a @0.2 n2", "f f @0.2 n2"],
        warnings: &[],
    },
    Case {
        name: "entry under a symlink parent dropped (never followed)",
        layers: &[
            &["d etc", "l s -> etc", "l abs -> /etc", "f s/passwd"],
            &["f abs/x/y", "d s/d"],
        ],
        want: &["d / @-", "d etc @0.0", "l abs @0.2", "l s @0.1"],
        warnings: &[SYMLINK_PARENT, SYMLINK_PARENT, SYMLINK_PARENT],
    },
    Case {
        name: "whiteout through a symlink is a no-op",
        layers: &[&["d d", "f d/x", "l s -> d"], &["w s/.wh.x", "w s/.wh..wh..opq"]],
        want: &["d / @-", "d d @0.0", "f d/x @0.1", "l s @0.2"],
        warnings: &[],
    },
    Case {
        name: "whiteout of '.', '..' and empty name dropped",
        layers: &[&["d a", "f a/x"], &["w .wh..", "w .wh...", "w a/.wh.", "w a/.wh.."]],
        want: &["d / @-", "d a @0.0", "f a/x @0.1"],
        warnings: &[BAD_WH, BAD_WH, BAD_WH, BAD_WH],
    },
    Case {
        name: "aufs metadata dropped silently",
        layers: &[
            &["f a", "f .wh.b"],
            &[
                "d .wh..wh.plnk",
                "f .wh..wh.plnk/123.456",
                "f .wh..wh.aufs",
                "d x/.wh..wh.orph",
            ],
        ],
        want: &["d / @-", "f a @0.0"],
        warnings: &[],
    },
    Case {
        name: "whiteout name used as a parent dropped",
        layers: &[&["f .wh.a/b", "d x/.wh.y/z"]],
        want: &["d / @-"],
        warnings: &[
            "whiteout name used as a parent directory",
            "whiteout name used as a parent directory",
        ],
    },
    Case {
        name: "whiteout recognized by name whatever the kind",
        layers: &[&["f a", "f b"], &["d .wh.a", "l .wh.b -> x"]],
        want: &["d / @-"],
        warnings: &[],
    },
    Case {
        name: "symlinks kept verbatim, devices and fifos",
        layers: &[&["l a -> ../../etc/passwd", "l b -> /abs", "c tty", "b sda", "p fifo"]],
        want: &[
            "b sda @0.3",
            "c tty @0.2",
            "d / @-",
            "l a @0.0",
            "l b @0.1",
            "p fifo @0.4",
        ],
        warnings: &[],
    },
    Case {
        name: "symlink without target dropped",
        layers: &[&["l a -> "]],
        want: &["d / @-"],
        warnings: &["symlink without a target"],
    },
    Case {
        name: "kinds change across layers",
        layers: &[
            &["d x", "f x/y"],
            &["f x"],
            &["l x -> y"],
            &["d x", "d x/z"],
            &["c x"],
            &["d x/q"],
        ],
        want: &["d / @-", "d x @-", "d x/q @5.0"],
        warnings: &[],
    },
];

#[test]
fn merge_cases() {
    for case in CASES {
        let (tree, warnings) = merge_specs(case.layers);
        check_invariants(&tree, true);
        assert_eq!(dump(&tree), case.want, "case {:?}", case.name);
        assert_eq!(reasons(&warnings), case.warnings, "case {:?}", case.name);
        let owned: Vec<Vec<Entry>> = case.layers.iter().map(|l| layer(l)).collect();
        model_check(&owned, true);
    }
}

#[test]
fn symlink_target_kept_verbatim() {
    let entries = layer(&["l a -> ../x//./y/"]);
    let (tree, _) = merge(&[&entries]);
    let ino = tree.lookup(b"a").unwrap();
    let at = tree.inodes[ino as usize].entry().unwrap();
    assert_eq!(entries[at.entry as usize].link.as_deref(), Some(&b"../x//./y/"[..]));
}

#[test]
fn hardlink_shares_the_inode_and_parent_is_first_name() {
    let (tree, _) = merge_specs(&[&["d z", "f z/a", "h b => z/a", "h z/c => z/a"]]);
    let a = tree.lookup(b"z/a").unwrap();
    assert_eq!(tree.lookup(b"b"), Some(a));
    assert_eq!(tree.lookup(b"/z/c/"), Some(a));
    let node = &tree.inodes[a as usize];
    assert_eq!(node.nlink, 3);
    // Breadth-first: root's "b" is reached before "z/a".
    assert_eq!(node.parent, 0);
}

#[test]
fn dir_nlink_and_parents() {
    let (tree, _) = merge_specs(&[&["d a", "d a/b", "d a/c", "f a/f", "d a/b/d"]]);
    let a = tree.lookup(b"a").unwrap();
    let b = tree.lookup(b"a/b").unwrap();
    assert_eq!(tree.inodes[0].nlink, 3);
    assert_eq!(tree.inodes[a as usize].nlink, 4);
    assert_eq!(tree.inodes[b as usize].nlink, 3);
    assert_eq!(tree.inodes[b as usize].parent, a);
    assert_eq!(tree.inodes[a as usize].parent, 0);
}

#[test]
fn numbering_is_breadth_first_in_name_order() {
    let (tree, _) = merge_specs(&[&["f z/1", "f b", "d a", "f a/x", "f c/y/z"]]);
    let order: Vec<u32> = ["", "a", "b", "c", "z", "a/x", "c/y", "z/1", "c/y/z"]
        .iter()
        .map(|p| tree.lookup(p.as_bytes()).unwrap())
        .collect();
    assert_eq!(order, (0..9).collect::<Vec<u32>>());
}

#[test]
fn deterministic() {
    for case in CASES {
        let (t1, w1) = merge_specs(case.layers);
        let (t2, w2) = merge_specs(case.layers);
        assert_eq!(t1, t2, "case {:?}", case.name);
        assert_eq!(w1, w2);
    }
    // Same tree reached through different archive orders numbers the same.
    let (t1, _) = merge_specs(&[&["f c", "f a/x", "f b", "f a/y"]]);
    let (t2, _) = merge_specs(&[&["f a/y", "f b", "f a/x", "f c"]]);
    let strip = |t: &MergedTree| {
        (0u32..)
            .zip(t.inodes.iter())
            .map(|(n, i)| {
                let kids: Vec<(Vec<u8>, u32)> = t.children(n).map(|(k, c)| (k.to_vec(), c)).collect();
                (i.kind(), i.nlink, i.parent, kids)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&t1), strip(&t2));
}

#[test]
fn lookup() {
    let (tree, _) = merge_specs(&[&["d a", "f a/b", "l s -> a"]]);
    assert_eq!(tree.lookup(b""), Some(0));
    assert_eq!(tree.lookup(b"/"), Some(0));
    assert_eq!(tree.lookup(b"./a//b"), tree.lookup(b"a/b"));
    assert!(tree.lookup(b"a/b").is_some());
    assert_eq!(tree.lookup(b"a/../a"), None);
    assert_eq!(tree.lookup(b"s/b"), None, "lookup does not follow symlinks");
    assert_eq!(tree.lookup(b"a/b/c"), None);
    assert_eq!(tree.lookup(b"nope"), None);
}

#[test]
fn layer_tree_keeps_whiteouts() {
    let entries = layer(&[
        "f a",
        "w .wh.a",
        "w b/.wh..wh..opq",
        "d .wh..wh.plnk",
        "f .wh..wh.plnk/1.2",
        "w .wh.b/c",
        "h hl => lower/file",
        "f x/../y",
    ]);
    let (tree, warnings) = layer_tree(&entries);
    check_invariants(&tree, false);
    assert_eq!(
        dump(&tree),
        [
            "d .wh..wh.plnk @0.3",
            "d .wh.b @-",
            "d / @-",
            "d b @-",
            "f .wh..wh.plnk/1.2 @0.4",
            "f .wh.a @0.1",
            "f .wh.b/c @0.5",
            "f a @0.0",
            "f b/.wh..wh..opq @0.2",
        ]
    );
    assert_eq!(reasons(&warnings), ["hardlink target does not exist", DOTDOT]);
    model_check(&[entries], false);
}

#[test]
fn layer_tree_equals_single_layer_merge_without_whiteouts() {
    let specs = ["d a", "f a/x", "h a/y => a/x", "l a/s -> x", "f a", "d a", "f a/z"];
    let entries = layer(&specs);
    assert_eq!(layer_tree(&entries).0, merge(&[&entries]).0);
}

#[test]
fn warning_display_is_one_escaped_line() {
    let w = Warning {
        layer: 3,
        path: b"a/\xff\nb\"c".to_vec(),
        reason: "path has a '..' component",
    };
    let s = w.to_string();
    assert_eq!(s, "layer 3: \"a/\u{fffd}\\nb\\\"c\": path has a '..' component");
    assert!(!s.contains('\n'));
}

#[test]
fn empty_inputs() {
    let (tree, warnings) = merge::<[Entry]>(&[]);
    check_invariants(&tree, true);
    assert_eq!(dump(&tree), ["d / @-"]);
    assert!(warnings.is_empty());
    let (tree, _) = layer_tree::<[Entry]>(&[]);
    assert_eq!(tree.inodes.len(), 1);
    assert!(MergedTree::default().fsck().is_err());
}

#[test]
fn fsck_catches_corruption() {
    let (good, _) = merge_specs(&[&["d a", "f a/x", "f b", "h c => b"]]);
    good.fsck().unwrap();
    type Corrupt = fn(&mut MergedTree);
    let corruptions: &[(&str, Corrupt)] = &[
        ("nlink", |t| t.inodes[1].nlink += 1),
        ("order", |t| t.dirents.swap(0, 1)),
        ("name", |t| {
            let at = t.dirents[0].name as usize;
            t.names.to_mut()[at + 1] = b'/';
        }),
        ("name length", |t| {
            let at = t.dirents[0].name as usize;
            t.names.to_mut()[at] = 0;
        }),
        ("name past the arena", |t| t.dirents[0].name = u32::MAX - 1),
        ("run past the names", |t| t.inodes[0].child_count = 99),
        ("range", |t| t.dirents[0].ino = 99),
        ("children on a file", |t| {
            let b = t.lookup(b"b").unwrap();
            t.inodes[b as usize].child_count = 1;
        }),
        ("root kind", |t| t.inodes[0].kind = InodeKind::File),
        ("unreachable", |t| {
            let copy = t.inodes[2];
            t.inodes.push(copy);
        }),
        ("dir twice", |t| {
            // The root's names are the first run; give it one more name for `a`.
            let a = t.dirents[0];
            t.names.to_mut().extend_from_slice(b"\x01z");
            let z = (t.names.len() - 2) as u32;
            let n = t.inodes[0].child_count as usize;
            t.dirents.insert(n, super::Dirent { name: z, ino: a.ino });
            t.inodes[0].child_count += 1;
            for i in &mut t.inodes[1..] {
                if i.child_count > 0 {
                    i.first_child += 1;
                }
            }
        }),
        ("parent", |t| {
            let x = t.lookup(b"a/x").unwrap();
            t.inodes[x as usize].parent = 0;
        }),
    ];
    for (name, corrupt) in corruptions {
        let mut t = good.clone();
        corrupt(&mut t);
        assert!(t.fsck().is_err(), "{name} not caught");
    }
}

// ---------------------------------------------------------------------------------------------
// Reference model: a flat map from full path to node, written independently of the arena, with
// O(n) prefix scans. Compared with the real merge on the table cases and on random layers.
// ---------------------------------------------------------------------------------------------

type MPath = Vec<Vec<u8>>;

#[derive(Clone, Copy)]
struct MNode {
    kind: InodeKind,
    entry: Option<EntryRef>,
    id: u64,
}

#[derive(Default)]
struct Model {
    root: Option<EntryRef>,
    map: BTreeMap<MPath, MNode>,
    next_id: u64,
}

fn mnorm(p: &[u8]) -> Option<MPath> {
    let v = path::normalize(p).ok()?;
    Some(v.iter().map(|c| c.to_vec()).collect())
}

impl Model {
    fn remove_tree(&mut self, p: &MPath) {
        self.map.retain(|k, _| !k.starts_with(p));
    }

    fn fresh(&mut self, kind: InodeKind, entry: Option<EntryRef>) -> MNode {
        self.next_id += 1;
        MNode {
            kind,
            entry,
            id: self.next_id,
        }
    }

    fn whiteout(&mut self, e: &Entry) {
        let Some(p) = mnorm(&e.path) else { return };
        let Some((last, parents)) = p.split_last() else {
            return;
        };
        if parents.iter().any(|c| c.starts_with(b".wh.")) {
            return;
        }
        let parents = parents.to_vec();
        if last == b".wh..wh..opq" {
            let is_dir = parents.is_empty() || self.map.get(&parents).is_some_and(|n| n.kind == InodeKind::Dir);
            if is_dir {
                self.map
                    .retain(|k, _| !(k.len() > parents.len() && k.starts_with(&parents)));
            }
        } else if let Some(t) = last.strip_prefix(b".wh.") {
            if !t.starts_with(b".wh.") && !matches!(t, b"" | b"." | b"..") {
                let mut target = parents;
                target.push(t.to_vec());
                self.remove_tree(&target);
            }
        }
    }

    fn add(&mut self, at: EntryRef, e: &Entry, whiteouts: bool) {
        let Some(p) = mnorm(&e.path) else { return };
        if whiteouts && p.iter().any(|c| c.starts_with(b".wh.")) || p.iter().any(|c| c.len() > 255) {
            return;
        }
        if p.is_empty() {
            if e.kind == EntryKind::Dir {
                self.root = Some(at);
            }
            return;
        }
        let node = match e.kind {
            EntryKind::Hardlink => {
                let target = e.link.as_deref().and_then(mnorm);
                match target.and_then(|t| self.map.get(&t).copied()) {
                    Some(n) if n.kind != InodeKind::Dir => n,
                    _ => return,
                }
            }
            EntryKind::Symlink if e.link.as_deref().is_none_or(|l| l.is_empty()) => return,
            k => {
                let kind = match k {
                    EntryKind::Dir => InodeKind::Dir,
                    EntryKind::File => InodeKind::File,
                    EntryKind::Symlink => InodeKind::Symlink,
                    EntryKind::CharDev => InodeKind::CharDev,
                    EntryKind::BlockDev => InodeKind::BlockDev,
                    _ => InodeKind::Fifo,
                };
                self.fresh(kind, Some(at))
            }
        };
        // First existing non-directory prefix: a symlink drops the entry.
        for i in 1..p.len() {
            match self.map.get(&p[..i]) {
                Some(n) if n.kind == InodeKind::Symlink => return,
                Some(n) if n.kind == InodeKind::Dir => continue,
                _ => break,
            }
        }
        for i in 1..p.len() {
            let pre = p[..i].to_vec();
            if self.map.get(&pre).is_none_or(|n| n.kind != InodeKind::Dir) {
                self.remove_tree(&pre);
                let d = self.fresh(InodeKind::Dir, None);
                self.map.insert(pre, d);
            }
        }
        if node.kind == InodeKind::Dir {
            if let Some(old) = self.map.get_mut(&p).filter(|n| n.kind == InodeKind::Dir) {
                old.entry = Some(at);
                return;
            }
        }
        self.remove_tree(&p);
        self.map.insert(p, node);
    }
}

/// Runs the model on `layers` and asserts the real result has exactly the same names, kinds,
/// entries and hardlink sharing.
fn model_check(layers: &[Vec<Entry>], whiteouts: bool) {
    let mut m = Model::default();
    for (li, entries) in layers.iter().enumerate() {
        if whiteouts {
            entries.iter().for_each(|e| m.whiteout(e));
        }
        for (ei, e) in entries.iter().enumerate() {
            let at = EntryRef {
                layer: li as u32,
                entry: ei as u32,
            };
            m.add(at, e, whiteouts);
        }
    }
    let tree = if whiteouts {
        let refs: Vec<&[Entry]> = layers.iter().map(Vec::as_slice).collect();
        merge(&refs).0
    } else {
        layer_tree(&layers[0]).0
    };
    check_invariants(&tree, whiteouts);
    assert_eq!(tree.inodes[0].entry(), m.root);
    let names: usize = (0..tree.inodes.len() as u32).map(|d| tree.child_count(d)).sum();
    assert_eq!(names, m.map.len(), "name count; tree {:#?}", dump(&tree));
    let mut ids: HashMap<u64, u32> = HashMap::new();
    let mut inos: HashMap<u32, u64> = HashMap::new();
    for (p, n) in &m.map {
        let ino = tree.lookup(&p.join(&b'/')).unwrap_or_else(|| panic!("missing {p:?}"));
        let node = &tree.inodes[ino as usize];
        assert_eq!((node.kind(), node.entry()), (n.kind, n.entry), "at {p:?}");
        assert_eq!(*ids.entry(n.id).or_insert(ino), ino, "sharing at {p:?}");
        assert_eq!(*inos.entry(ino).or_insert(n.id), n.id, "sharing at {p:?}");
    }
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn random_path(rng: &mut Rng) -> String {
    const NAMES: &[&str] = &["a", "b", "c", "a", "b", "c", "."];
    const WHITEOUTS: &[&str] = &[
        ".wh.a",
        ".wh.b",
        ".wh.c",
        ".wh..wh..opq",
        ".wh..wh.plnk",
        ".wh.",
        ".wh..",
    ];
    const PREFIXES: &[&str] = &["", "", "./", "/"];
    let depth = 1 + rng.next() % 3;
    let mut s = rng.pick(PREFIXES).to_string();
    for i in 0..depth {
        if i > 0 {
            s.push_str(rng.pick(&["/", "/", "//"]));
        }
        // Whiteout names only last, where they mean something; '..' rarely anywhere.
        let name = match rng.next() % 20 {
            0 => "..",
            1..=6 if i + 1 == depth => rng.pick(WHITEOUTS),
            7 => rng.pick(&[".wh.a", ".wh..wh.plnk"]),
            _ => rng.pick(NAMES),
        };
        s.push_str(name);
    }
    if rng.next() % 5 == 0 {
        s.push('/');
    }
    s
}

/// A random entry; hardlink targets mostly reuse a path generated earlier (`seen`), so many
/// of them resolve.
fn random_entry(rng: &mut Rng, seen: &mut Vec<String>) -> Entry {
    let path = random_path(rng);
    let kind = rng.pick(&["f", "f", "d", "d", "d", "l", "h", "h", "c", "p"]);
    let spec = match kind {
        "l" => format!("l {path} -> {}", rng.pick(&["a", "/b", "../c", ""])),
        "h" if !seen.is_empty() && rng.next() % 5 != 0 => {
            let target = &seen[(rng.next() % seen.len() as u64) as usize];
            format!("h {path} => {target}")
        }
        "h" => format!("h {path} => {}", random_path(rng)),
        k => format!("{k} {path}"),
    };
    if kind != "d" {
        seen.push(path);
    }
    parse(&spec)
}

/// One to four random layers of up to 24 entries each.
pub(super) fn random_layers(rng: &mut Rng) -> Vec<Vec<Entry>> {
    let mut seen = Vec::new();
    (0..1 + rng.next() % 4)
        .map(|_| (0..rng.next() % 25).map(|_| random_entry(rng, &mut seen)).collect())
        .collect()
}

#[test]
fn random_layers_match_the_model() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut shared = 0;
    for _ in 0..3000 {
        let layers = random_layers(&mut rng);
        model_check(&layers, true);
        model_check(&layers[..1], false);
        let refs: Vec<&[Entry]> = layers.iter().map(Vec::as_slice).collect();
        let (tree, _) = merge(&refs);
        assert_eq!(tree, merge(&refs).0);
        shared += tree
            .inodes
            .iter()
            .filter(|i| i.kind() != InodeKind::Dir && i.nlink > 1)
            .count();
    }
    // The generator must actually exercise hardlink sharing in the final trees (most hardlinks
    // resolve, but small name sets make later entries overwrite many of them).
    assert!(shared > 100, "only {shared} shared inodes");
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

#[test]
fn hostile_deep_paths() {
    for depth in [1000usize, 3000] {
        let deep = vec!["d"; depth].join("/");
        let l0 = vec![parse(&format!("f {deep}/f")), parse(&format!("h {deep}/g => {deep}/f"))];
        // Replacing the top of the chain releases the whole subtree iteratively.
        let l1 = vec![parse("f d")];
        let (tree, warnings) = merge(&[&l0]);
        assert!(warnings.is_empty());
        check_invariants(&tree, true);
        assert_eq!(tree.inodes.len(), depth + 2);
        let f = tree.lookup(format!("{deep}/f").as_bytes()).unwrap();
        assert_eq!(tree.inodes[f as usize].nlink, 2);
        let (tree, _) = merge(&[&l0, &l1]);
        check_invariants(&tree, true);
        assert_eq!(tree.inodes.len(), 2);
        let (tree, _) = merge::<[Entry]>(&[&l0, &[parse("w .wh.d")]]);
        assert_eq!(tree.inodes.len(), 1);
        let (tree, _) = merge::<[Entry]>(&[&l0, &[parse("w .wh..wh..opq")]]);
        assert_eq!(tree.inodes.len(), 1);
    }
}

#[test]
fn hostile_wide_directory() {
    const N: u64 = 100_000;
    let mut rng = Rng(42);
    let mut entries: Vec<Entry> = (0..N).map(|i| parse(&format!("f dir/file{i:x}"))).collect();
    // Shuffle so insertion order is not already sorted.
    for i in (1..entries.len()).rev() {
        entries.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let upper: Vec<Entry> = (0..N / 2)
        .map(|i| parse(&format!("w dir/.wh.file{:x}", i * 2)))
        .collect();
    let start = Instant::now();
    let (tree, warnings) = merge(&[&entries]);
    let one = start.elapsed();
    let start = Instant::now();
    let (tree2, _) = merge(&[&entries, &upper]);
    let two = start.elapsed();
    eprintln!("100k files in one dir: merge {one:?}; with 50k whiteouts on top {two:?}");
    assert!(warnings.is_empty());
    check_invariants(&tree, true);
    let dir = tree.lookup(b"dir").unwrap();
    assert_eq!(tree.child_count(dir), N as usize);
    // readdir resumes at any offset without walking the names before it.
    let last = tree.children(dir).last().unwrap();
    assert_eq!(tree.children_from(dir, N as usize - 1).collect::<Vec<_>>(), [last]);
    assert_eq!(tree.children_from(dir, N as usize + 5).count(), 0);
    assert!(tree.lookup(b"dir/file1869f").is_some());
    check_invariants(&tree2, true);
    let dir = tree2.lookup(b"dir").unwrap();
    assert_eq!(tree2.child_count(dir), N as usize / 2);
    // A complexity guard, not a speed figure (those are in scripts/bench): merging is
    // ~0.1 s here, and a quadratic directory would take minutes, so only that can fail this on a
    // busy machine (a 1 s bound did, once, under full load).
    if !cfg!(debug_assertions) {
        assert!(
            one.as_secs_f64() < 20.0,
            "100k entries in one directory took {one:?}: quadratic?"
        );
    }
}

#[test]
fn hostile_hardlink_chain() {
    const N: usize = 10_000;
    let mut entries = vec![parse("f d/h0")];
    entries.extend((1..=N).map(|i| parse(&format!("h d/h{i} => d/h{}", i - 1))));
    let (tree, warnings) = merge(&[&entries]);
    assert!(warnings.is_empty());
    check_invariants(&tree, true);
    let ino = tree.lookup(b"d/h0").unwrap();
    assert_eq!(tree.lookup(format!("d/h{N}").as_bytes()), Some(ino));
    assert_eq!(tree.inodes[ino as usize].nlink, N as u32 + 1);
    assert_eq!(tree.inodes.len(), 3);
    // Whiting out every other name leaves the rest on the same inode.
    let upper: Vec<Entry> = (0..=N).step_by(2).map(|i| parse(&format!("w d/.wh.h{i}"))).collect();
    let (tree, _) = merge(&[&entries, &upper]);
    check_invariants(&tree, true);
    let ino = tree.lookup(b"d/h1").unwrap();
    assert_eq!(tree.inodes[ino as usize].nlink, (N / 2) as u32);
}

#[test]
fn hostile_long_and_odd_names() {
    let long = vec!["x".repeat(255); 20].join("/"); // 5119 bytes
    let mut entries = vec![
        parse(&format!("f {long}")),
        parse(&format!("f a/{}", "y".repeat(256))),
        parse(&format!("h b => {}", "y".repeat(256))),
        entry(EntryKind::File, b"\xff\xfe/\x80", None),
        entry(EntryKind::File, b"nul\0name", None),
        entry(EntryKind::Dir, b"caf\xc3\xa9/", None),
    ];
    entries.push(entry(EntryKind::Hardlink, b"hl", Some(b"\xff\xfe/\x80")));
    entries.push(entry(EntryKind::Hardlink, b"hl2", None));
    let (tree, warnings) = merge(&[&entries]);
    check_invariants(&tree, true);
    assert!(tree.lookup(long.as_bytes()).is_some());
    assert_eq!(tree.lookup(b"\xff\xfe/\x80"), tree.lookup(b"hl"));
    assert!(tree.lookup("café".as_bytes()).is_some());
    assert_eq!(
        reasons(&warnings),
        [
            "path has a component longer than 255 bytes",
            "hardlink target does not exist",
            "path contains a NUL byte",
            "hardlink without a target",
        ]
    );
    for w in &warnings {
        assert!(!w.to_string().contains('\n'));
    }
}

#[test]
fn whiteout_of_a_255_byte_name() {
    let long = "y".repeat(255);
    let l0 = layer(&[&format!("f {long}"), &format!("f a/{long}"), "f a/b"]);
    let l1 = layer(&[&format!("w .wh.{long}"), &format!("w a/.wh.{long}")]);
    let (tree, warnings) = merge(&[&l0, &l1]);
    assert!(warnings.is_empty());
    assert_eq!(dump(&tree), ["d / @-", "d a @-", "f a/b @0.2"]);
    // layer_tree cannot show a 259-byte name.
    let (tree, warnings) = layer_tree(&l1);
    assert_eq!(dump(&tree), ["d / @-"]);
    assert_eq!(warnings.len(), 2);
}

#[test]
fn hostile_kind_changes() {
    let mut rng = Rng(7);
    let kinds = [
        "d x", "f x", "l x -> y", "h x => z", "c x", "d x/y", "f x/y/z", "w .wh.x",
    ];
    let layers: Vec<Vec<Entry>> = (0..4)
        .map(|_| {
            let mut l = vec![parse("f z")];
            l.extend((0..5000).map(|_| parse(rng.pick(&kinds))));
            l
        })
        .collect();
    let refs: Vec<&[Entry]> = layers.iter().map(Vec::as_slice).collect();
    let (tree, _) = merge(&refs);
    check_invariants(&tree, true);
    model_check(&layers, true);
}

#[test]
fn hostile_warning_flood_is_capped() {
    let entries: Vec<Entry> = (0..20_000).map(|_| parse("f ../x")).collect();
    let (_, warnings) = merge(&[&entries, &entries]);
    assert_eq!(warnings.len(), 10_001);
    assert_eq!(
        warnings[10_000].reason,
        "too many warnings; further warnings suppressed"
    );
    let long = entry(EntryKind::File, &[b'x'; 100_000], None);
    let (_, warnings) = merge::<[Entry]>(&[&[long]]);
    assert_eq!(warnings[0].path.len(), 4096);
}
