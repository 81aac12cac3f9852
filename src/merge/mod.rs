//! Merging the layers of an OCI image into one directory tree (pure functions, no I/O).
//!
//! [`merge`] takes every layer's tar index (bottom layer first) and returns the tree a
//! container would see; [`layer_tree`] returns one layer as it is stored, whiteout files
//! included; [`overlay::overlay_layer`] returns one layer as kernel overlayfs stacks it
//! (whiteouts as character devices 0:0, opaque directories listed). All three return a
//! [`MergedTree`] whose inodes point back at the tar entries ([`EntryRef`]) that give their
//! metadata and data, plus a list of [`Warning`]s for every entry that was dropped. Hostile input never panics, loops or recurses: every entry is
//! either applied or dropped (with a warning, except aufs metadata).
//!
//! # Paths
//!
//! Raw tar paths are normalized into name components: empty and `.` components disappear, so
//! `./a`, `/a`, `a/` and `a` are all `a`, and `a//b`, `a/./b`, `./a/b/` are all `a/b`.
//!
//! * A path with a `..` component is dropped with a warning. It is never resolved.
//! * A path containing a NUL byte, or with a component longer than 255 bytes (Linux
//!   `NAME_MAX`), is dropped with a warning: the kernel could never look such a name up.
//!   Whole paths have no length limit (lookups go one name at a time). A whiteout's own name
//!   may be longer (`.wh.` + a 255-byte name is 259 bytes): it is never shown.
//! * The root itself (`./`, `/`, `.`): a directory entry sets the root directory's metadata
//!   (the last one wins, across layers too); any other kind is dropped with a warning.
//!   Without such an entry the root is an implicit directory.
//!
//! # Layer order and whiteouts (`merge` only)
//!
//! `layers[0]` is the bottom layer. For each layer N, FIRST all of N's whiteouts are applied
//! to the tree built from layers `0..N`, THEN N's other entries are added in archive order.
//! Whiteouts therefore only ever hide what lower layers made (image-spec `layer.md`), and a
//! layer may both whiteout `a` and add a new `a`, in either archive order.
//!
//! * `DIR/.wh.NAME` removes `DIR/NAME` and its whole subtree, if present. Absent targets are
//!   a no-op.
//! * `DIR/.wh..wh..opq` makes `DIR` opaque: every child lower layers put there is removed;
//!   `DIR` itself stays (with its metadata), and this layer's own entries in `DIR` are added
//!   afterwards.
//! * Other `.wh..wh.*` names (aufs metadata such as `.wh..wh.plnk`) and everything beneath
//!   them are dropped silently.
//! * `.wh.`, `.wh..` and `.wh...` (an empty, `.` or `..` target) are dropped with a warning.
//! * A path whose *parent* components contain a `.wh.` name (`a/.wh.b/c`) is dropped with a
//!   warning: it is neither a whiteout nor a name a merged tree may show.
//! * A whiteout is recognized by its name alone, whatever the entry kind.
//! * Whiteouts locate their target without following symlinks: `link/.wh.x`, where `link` is
//!   a symlink to a directory, hides nothing.
//! * Whiteout entries never appear in `merge`'s output.
//!
//! ```text
//! layer 0: d etc, f etc/passwd, f etc/shadow, d var/cache, f var/cache/x
//! layer 1: f etc/.wh.shadow, f var/cache/.wh..wh..opq, f var/cache/y, f .wh.tmp
//! result : etc/passwd (layer 0), var/cache/y (layer 1); etc/shadow and var/cache/x are gone
//! ```
//!
//! # Adding an entry
//!
//! * Missing parent directories are created as implicit directories (`entry: None`; the
//!   filesystem shows them with default metadata until a later directory entry names them).
//! * A parent component that exists but is a **symlink** makes the entry be **dropped** with
//!   the warning "parent is a symlink". Symlinks are never followed while merging. (umoci, the
//!   reference unpacker, would resolve the symlink inside the rootfs and write through it; we
//!   deliberately don't: the result would depend on link targets that may point anywhere.)
//! * A parent component that exists but is any other non-directory (file, device, fifo) is
//!   replaced by an implicit directory.
//! * Directory onto an existing directory: the directory keeps its children and takes the new
//!   entry's metadata. Non-directory onto a directory: the directory and its subtree are
//!   replaced. Directory onto a non-directory: replaced by the new, empty directory.
//!   Non-directory onto non-directory: replaced by a new inode (other hardlink names of the
//!   old inode keep the old inode).
//! * Duplicate paths in one layer: the last entry wins (a consequence of applying entries in
//!   order).
//! * Symlinks keep their target bytes verbatim (relative or absolute, never resolved, may
//!   point anywhere). A symlink entry without a target, or with an empty one, is dropped with
//!   a warning. Character and block devices and fifos are ordinary inodes.
//!
//! ```text
//! layer 0: f a, d b, f b/c            layer 1: d a, f a/x, f b, l s -> /etc, f s/y
//! result : a/ (layer 1 dir) with a/x, b (layer 1 file), s -> /etc; s/y dropped (parent is a symlink)
//! ```
//!
//! # Hardlinks
//!
//! A hardlink entry's target is normalized like a path. It must exist in the tree at that
//! moment (added earlier in this layer, or by a lower layer and not whited out) and must not be
//! a directory; the new name then refers to the *same* inode, whose metadata and data come from
//! the entry that created the inode. Otherwise (absent target, target added later in the
//! archive, a directory, a `..` target, no target) the hardlink is dropped with a warning.
//! The target is resolved before anything else happens, so a dropped hardlink changes nothing.
//! Replacing or whiting out one name of a hardlinked inode leaves the other names on the old
//! inode. `nlink` of a non-directory is the number of its names in the final tree.
//!
//! ```text
//! layer 0: f a, h b => a         layer 1: f a
//! result : a (new inode from layer 1, nlink 1), b (the layer-0 inode, nlink 1)
//! ```
//!
//! # `layer_tree`
//!
//! One layer as stored: whiteout files (`.wh.*`, including `.wh..wh..opq` and aufs metadata)
//! are kept as ordinary entries and nothing is hidden. Everything else (normalization, implicit
//! parents, symlink parents, replacement, hardlinks, last-wins) is as in `merge`; a hardlink
//! to a file in a lower layer is dropped because the layer alone does not contain it.
//!
//! # The result
//!
//! `inodes[0]` is the root. Directories have `nlink = 2 + number of child directories` and
//! their children sorted by name bytes; names are never empty, `.`, `..`, and never contain
//! `/` or NUL. `parent` of a directory is its parent (root: 0); of a non-directory, the
//! directory of its first name in walk order. Inode numbers are assigned by a breadth-first
//! walk from the root, children in name order, a hardlinked inode numbered where it is first
//! reached: the same layers always give the same numbers, independent of hash order, so they
//! are stable across mounts. [`MergedTree::fsck`] checks all of this.
//!
//! # Limits
//!
//! No recursion on tree depth (explicit stacks and queues only); each entry costs O(depth ·
//! log(directory size)). At most 10 000 warnings are returned (then one "further warnings
//! suppressed"), each path cut to 4096 bytes, so hostile layers cannot blow up memory through
//! warnings.

