//! The mutable tree the layers are applied to, and its conversion into a [`MergedTree`].
//!
//! Nodes live in an arena and refer to each other by index. A directory's children are a
//! `BTreeMap` keyed by name, so every add/remove/lookup is O(log n) however large the
//! directory, and iterating it at the end already yields name order. Hardlinked names share
//! one node; directories always have exactly one name, so removing a directory's name makes
//! its whole subtree unreachable. Unreachable nodes are left in the arena (their child maps are
//! freed) and simply never reached by the final walk.

use std::collections::BTreeMap;
use std::mem;

use super::path::{self, PathError};
use super::whiteout::{self, Whiteout};
use super::{EntryRef, InodeKind, MergedTree, Warning};
use super::{LayerEntries, Member};
use crate::tarindex::EntryKind;

const ROOT: u32 = 0;
/// Marks "not numbered yet" during the final walk; never a valid node index.
const UNSEEN: u32 = u32::MAX;
const MAX_WARNINGS: usize = 10_000;
const MAX_WARNING_PATH: usize = 4096;

const ROOT_NOT_DIR: &str = "non-directory entry for the root";
const PARENT_SYMLINK: &str = "parent is a symlink";
const WHITEOUT_AS_DIR: &str = "whiteout name used as a parent directory";
const BAD_WHITEOUT: &str = "whiteout of an empty name, '.' or '..'";
const HARDLINK_NO_TARGET: &str = "hardlink without a target";
const HARDLINK_ABSENT: &str = "hardlink target does not exist";
const HARDLINK_DIR: &str = "hardlink target is a directory";
const SYMLINK_NO_TARGET: &str = "symlink without a target";
const TOO_MANY_ENTRIES: &str = "too many entries in one layer";
const TOO_MANY_INODES: &str = "too many inodes";
const NAME_TOO_LONG: &str = "name longer than 255 bytes";
const SUPPRESSED: &str = "too many warnings; further warnings suppressed";

pub(super) struct Node {
    pub(super) kind: InodeKind,
    pub(super) entry: Option<EntryRef>,
    /// Directories only; stays empty (and unallocated) for everything else.
    pub(super) children: BTreeMap<Box<[u8]>, u32>,
}

