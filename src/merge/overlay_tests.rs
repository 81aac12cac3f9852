//! Overlay-ready layers: a model of kernel overlayfs's lookup rules stacks the trees of
//! `overlay_layer` and must show exactly what `merge` shows, on table cases and random layers.

use std::collections::{BTreeMap, BTreeSet};

use super::overlay::{overlay_layer, OverlayTree};
use super::tests::{dump, layer, random_layers, Rng};
use super::*;
use crate::tarindex::Entry;

/// What a path shows: kind, the entry giving its metadata, and an identity (for hardlink groups).
type Shown = BTreeMap<String, (InodeKind, Option<EntryRef>, (usize, u32))>;

fn is_whiteout(t: &OverlayTree, i: u32) -> bool {
    let n = &t.tree.inodes()[i as usize];
    n.kind() == InodeKind::CharDev && n.entry().is_none()
}

/// overlayfs over `trees` (bottom first): a name is taken from the topmost layer of the merged
/// directory that has it; a whiteout hides it; a directory merges with the same name in lower
/// layers down to the first non-directory or whiteout, or to itself if opaque.
fn stack(trees: &[OverlayTree]) -> Shown {
    let mut out = Shown::new();
    let root: Vec<(usize, u32)> = (0..trees.len()).rev().map(|l| (l, 0)).collect();
    let mut todo = vec![(String::new(), root)];
    while let Some((prefix, dirs)) = todo.pop() {
        let mut names: BTreeMap<&[u8], Vec<(usize, u32)>> = BTreeMap::new();
        for &(l, d) in &dirs {
            for (name, ino) in trees[l].tree.children(d) {
                names.entry(name).or_default().push((l, ino));
            }
        }
        for (name, found) in names {
            let (l, ino) = found[0];
            if is_whiteout(&trees[l], ino) {
                continue;
            }
            let path = format!("{prefix}{}", String::from_utf8_lossy(name));
            let node = &trees[l].tree.inodes()[ino as usize];
            out.insert(path.clone(), (node.kind(), node.entry(), (l, ino)));
            if node.kind() != InodeKind::Dir {
                continue;
            }
            let mut merged = vec![(l, ino)];
            if !trees[l].is_opaque(ino) {
                for &(lj, j) in &found[1..] {
                    if trees[lj].tree.inodes()[j as usize].kind() != InodeKind::Dir {
                        break;
                    }
                    merged.push((lj, j));
                    if trees[lj].is_opaque(j) {
                        break;
                    }
                }
            }
            todo.push((format!("{path}/"), merged));
        }
    }
    out
}

/// `merge`'s tree in the same form.
fn shown(tree: &MergedTree) -> Shown {
    let mut out = Shown::new();
    let mut todo = vec![(String::new(), 0u32)];
    while let Some((prefix, dir)) = todo.pop() {
        for (name, ino) in tree.children(dir) {
            let path = format!("{prefix}{}", String::from_utf8_lossy(name));
            let node = &tree.inodes()[ino as usize];
            out.insert(path.clone(), (node.kind(), node.entry(), (0, ino)));
            if node.kind() == InodeKind::Dir {
                todo.push((format!("{path}/"), ino));
            }
        }
    }
    out
}

/// The hardlink groups (paths sharing an identity) of non-directories.
fn groups(s: &Shown) -> BTreeSet<Vec<String>> {
    let mut by_id: BTreeMap<(usize, u32), Vec<String>> = BTreeMap::new();
    for (path, (kind, _, id)) in s {
        if *kind != InodeKind::Dir {
            by_id.entry(*id).or_default().push(path.clone());
        }
    }
    by_id.into_values().filter(|g| g.len() > 1).collect()
}

fn overlay_trees(layers: &[Vec<Entry>]) -> Vec<OverlayTree> {
    let refs: Vec<&[Entry]> = layers.iter().map(Vec::as_slice).collect();
    (1..=refs.len())
        .map(|n| {
            let (t, _) = overlay_layer(&refs[..n]);
            t.fsck()
                .unwrap_or_else(|e| panic!("fsck of layer {}: {e}\n{:#?}", n - 1, dump(&t.tree)));
            t
        })
        .collect()
}