mod build;
mod fsck;
pub mod overlay;
pub mod path;
pub mod whiteout;

pub use fsck::FsckError;

#[cfg(test)]
mod overlay_tests;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::tarindex::{Entry, EntryKind};

use crate::cache::Bytes;
use build::Builder;

/// One tar entry: `layer` indexes the layers slice given to [`merge`] (0 for [`layer_tree`]),
/// `entry` indexes that layer's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryRef {
    /// Index into the layers slice.
    pub layer: u32,
    /// Index into that layer's entries.
    pub entry: u32,
}

/// The file type of a merged inode (hardlinks are not a type: they share an inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InodeKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
    /// A named pipe.
    Fifo,
}

impl InodeKind {
    /// The kind's code in the cached tree encoding (`view::persist`).
    pub fn code(self) -> u8 {
        match self {
            InodeKind::Dir => 0,
            InodeKind::File => 1,
            InodeKind::Symlink => 2,
            InodeKind::CharDev => 3,
            InodeKind::BlockDev => 4,
            InodeKind::Fifo => 5,
        }
    }

    /// The kind stored as `code`, if it is one.
    pub fn from_code(code: u8) -> Option<InodeKind> {
        Some(match code {
            0 => InodeKind::Dir,
            1 => InodeKind::File,
            2 => InodeKind::Symlink,
            3 => InodeKind::CharDev,
            4 => InodeKind::BlockDev,
            5 => InodeKind::Fifo,
            _ => return None,
        })
    }
}