/// What an entry does, decided from its path alone.
enum Class<'a> {
    /// An ordinary entry to add.
    Add,
    /// A whiteout to apply to the lower layers.
    Whiteout(Op<'a>),
    /// Dropped silently (aufs metadata).
    Skip,
    /// A malformed whiteout, reported by the whiteout pass.
    BadWhiteout(&'static str),
    /// A malformed entry, reported by the add pass.
    Bad(&'static str),
}

enum Op<'a> {
    Remove(&'a [u8]),
    Opaque,
}

/// What the tracked layer did to the nodes of the layers below it. Only changes to those lower
/// nodes are recorded: a node the layer created is shown by the layer anyway.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Nodes from this index on were created by the tracked layer.
    pub(super) first_new: u32,
    /// (lower directory, name, the removed node was a directory): a lower node the layer
    /// removed or replaced under that name.
    pub(super) removed: Vec<(u32, Box<[u8]>, bool)>,
    /// Lower directories a `.wh..wh..opq` emptied.
    pub(super) opaque: Vec<u32>,
    /// Lower directories whose metadata a directory entry of the layer replaced.
    pub(super) touched: Vec<u32>,
    /// Lower non-directories the layer gave another name (a hardlink to a lower layer's file).
    pub(super) relinked: Vec<u32>,
}

/// Where the node for a new name comes from.
enum Placement {
    Dir(EntryRef),
    New(InodeKind, EntryRef),
    /// A hardlink: the already existing (non-directory) node.
    Existing(u32),
}

pub(super) struct Builder {
    pub(super) nodes: Vec<Node>,
    pub(super) warnings: Vec<Warning>,
    /// What the layers applied since [`Builder::track_changes`] did to the tree before them
    /// (`overlay_layer` turns that into whiteouts and opaque directories).
    pub(super) changes: Option<Changes>,
    /// The directory the previous entry went into, with its parent path joined by `/`. Tar
    /// streams list a directory's members together, so most entries reuse it instead of
    /// walking every parent again. Cleared whenever any subtree is released (the only way a
    /// directory leaves the tree), so it never names a directory that is gone.
    last_dir: Option<(Vec<u8>, u32)>,
}

impl Builder {
    /// `entries` is only a capacity hint (one node per entry, plus the root).
    pub(super) fn with_capacity(entries: usize) -> Builder {
        let mut nodes = Vec::with_capacity(entries.saturating_add(1));
        nodes.push(Node::new(InodeKind::Dir, None));
        Builder {
            nodes,
            warnings: Vec::new(),
            changes: None,
            last_dir: None,
        }
    }

    /// From now on, records what the layers applied do to the nodes that exist now.
    pub(super) fn track_changes(&mut self) {
        self.changes = Some(Changes {
            // nodes.len() <= u32::MAX (new_node refuses more).
            first_new: u32::try_from(self.nodes.len()).unwrap_or(UNSEEN),
            ..Changes::default()
        });
    }

    /// Records that `dir/name` no longer names the node `old` (when both are lower nodes).
    fn record_removed(&mut self, dir: u32, name: &[u8], old: u32) {
        let was_dir = self.kind(old) == InodeKind::Dir;
        if let Some(c) = &mut self.changes {
            if dir < c.first_new && old < c.first_new {
                c.removed.push((dir, name.into(), was_dir));
            }
        }
    }

    /// Applies `record` to the change log when `node` is a lower node being tracked.
    fn record_lower(&mut self, node: u32, record: fn(&mut Changes) -> &mut Vec<u32>) {
        if let Some(c) = &mut self.changes {
            if node < c.first_new {
                record(c).push(node);
            }
        }
    }

    /// Applies one layer's whiteouts (and reports its malformed whiteouts).
    pub(super) fn apply_whiteouts<L: LayerEntries + ?Sized>(&mut self, layer: u32, entries: &L) {
        let mut comps = Vec::new();
        for i in 0..entries.count() {
            let path = entries.path(i);
            match classify(path, &mut comps, true) {
                Class::Whiteout(op) => self.apply_whiteout(&comps, op),
                Class::BadWhiteout(reason) => self.warn(layer, path, reason),
                Class::Add | Class::Skip | Class::Bad(_) => {}
            }
        }
    }

    /// Adds one layer's ordinary entries in archive order. With `whiteouts`, whiteout entries
    /// are skipped (the whiteout pass handled them); without, they are ordinary entries.
    pub(super) fn add_entries<L: LayerEntries + ?Sized>(&mut self, layer: u32, entries: &L, whiteouts: bool) {
        let mut comps = Vec::new();
        for index in 0..entries.count() {
            let e = Member {
                path: entries.path(index),
                kind: entries.kind(index),
                link: entries.link(index),
            };
            let Ok(entry) = u32::try_from(index) else {
                self.warn(layer, e.path, TOO_MANY_ENTRIES);
                return;
            };
            match classify(e.path, &mut comps, whiteouts) {
                Class::Add => {
                    if let Err(reason) = self.add(EntryRef { layer, entry }, &e, &comps) {
                        self.warn(layer, e.path, reason);
                    }
                }
                Class::Bad(reason) => self.warn(layer, e.path, reason),
                Class::Skip => log::debug!(
                    "layer {layer}: skipping aufs metadata {}",
                    String::from_utf8_lossy(e.path)
                ),
                Class::Whiteout(_) | Class::BadWhiteout(_) => {}
            }
        }
    }

    pub(super) fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    fn node_mut(&mut self, i: u32) -> &mut Node {
        &mut self.nodes[i as usize]
    }

    pub(super) fn kind(&self, i: u32) -> InodeKind {
        self.node(i).kind
    }

    pub(super) fn warn(&mut self, layer: u32, path: &[u8], reason: &'static str) {
        // Bounded so a hostile layer cannot make the warning list itself the memory problem.
        if self.warnings.len() > MAX_WARNINGS {
            return;
        }
        let reason = if self.warnings.len() == MAX_WARNINGS {
            SUPPRESSED
        } else {
            reason
        };
        let path = path[..path.len().min(MAX_WARNING_PATH)].to_vec();
        self.warnings.push(Warning { layer, path, reason });
    }

    fn new_node(&mut self, kind: InodeKind, entry: Option<EntryRef>) -> Result<u32, &'static str> {
        match u32::try_from(self.nodes.len()) {
            Ok(i) if i != UNSEEN => {
                self.nodes.push(Node::new(kind, entry));
                Ok(i)
            }
            _ => Err(TOO_MANY_INODES),
        }
    }

    fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        self.node(dir).children.get(name).copied()
    }

    /// The node at `comps`, without following symlinks (a non-directory has no children, so
    /// walking "through" one finds nothing).
    fn find(&self, comps: &[&[u8]]) -> Option<u32> {
        comps.iter().try_fold(ROOT, |dir, name| self.child(dir, name))
    }

    fn apply_whiteout(&mut self, comps: &[&[u8]], op: Op<'_>) {
        let Some((_, parents)) = comps.split_last() else {
            return;
        };
        // Absent parent or a non-directory parent: nothing lower to hide.
        let Some(dir) = self.find(parents) else {
            return;
        };
        if self.kind(dir) != InodeKind::Dir {
            return;
        }
        match op {
            Op::Remove(name) => {
                if let Some(old) = self.node_mut(dir).children.remove(name) {
                    self.record_removed(dir, name, old);
                    self.release(old);
                }
            }
            Op::Opaque => {
                // Only lower layers' children exist yet: this layer's entries come after.
                let kids = mem::take(&mut self.node_mut(dir).children);
                self.record_lower(dir, |c| &mut c.opaque);
                for (name, old) in kids {
                    self.record_removed(dir, &name, old);
                    self.release(old);
                }
            }
        }
    }

    fn add(&mut self, at: EntryRef, e: &Member<'_>, comps: &[&[u8]]) -> Result<(), &'static str> {
        let Some((name, parents)) = comps.split_last() else {
            return self.set_root(at, e);
        };
        // Resolved before touching the tree, so a dropped entry leaves no implicit parents.
        let placement = self.placement(at, e)?;
        let dir = self.ensure_dirs(parents)?;
        self.place(dir, name, placement)
    }

    fn set_root(&mut self, at: EntryRef, e: &Member<'_>) -> Result<(), &'static str> {
        if e.kind != EntryKind::Dir {
            return Err(ROOT_NOT_DIR);
        }
        self.node_mut(ROOT).entry = Some(at);
        Ok(())
    }

    fn placement(&self, at: EntryRef, e: &Member<'_>) -> Result<Placement, &'static str> {
        let kind = match e.kind {
            EntryKind::Dir => return Ok(Placement::Dir(at)),
            EntryKind::Hardlink => return self.resolve_hardlink(e).map(Placement::Existing),
            EntryKind::Symlink if e.link.is_none_or(<[u8]>::is_empty) => return Err(SYMLINK_NO_TARGET),
            EntryKind::Symlink => InodeKind::Symlink,
            EntryKind::File => InodeKind::File,
            EntryKind::CharDev => InodeKind::CharDev,
            EntryKind::BlockDev => InodeKind::BlockDev,
            EntryKind::Fifo => InodeKind::Fifo,
        };
        Ok(Placement::New(kind, at))
    }

    fn resolve_hardlink(&self, e: &Member<'_>) -> Result<u32, &'static str> {
        let target = e.link.ok_or(HARDLINK_NO_TARGET)?;
        let comps = path::normalize(target).map_err(PathError::hardlink_reason)?;
        let node = self.find(&comps).ok_or(HARDLINK_ABSENT)?;
        if self.kind(node) == InodeKind::Dir {
            return Err(HARDLINK_DIR);
        }
        Ok(node)
    }

    /// Walks to the directory `parents` names, creating implicit directories where a name is
    /// missing or is a non-directory other than a symlink.
    fn ensure_dirs(&mut self, parents: &[&[u8]]) -> Result<u32, &'static str> {
        if let Some((key, dir)) = &self.last_dir {
            if same_path(key, parents) {
                return Ok(*dir);
            }
        }
        let dir = self.walk_dirs(parents)?;
        let key = self.last_dir.take().map(|(k, _)| k).unwrap_or_default();
        self.last_dir = Some((join_path(key, parents), dir));
        Ok(dir)
    }

    fn walk_dirs(&mut self, parents: &[&[u8]]) -> Result<u32, &'static str> {
        let mut dir = ROOT;
        for name in parents {
            dir = match self.child(dir, name) {
                Some(c) if self.kind(c) == InodeKind::Dir => c,
                // Following it could lead anywhere (outside the tree, into a loop); refuse.
                Some(c) if self.kind(c) == InodeKind::Symlink => return Err(PARENT_SYMLINK),
                _ => {
                    let d = self.new_node(InodeKind::Dir, None)?;
                    self.link(dir, name, d);
                    d
                }
            };
        }
        Ok(dir)
    }

    fn place(&mut self, dir: u32, name: &[u8], placement: Placement) -> Result<(), &'static str> {
        let node = match placement {
            Placement::Dir(at) => match self.child(dir, name) {
                // Directory onto directory: merge, i.e. keep the children, take the metadata.
                Some(c) if self.kind(c) == InodeKind::Dir => {
                    self.node_mut(c).entry = Some(at);
                    self.record_lower(c, |c| &mut c.touched);
                    return Ok(());
                }
                _ => self.new_node(InodeKind::Dir, Some(at))?,
            },
            Placement::New(kind, at) => self.new_node(kind, Some(at))?,
            Placement::Existing(node) => {
                self.record_lower(node, |c| &mut c.relinked);
                node
            }
        };
        self.link(dir, name, node);
        Ok(())
    }

    /// Points `dir/name` at `node`, releasing whatever the name pointed at before.
    fn link(&mut self, dir: u32, name: &[u8], node: u32) {
        let kids = &mut self.node_mut(dir).children;
        // get_mut first: replacing an existing name must not allocate a new key.
        let old = match kids.get_mut(name) {
            Some(slot) => mem::replace(slot, node),
            None => {
                kids.insert(name.into(), node);
                return;
            }
        };
        if old != node {
            self.record_removed(dir, name, old);
            self.release(old);
        }
    }

    /// Frees the child maps of a directory subtree that just lost its (only) name. Non-directory
    /// nodes are untouched: other hardlink names may still use them.
    fn release(&mut self, top: u32) {
        self.last_dir = None;
        let mut stack = vec![top];
        while let Some(i) = stack.pop() {
            let node = self.node_mut(i);
            if node.kind == InodeKind::Dir {
                stack.extend(mem::take(&mut node.children).into_values());
            }
        }
    }

    /// Numbers the reachable nodes breadth-first from the root, children in name order, and
    /// builds the final inodes. Uses only the tree structure, never hash order, so the same
    /// input always gives the same numbering.
    pub(super) fn finish(mut self) -> (MergedTree, Vec<Warning>) {
        let mut w = Writer::new(self.nodes.len(), self.node(ROOT).entry);
        // At most one inode per node and one name per inode but the root: reserving that up
        // front avoids the growth that would briefly double the largest allocations.
        w.tree.reserve(self.nodes.len(), self.nodes.len(), 0);
        let mut head = 0;
        while let Some(&old_dir) = w.dirs.get(head) {
            head += 1;
            let new_dir = w.number[old_dir as usize];
            let kids = mem::take(&mut self.node_mut(old_dir).children);
            let mut subdirs = 0u32;
            for (name, old) in kids {
                let (kind, entry) = (self.kind(old), self.node(old).entry);
                match w.add(new_dir, &name, old, kind, entry) {
                    Ok(is_dir) => subdirs = subdirs.saturating_add(u32::from(is_dir)),
                    // Names were checked against NAME_MAX and dirs are walked one at a time,
                    // so only a tree past 4 GiB of names gets here.
                    Err(e) => self.warn(entry.map_or(0, |r| r.layer), &name, push_reason(e)),
                }
            }
            w.set_dir_links(new_dir, subdirs);
        }
        w.tree.shrink_to_fit();
        (w.tree, self.warnings)
    }
}

