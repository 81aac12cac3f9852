//! One layer as kernel overlayfs stacks it ("overlay-ready"): what layer N changes in the tree
//! of layers `0..N`, with deletions as overlayfs whiteouts (character devices 0:0, here inodes
//! of kind [`InodeKind::CharDev`] without a tar entry) and opaque directories listed, so that
//!
//! ```text
//! mount -t overlay overlay -o ro,lowerdir=T(N):...:T(1):T(0) DIR
//! ```
//!
//! over the trees `T(i) = overlay_layer(&layers[..=i])` shows exactly `merge(layers)`: the same
//! names, kinds, metadata, data, and hardlink groups. OCI `.wh.` files never appear.
//!
//! # Why the layers below are needed
//!
//! A layer tar alone is not enough, because overlayfs and OCI disagree where a layer is silent:
//! - a directory the tar creates only implicitly (`a/x` without an `a` entry) keeps, in OCI, the
//!   metadata of the lower `a`; overlayfs would show the upper (implicit, 0755 root) one, so
//!   `T(N)` shows the lower directory's entry there;
//! - a hardlink to a lower layer's file (`h b => a`) shares the lower inode in OCI; overlayfs
//!   cannot link across layers, so `T(N)` shows *every* name of that inode in the merged tree
//!   as names of one inode (the lower entry's metadata and data: a "copy-up" of the group);
//! - a whiteout of a name that does not exist, or an opaque marker in a directory without lower
//!   children, changes nothing in OCI; here it creates no directory either;
//! - a name deleted and re-created as a directory in the same layer (`.wh.d` plus `d/x`, or a
//!   file `d` then a directory `d`) must not merge with the lower `d`: it is made opaque;
//! - `.wh..wh..opq` at the root cannot be expressed (overlayfs ignores an opaque root), so it
//!   becomes one whiteout per lower name instead;
//! - entries dropped by `merge` (a parent that is a lower symlink...) are dropped here too.
//!
//! So `T(N)` is computed by the merge itself: layers `0..N` are applied, then layer N is
//! applied with its effects on the lower nodes recorded (`build::Changes`), and `T(N)` is the
//! part of the result layer N created or touched, plus the directories leading to them (with
//! their merged metadata), plus a whiteout for each lower name it removed.
//!
//! # What differs from `merge` and cannot be helped
//! - `nlink` of a lower file whose hardlink group a later layer split is the lower layer's
//!   count (overlayfs reports the lower inode's), where `merge` counts the names left.
//! - A tar entry that is itself a character device 0:0 is a whiteout to overlayfs (as it is
//!   to containers/storage and Docker's overlay drivers): it hides the lower name and is not
//!   shown, where `merge` shows the device.
//! - Inode numbers: overlayfs shows each file's number in the layer that provides it.

use std::collections::{HashMap, HashSet};

use super::build::{push_reason, Builder, Writer};
use super::{FsckError, InodeKind, LayerEntries, MergedTree, Warning};

const ROOT: u32 = 0;

/// One layer, overlay-ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayTree {
    /// The layer's tree; whiteouts are `CharDev` inodes without an entry.
    pub tree: MergedTree,
    /// Directories overlayfs must not merge with the layers below (inode numbers, sorted).
    pub opaque: Vec<u32>,
}

impl OverlayTree {
    /// True when inode `i` is an opaque directory.
    pub fn is_opaque(&self, i: u32) -> bool {
        self.opaque.binary_search(&i).is_ok()
    }

    /// [`MergedTree::fsck`], allowing entry-less character devices (whiteouts); opaque inodes
    /// must be directories.
    pub fn fsck(&self) -> Result<(), FsckError> {
        super::fsck::check(&self.tree, true)?;
        for &i in &self.opaque {
            match self.tree.inodes().get(i as usize) {
                Some(n) if n.kind() == InodeKind::Dir => {}
                _ => return Err(FsckError::OpaqueNotDir { ino: i }),
            }
        }
        if !self.opaque.windows(2).all(|w| w[0] < w[1]) {
            return Err(FsckError::OpaqueUnsorted);
        }
        Ok(())
    }
}

/// The last of `layers` (bottom first), overlay-ready over the others; see the module
/// documentation. Warnings are those of the last layer only (the others' views report theirs).
pub fn overlay_layer<L: LayerEntries + ?Sized>(layers: &[&L]) -> (OverlayTree, Vec<Warning>) {
    let total = layers.iter().map(|l| l.count()).sum::<usize>();
    let mut b = Builder::with_capacity(total);
    let Some((top, lower)) = layers.split_last() else {
        let (tree, warnings) = b.finish();
        return (
            OverlayTree {
                tree,
                opaque: Vec::new(),
            },
            warnings,
        );
    };
    // More than 4 billion layers cannot occur; the casts below cannot wrap.
    let top_index = u32::try_from(lower.len()).unwrap_or(u32::MAX);
    for (index, entries) in lower.iter().enumerate() {
        let layer = u32::try_from(index).unwrap_or(u32::MAX);
        b.apply_whiteouts(layer, *entries);
        b.add_entries(layer, *entries, true);
    }
    b.track_changes();
    b.apply_whiteouts(top_index, *top);
    b.add_entries(top_index, *top, true);
    let (tree, mut warnings) = finish(b);
    warnings.retain(|w| w.layer == top_index);
    (tree, warnings)
}