/// One inode of the merged tree, 28 bytes (the entry reference is not an `Option`, which would
/// make it 32); read it through [`Inode::kind`] and [`Inode::entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    kind: InodeKind,
    /// 1 if `layer` and `entry` name the tar entry of this inode.
    has_entry: u8,
    layer: u32,
    entry: u32,
    /// Directories: 2 + number of subdirectories; others: number of names in the final tree.
    pub nlink: u32,
    /// Directories: the parent directory (root: 0); others: the directory of the first name in
    /// walk order.
    pub parent: u32,
    /// Directories only: their names are `MergedTree::dirents[first_child..][..child_count]`.
    first_child: u32,
    child_count: u32,
}

impl Inode {
    /// An inode whose names (directories only) are `MergedTree` dirents `children`.
    pub fn new(
        kind: InodeKind,
        entry: Option<EntryRef>,
        nlink: u32,
        parent: u32,
        children: std::ops::Range<u32>,
    ) -> Inode {
        let r = entry.unwrap_or(EntryRef { layer: 0, entry: 0 });
        Inode {
            kind,
            has_entry: u8::from(entry.is_some()),
            layer: r.layer,
            entry: r.entry,
            nlink,
            parent,
            first_child: children.start,
            child_count: children.end.saturating_sub(children.start),
        }
    }

    /// The file type.
    pub fn kind(&self) -> InodeKind {
        self.kind
    }

    /// The tar entry whose metadata (mode, uid, gid, mtime, xattrs, link target, rdev, data)
    /// this inode shows; `None` only for implicit directories (and a root no entry described).
    pub fn entry(&self) -> Option<EntryRef> {
        (self.has_entry != 0).then_some(EntryRef {
            layer: self.layer,
            entry: self.entry,
        })
    }
}

/// One name in a directory. `name` is the offset in `MergedTree::names` of a length byte
/// followed by the name (names are at most 255 bytes), so a name costs 9 bytes plus its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dirent {
    name: u32,
    ino: u32,
}

impl Dirent {
    /// The name at offset `name` of the tree's name arena, for inode `ino`.
    pub fn new(name: u32, ino: u32) -> Dirent {
        Dirent { name, ino }
    }
}

/// The merged tree: `inodes()[0]` is the root directory.
///
/// Memory is what limits big images, so the tree is three flat arrays: fixed-size inodes, each
/// directory's names as one contiguous run of `dirents`, and every name's bytes in one arena.
/// Built with [`MergedTree::push_inode`] and [`MergedTree::push_child`]; a cached tree uses its
/// name arena in place in the mapped cache file ([`MergedTree::from_parts`], `view::persist`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedTree {
    inodes: Vec<Inode>,
    dirents: Vec<Dirent>,
    names: Bytes,
}

/// Why [`MergedTree::push_child`] refused a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Not a directory inode of this tree, or another directory's names were appended since.
    NotLastDir,
    /// Longer than 255 bytes (Linux `NAME_MAX`).
    NameTooLong,
    /// The name arena or the name count would pass 4 GiB entries.
    TreeFull,
}

/// An entry that was dropped (or a notice that warnings were cut off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Index into the layers slice (0 for [`layer_tree`]).
    pub layer: u32,
    /// The entry's raw path (cut to 4096 bytes).
    pub path: Vec<u8>,
    /// What is wrong with it, in a few words.
    pub reason: &'static str,
}

impl fmt::Display for Warning {
    /// One line: `layer 2: "a/b\n": reason`, the path lossily decoded, control characters,
    /// quotes and backslashes escaped so a hostile name cannot forge log lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {}: \"", self.layer)?;
        for c in String::from_utf8_lossy(&self.path).chars() {
            if c.is_control() || c == '"' || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        write!(f, "\": {}", self.reason)
    }
}