/// Writes a tree breadth-first from the builder's nodes, numbering each node where it is first
/// reached and counting names (`Builder::finish` and the overlay tree share it).
pub(super) struct Writer {
    pub(super) tree: MergedTree,
    /// The new number of each node (`UNSEEN` until reached).
    pub(super) number: Vec<u32>,
    /// The nodes of the directories numbered so far, in order: the walk's queue.
    pub(super) dirs: Vec<u32>,
}

impl Writer {
    /// A tree holding the root, for a builder of `nodes` nodes.
    pub(super) fn new(nodes: usize, root_entry: Option<EntryRef>) -> Writer {
        let mut number = vec![UNSEEN; nodes];
        number[ROOT as usize] = 0;
        let mut tree = MergedTree::default();
        let _ = tree.push_inode(InodeKind::Dir, root_entry, 2, 0);
        Writer {
            tree,
            number,
            dirs: vec![ROOT],
        }
    }

    /// Names node `old` `name` in directory `new_dir`, numbering it first if it is new (a new
    /// directory is queued). Returns whether it is a directory.
    pub(super) fn add(
        &mut self,
        new_dir: u32,
        name: &[u8],
        old: u32,
        kind: InodeKind,
        entry: Option<EntryRef>,
    ) -> Result<bool, super::PushError> {
        let seen = self.number[old as usize];
        let is_dir = kind == InodeKind::Dir;
        if seen != UNSEEN && is_dir {
            // Cannot happen (directories have one name); never emit a second name.
            debug_assert!(false, "directory reached twice");
            return Ok(false);
        }
        // A new inode is numbered next; nodes.len() <= u32::MAX bounds the numbers.
        let ino = if seen == UNSEEN {
            self.tree.inodes().len() as u32
        } else {
            seen
        };
        self.tree.push_child(new_dir, name, ino)?;
        if seen == UNSEEN {
            let _ = self.tree.push_inode(kind, entry, 0, new_dir);
            self.number[old as usize] = ino;
            if is_dir {
                self.dirs.push(old);
            }
        }
        if let Some(child) = self.tree.inode_mut(ino) {
            child.nlink = if is_dir { 2 } else { child.nlink.saturating_add(1) };
        }
        Ok(is_dir)
    }