/// Turns the recorded changes of the last layer into its overlay tree.
fn finish(mut b: Builder) -> (OverlayTree, Vec<Warning>) {
    let changes = b.changes.take().unwrap_or_default();
    let first_new = changes.first_new;
    let n = b.nodes.len();
    let flags = |list: &[u32]| {
        let mut v = vec![false; n];
        for &i in list {
            v[i as usize] = true;
        }
        v
    };
    let (touched, relinked) = (flags(&changes.touched), flags(&changes.relinked));
    // The root cannot be opaque to overlayfs: its emptied names become whiteouts instead.
    let mut opaque = flags(&changes.opaque);
    opaque[ROOT as usize] = false;
    let dir_removed: HashSet<(u32, &[u8])> = changes
        .removed
        .iter()
        .filter(|r| r.2)
        .map(|(d, name, _)| (*d, &**name))
        .collect();

    // Reachable directories, parents first. A directory the layer created where a lower
    // directory was removed must not merge with it: opaque.
    let mut dirs = vec![ROOT];
    let mut head = 0;
    while let Some(&d) = dirs.get(head) {
        head += 1;
        for (name, &c) in &b.node(d).children {
            if b.kind(c) == InodeKind::Dir {
                if c >= first_new && dir_removed.contains(&(d, &**name)) {
                    opaque[c as usize] = true;
                }
                dirs.push(c);
            }
        }
    }

    // Lower names the layer removed and did not replace, per lower directory that is not opaque.
    let mut whiteouts: HashMap<u32, Vec<&[u8]>> = HashMap::new();
    for (d, name, _) in &changes.removed {
        if !opaque[*d as usize] && !b.node(*d).children.contains_key(name) {
            whiteouts.entry(*d).or_default().push(name);
        }
    }
    for names in whiteouts.values_mut() {
        names.sort_unstable();
        names.dedup();
    }

    // What the tree shows: what the layer made or touched, and the directories leading there.
    let mut keep = vec![false; n];
    let keeps = |keep: &[bool], c: u32| match b.kind(c) {
        InodeKind::Dir => keep[c as usize],
        _ => c >= first_new || relinked[c as usize],
    };
    for &d in dirs.iter().rev() {
        let own =
            d == ROOT || d >= first_new || touched[d as usize] || opaque[d as usize] || whiteouts.contains_key(&d);
        keep[d as usize] = own || b.node(d).children.values().any(|&c| keeps(&keep, c));
    }

    // Numbered breadth-first, children in name order, as `Builder::finish` does.
    let mut w = Writer::new(n, b.node(ROOT).entry);
    let mut head = 0;
    let mut opaque_out = Vec::new();
    let mut failed: Vec<(u32, Box<[u8]>, &'static str)> = Vec::new();
    while let Some(&old_dir) = w.dirs.get(head) {
        head += 1;
        let new_dir = w.number[old_dir as usize];
        if opaque[old_dir as usize] {
            opaque_out.push(new_dir);
        }
        let mut names: Vec<(&[u8], Option<u32>)> = b
            .node(old_dir)
            .children
            .iter()
            .filter(|(_, &c)| keeps(&keep, c))
            .map(|(name, &c)| (&**name, Some(c)))
            .collect();
        if let Some(w) = whiteouts.get(&old_dir) {
            names.extend(w.iter().map(|name| (*name, None)));
            names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        let mut subdirs = 0u32;
        for (name, old) in names {
            let Some(old) = old else {
                // A whiteout: a character device 0:0 without an entry.
                let ino = w.tree.inodes().len() as u32;
                match w.tree.push_child(new_dir, name, ino) {
                    Ok(()) => {
                        let _ = w.tree.push_inode(InodeKind::CharDev, None, 1, new_dir);
                    }
                    Err(e) => failed.push((0, name.into(), push_reason(e))),
                }
                continue;
            };
            let (kind, entry) = (b.kind(old), b.node(old).entry);
            match w.add(new_dir, name, old, kind, entry) {
                Ok(is_dir) => subdirs = subdirs.saturating_add(u32::from(is_dir)),
                Err(e) => failed.push((entry.map_or(0, |r| r.layer), name.into(), push_reason(e))),
            }
        }
        w.set_dir_links(new_dir, subdirs);
    }
    drop(whiteouts);
    drop(dir_removed);
    for (layer, name, reason) in failed {
        b.warn(layer, &name, reason);
    }
    let mut tree = w.tree;
    tree.shrink_to_fit();
    opaque_out.sort_unstable();
    (
        OverlayTree {
            tree,
            opaque: opaque_out,
        },
        std::mem::take(&mut b.warnings),
    )
}