/// The members of one layer as the merge reads them: only path, type and link target matter.
pub trait LayerEntries {
    /// Number of members.
    fn count(&self) -> usize;
    /// Raw path of member `i`.
    fn path(&self, i: usize) -> &[u8];
    /// Type of member `i`.
    fn kind(&self, i: usize) -> EntryKind;
    /// Symlink or hardlink target of member `i`.
    fn link(&self, i: usize) -> Option<&[u8]>;
}

impl LayerEntries for [Entry] {
    fn count(&self) -> usize {
        self.len()
    }
    fn path(&self, i: usize) -> &[u8] {
        self.get(i).map_or(&[], |e| &e.path)
    }
    fn kind(&self, i: usize) -> EntryKind {
        self.get(i).map_or(EntryKind::File, |e| e.kind)
    }
    fn link(&self, i: usize) -> Option<&[u8]> {
        self.get(i)?.link.as_deref()
    }
}

impl LayerEntries for Vec<Entry> {
    fn count(&self) -> usize {
        self.len()
    }
    fn path(&self, i: usize) -> &[u8] {
        self.as_slice().path(i)
    }
    fn kind(&self, i: usize) -> EntryKind {
        self.as_slice().kind(i)
    }
    fn link(&self, i: usize) -> Option<&[u8]> {
        self.as_slice().link(i)
    }
}

/// One member as the builder sees it.
pub(crate) struct Member<'a> {
    pub(crate) path: &'a [u8],
    pub(crate) kind: EntryKind,
    pub(crate) link: Option<&'a [u8]>,
}

/// Merges image layers with OCI semantics; `layers[0]` is the bottom layer. See the module
/// documentation for the rules.
pub fn merge<L: LayerEntries + ?Sized>(layers: &[&L]) -> (MergedTree, Vec<Warning>) {
    let total = layers.iter().map(|l| l.count()).sum::<usize>();
    let mut b = Builder::with_capacity(total);
    for (index, entries) in layers.iter().enumerate() {
        // More than 4 billion layers cannot occur; stop rather than wrap the index.
        let Ok(layer) = u32::try_from(index) else {
            break;
        };
        b.apply_whiteouts(layer, *entries);
        b.add_entries(layer, *entries, true);
    }
    b.finish()
}

/// One layer as stored: whiteout files are ordinary entries, nothing is hidden. Everything else
/// is as in [`merge`]. Warnings carry layer 0.
pub fn layer_tree<L: LayerEntries + ?Sized>(entries: &L) -> (MergedTree, Vec<Warning>) {
    let mut b = Builder::with_capacity(entries.count());
    b.add_entries(0, entries, false);
    b.finish()
}

impl MergedTree {
    /// The inode at `path` (normalized like tar paths; `""` and `/` are the root), without
    /// following symlinks. `None` if absent or if the path has a `..` component.
    pub fn lookup(&self, path: &[u8]) -> Option<u32> {
        let comps = path::normalize(path).ok()?;
        comps.iter().try_fold(0, |dir, name| self.child(dir, name))
    }