/// Stacks the overlay trees of `layers` and compares with `merge`.
fn check(layers: &[Vec<Entry>]) {
    let refs: Vec<&[Entry]> = layers.iter().map(Vec::as_slice).collect();
    let want = shown(&merge(&refs).0);
    let trees = overlay_trees(layers);
    let got = stack(&trees);
    let strip = |s: &Shown| -> BTreeMap<String, (InodeKind, Option<EntryRef>)> {
        s.iter().map(|(p, (k, e, _))| (p.clone(), (*k, *e))).collect()
    };
    let detail = || {
        let layers: Vec<Vec<String>> = trees.iter().map(|t| dump(&t.tree)).collect();
        let opaque: Vec<&Vec<u32>> = trees.iter().map(|t| &t.opaque).collect();
        format!(
            "overlay trees: {layers:#?}\nopaque: {opaque:?}\nlayers: {:#?}",
            layers_paths(&refs)
        )
    };
    assert_eq!(strip(&got), strip(&want), "{}", detail());
    assert_eq!(groups(&got), groups(&want), "hardlink groups\n{}", detail());
}

fn layers_paths(layers: &[&[Entry]]) -> Vec<Vec<String>> {
    layers
        .iter()
        .map(|l| {
            l.iter()
                .map(|e| {
                    let link = e
                        .link
                        .as_deref()
                        .map_or(String::new(), |t| format!(" -> {}", String::from_utf8_lossy(t)));
                    format!("{:?} {}{link}", e.kind, String::from_utf8_lossy(&e.path))
                })
                .collect()
        })
        .collect()
}

fn specs(layers: &[&[&str]]) -> Vec<Vec<Entry>> {
    layers.iter().map(|l| layer(l)).collect()
}

#[test]
fn whiteouts_become_character_devices_and_opaque_directories_are_listed() {
    let layers = specs(&[
        &[
            "d etc",
            "f etc/passwd",
            "f etc/shadow",
            "d var",
            "d var/cache",
            "f var/cache/x",
            "d tmp",
        ],
        &[
            "w etc/.wh.shadow",
            "w var/cache/.wh..wh..opq",
            "f var/cache/y",
            "w .wh.tmp",
            "w .wh.absent",
        ],
    ]);
    let trees = overlay_trees(&layers);
    assert_eq!(
        dump(&trees[1].tree),
        [
            "c etc/shadow @-",
            "c tmp @-",
            "d / @-",
            "d etc @0.0",
            "d var @0.3",
            "d var/cache @0.4",
            "f var/cache/y @1.2",
        ]
    );
    let cache = trees[1].tree.lookup(b"var/cache").unwrap();
    assert_eq!(trees[1].opaque, [cache]);
    check(&layers);
}

#[test]
fn table_cases_stack_like_merge() {
    let cases: &[&[&[&str]]] = &[
        // implicit parent: the lower directory's metadata
        &[&["d a", "f a/x"], &["f a/y"]],
        // hardlink to a lower file: the whole group is copied up
        &[&["d d", "f d/a", "h d/b => d/a", "f c"], &["h e => d/a"]],
        // hardlink to a lower file, then the target replaced in the same layer
        &[&["f a"], &["h b => a", "f a"]],
        // deleted and re-created as a directory: opaque
        &[&["d d", "f d/x"], &["w .wh.d", "f d/y"]],
        &[&["d d", "f d/x"], &["f d", "d d", "f d/z"]],
        &[&["d d", "f d/x"], &["w .wh.d", "d d"]],
        // file <-> directory swaps
        &[&["f a", "d b", "f b/c"], &["d a", "f a/x", "f b"]],
        // opaque root: whiteouts instead
        &[&["f a", "d b", "f b/c"], &["w .wh..wh..opq", "f z", "f b/n"]],
        // whiteout under a whited-out directory, and of nothing under nothing
        &[&["d a", "f a/b"], &["w .wh.a", "w a/.wh.b", "w x/y/.wh.z"]],
        // a parent that is a lower symlink: dropped as merge drops it
        &[&["d t", "l s -> t"], &["f s/y"]],
        // a lower hardlink group split by a later layer
        &[&["f a", "h b => a"], &["f a"]],
        // opaque directory emptied and refilled, with a deeper lower tree
        &[
            &["d o", "d o/p", "f o/p/q", "f o/r"],
            &["w o/.wh..wh..opq", "d o/p", "f o/p/new"],
        ],
        // three layers, re-adding
        &[&["f r"], &["w .wh.r"], &["f r"]],
    ];
    for layers in cases {
        check(&specs(layers));
    }
}

#[test]
fn untouched_lower_directories_are_left_out() {
    let layers = specs(&[&["d a", "d a/b", "f a/b/c", "d z", "f z/1"], &["f a/b/d"]]);
    let trees = overlay_trees(&layers);
    assert_eq!(
        dump(&trees[1].tree),
        ["d / @-", "d a @0.0", "d a/b @0.1", "f a/b/d @1.0"]
    );
    assert!(trees[1].opaque.is_empty());
}

#[test]
fn random_layers_stack_like_merge() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..1500 {
        let layers = random_layers(&mut rng);
        check(&layers);
    }
}