    /// Sets a written directory's `nlink` from its number of subdirectories.
    pub(super) fn set_dir_links(&mut self, new_dir: u32, subdirs: u32) {
        if let Some(dir) = self.tree.inode_mut(new_dir) {
            dir.nlink = subdirs.saturating_add(2);
        }
    }
}

pub(super) fn push_reason(e: super::PushError) -> &'static str {
    match e {
        super::PushError::NameTooLong => NAME_TOO_LONG,
        super::PushError::NotLastDir | super::PushError::TreeFull => TOO_MANY_INODES,
    }
}

impl Node {
    fn new(kind: InodeKind, entry: Option<EntryRef>) -> Node {
        Node {
            kind,
            entry,
            children: BTreeMap::new(),
        }
    }
}

/// True when `key` is `parents` joined by `/`.
fn same_path(key: &[u8], parents: &[&[u8]]) -> bool {
    let total = parents.iter().map(|p| p.len()).sum::<usize>() + parents.len().saturating_sub(1);
    if total != key.len() {
        return false;
    }
    let mut rest = key;
    for (i, p) in parents.iter().enumerate() {
        if i > 0 {
            match rest.split_first() {
                Some((b'/', r)) => rest = r,
                _ => return false,
            }
        }
        match rest.strip_prefix(*p) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// `parents` joined by `/`, reusing `buf`'s allocation.
fn join_path(mut buf: Vec<u8>, parents: &[&[u8]]) -> Vec<u8> {
    buf.clear();
    for (i, p) in parents.iter().enumerate() {
        if i > 0 {
            buf.push(b'/');
        }
        buf.extend_from_slice(p);
    }
    buf
}

/// Normalizes `path` into `comps` and decides what the entry does. With `whiteouts` off
/// (`layer_tree`) every well-formed path is an ordinary entry.
fn classify<'a>(path: &'a [u8], comps: &mut Vec<&'a [u8]>, whiteouts: bool) -> Class<'a> {
    if let Err(e) = path::normalize_into(path, comps) {
        return Class::Bad(e.reason());
    }
    let class = if whiteouts {
        classify_whiteout(comps)
    } else {
        Class::Add
    };
    // Only names that will be shown must fit NAME_MAX: a whiteout for a 255-byte name is
    // itself longer.
    match class {
        Class::Add => match path::check_names(comps) {
            Ok(()) => Class::Add,
            Err(e) => Class::Bad(e.reason()),
        },
        class => class,
    }
}

/// The OCI meaning of an already normalized path.
fn classify_whiteout<'a>(comps: &[&'a [u8]]) -> Class<'a> {
    let Some((last, parents)) = comps.split_last() else {
        return Class::Add; // the root
    };
    if let Some(p) = parents.iter().find(|c| whiteout::is_whiteout(c)) {
        return if whiteout::is_meta(p) {
            Class::Skip // e.g. .wh..wh.plnk/123.456
        } else {
            Class::Bad(WHITEOUT_AS_DIR)
        };
    }
    match whiteout::classify(last) {
        Whiteout::None => Class::Add,
        Whiteout::Remove(name) => Class::Whiteout(Op::Remove(name)),
        Whiteout::Opaque => Class::Whiteout(Op::Opaque),
        Whiteout::Meta => Class::Skip,
        Whiteout::Invalid => Class::BadWhiteout(BAD_WHITEOUT),
    }
}