    /// The inode named `name` in directory `dir` (binary search; `None` for non-directories).
    pub fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let kids = self.dirents_of(dir);
        let at = kids.binary_search_by(|d| self.name(d).cmp(name)).ok()?;
        kids.get(at).map(|d| d.ino)
    }

    /// The entries of directory `dir` as (name, inode), sorted by name bytes; empty for
    /// non-directories and out-of-range inodes. The stable way to walk a tree.
    pub fn children(&self, dir: u32) -> impl ExactSizeIterator<Item = (&[u8], u32)> + '_ {
        self.children_from(dir, 0)
    }

    /// [`MergedTree::children`] from the `skip`-th name on, in O(1) (readdir offsets).
    pub fn children_from(&self, dir: u32, skip: usize) -> impl ExactSizeIterator<Item = (&[u8], u32)> + '_ {
        let kids = self.dirents_of(dir);
        kids.get(skip..).unwrap_or(&[]).iter().map(|d| (self.name(d), d.ino))
    }

    /// The inodes; `[0]` is the root.
    pub fn inodes(&self) -> &[Inode] {
        &self.inodes
    }

    /// A tree of its three arrays (see `view::persist` for the checks a loaded tree gets).
    pub fn from_parts(inodes: Vec<Inode>, dirents: Vec<Dirent>, names: Bytes) -> MergedTree {
        MergedTree { inodes, dirents, names }
    }

    /// Number of names in directory `dir` (0 for anything else).
    pub fn child_count(&self, dir: u32) -> usize {
        self.inodes.get(dir as usize).map_or(0, |i| i.child_count as usize)
    }

    /// Appends an inode without children and returns its number (`None` past `u32::MAX`).
    pub fn push_inode(&mut self, kind: InodeKind, entry: Option<EntryRef>, nlink: u32, parent: u32) -> Option<u32> {
        let ino = u32::try_from(self.inodes.len()).ok()?;
        self.inodes.push(Inode::new(kind, entry, nlink, parent, 0..0));
        Some(ino)
    }

    /// Appends `name -> ino` to directory `dir`'s names. A directory's names are one run: they
    /// must all be pushed before any other directory's. Order and validity of the names are
    /// the caller's (and [`MergedTree::fsck`]'s) business.
    pub fn push_child(&mut self, dir: u32, name: &[u8], ino: u32) -> Result<(), PushError> {
        let len = u8::try_from(name.len()).map_err(|_| PushError::NameTooLong)?;
        let at = u32::try_from(self.names.len()).map_err(|_| PushError::TreeFull)?;
        let first = u32::try_from(self.dirents.len()).map_err(|_| PushError::TreeFull)?;
        if at.checked_add(u32::from(len) + 1).is_none() || first == u32::MAX {
            return Err(PushError::TreeFull);
        }
        let node = self.inodes.get_mut(dir as usize).ok_or(PushError::NotLastDir)?;
        if node.kind() != InodeKind::Dir {
            return Err(PushError::NotLastDir);
        }
        if node.child_count == 0 {
            node.first_child = first;
        } else if node.first_child + node.child_count != first {
            return Err(PushError::NotLastDir);
        }
        node.child_count += 1;
        let names = self.names.to_mut();
        names.push(len);
        names.extend_from_slice(name);
        self.dirents.push(Dirent { name: at, ino });
        Ok(())
    }

    /// Inode `i`, to change (the builder sets `nlink` last).
    pub(crate) fn inode_mut(&mut self, i: u32) -> Option<&mut Inode> {
        self.inodes.get_mut(i as usize)
    }

    /// Room for `inodes` more inodes and `names` more names of `name_bytes` bytes in all.
    pub fn reserve(&mut self, inodes: usize, names: usize, name_bytes: usize) {
        self.inodes.reserve_exact(inodes);
        self.dirents.reserve_exact(names);
        // Each name is stored after a length byte.
        self.names.to_mut().reserve_exact(name_bytes.saturating_add(names));
    }

    /// Number of names in all directories, and their bytes (what [`MergedTree::reserve`] takes).
    pub fn name_totals(&self) -> (usize, usize) {
        (self.dirents.len(), self.names.len() - self.dirents.len())
    }

    /// Gives back spare capacity once the tree is complete.
    pub fn shrink_to_fit(&mut self) {
        self.inodes.shrink_to_fit();
        self.dirents.shrink_to_fit();
        self.names.shrink_to_fit();
    }

    fn dirents_of(&self, dir: u32) -> &[Dirent] {
        let Some(i) = self.inodes.get(dir as usize) else {
            return &[];
        };
        let first = i.first_child as usize;
        self.dirents.get(first..first + i.child_count as usize).unwrap_or(&[])
    }

    fn name(&self, d: &Dirent) -> &[u8] {
        let at = d.name as usize;
        let len = self.names.get(at).copied().unwrap_or(0) as usize;
        self.names.get(at + 1..at + 1 + len).unwrap_or(&[])
    }

    /// Checks every structural invariant (see the module documentation); the error names the
    /// first violation found.
    pub fn fsck(&self) -> Result<(), FsckError> {
        fsck::check(self, false)
    }
}
