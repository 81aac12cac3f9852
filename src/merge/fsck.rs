//! Structural checks of a [`MergedTree`]: what the filesystem layer relies on.

use super::path;
use super::{Inode, InodeKind, MergedTree};

/// The first violated invariant a check found. Inode numbers are the tree's; names are shown
/// lossily (they are checked, not trusted).
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsckError {
    /// The tree has no inode at all.
    #[error("no root inode")]
    NoRoot,
    /// Inode 0 is not a directory that is its own parent.
    #[error("bad root: {kind:?}, parent {parent}")]
    BadRoot { kind: InodeKind, parent: u32 },
    /// A directory's link count is not 2 plus its subdirectories.
    #[error("dir {dir}: nlink {nlink} != {want}")]
    DirNlink { dir: u32, nlink: u32, want: u32 },
    /// Some inodes are not reachable from the root.
    #[error("{inodes} inodes, {reachable} reachable")]
    Unreachable { inodes: usize, reachable: usize },
    /// A non-directory is walked as a directory (a name leads to it as a parent).
    #[error("inode {dir} has children but is {kind:?}")]
    NotADir { dir: u32, kind: InodeKind },
    /// A directory's names are outside the name table.
    #[error("dir {dir}: names out of range")]
    NamesOutOfRange { dir: u32 },
    /// A name is outside the name arena, or empty.
    #[error("dir {dir}: name at {at} out of range")]
    NameOutOfRange { dir: u32, at: usize },
    /// A name that a directory cannot hold (".", "..", '/', NUL).
    #[error("dir {dir}: invalid name {name:?}")]
    InvalidName { dir: u32, name: String },
    /// Names not strictly sorted.
    #[error("dir {dir}: {name:?} out of order or duplicated")]
    OutOfOrder { dir: u32, name: String },
    /// A name leads to an inode number past the table.
    #[error("dir {dir}: {name:?} -> {ino} out of range")]
    TargetOutOfRange { dir: u32, name: String, ino: usize },
    /// A name leads to the root.
    #[error("dir {dir}: {name:?} names the root")]
    NamesTheRoot { dir: u32, name: String },
    /// Inodes are not numbered in breadth-first walk order.
    #[error("inode {ino} reached when {expected} was expected")]
    WalkOrder { ino: usize, expected: usize },
    /// An inode's parent is not the directory that first names it.
    #[error("inode {ino}: parent {parent} != {dir}")]
    WrongParent { ino: usize, parent: u32, dir: u32 },
    /// A directory has two names (a directory hard link).
    #[error("directory {ino} has more than one name")]
    DirNamedTwice { ino: usize },
    /// A non-directory's link count is not its number of names.
    #[error("inode {ino}: nlink {nlink} but {names} names")]
    Nlink { ino: usize, nlink: u32, names: u32 },
    /// A non-directory has children.
    #[error("inode {ino}: {kind:?} with children")]
    ChildrenOfNonDir { ino: usize, kind: InodeKind },
    /// A non-directory (other than an overlay whiteout) stands for no layer member.
    #[error("inode {ino}: {kind:?} without an entry")]
    NoEntry { ino: usize, kind: InodeKind },
    /// An overlay tree's opaque inode is not a directory.
    #[error("opaque inode {ino} is not a directory")]
    OpaqueNotDir { ino: u32 },
    /// An overlay tree's opaque inodes are not sorted.
    #[error("opaque inodes not sorted")]
    OpaqueUnsorted,
}

/// Checks, by one breadth-first walk (no recursion):
/// the root is inode 0 and a directory; every inode is reachable and numbered in walk order
/// (children in name order, first reach wins); children are strictly sorted with valid names
/// and in-range targets; every directory has exactly one name (the root none) and the right
/// parent; `nlink` is right for directories and non-directories; only directories have children
/// and only directories may lack an entry (and, with `whiteouts`, character devices: the
/// whiteouts of an overlay tree).
pub(super) fn check(tree: &MergedTree, whiteouts: bool) -> Result<(), FsckError> {
    let inodes = &tree.inodes;
    let root = inodes.first().ok_or(FsckError::NoRoot)?;
    if root.kind() != InodeKind::Dir || root.parent != 0 {
        return Err(FsckError::BadRoot {
            kind: root.kind(),
            parent: root.parent,
        });
    }
    let mut names = vec![0u32; inodes.len()];
    let mut next = 1usize; // the number the next newly reached inode must have
    let mut head = 0usize; // BFS cursor: directories are numbered in the order they are walked
    let mut queue = vec![0u32];
    while let Some(&dir) = queue.get(head) {
        head += 1;
        let subdirs = check_dir(tree, dir, &mut names, &mut next, &mut queue)?;
        let want = subdirs.saturating_add(2);
        let nlink = inodes[dir as usize].nlink;
        if nlink != want {
            return Err(FsckError::DirNlink { dir, nlink, want });
        }
    }
    if next != inodes.len() {
        return Err(FsckError::Unreachable {
            inodes: inodes.len(),
            reachable: next,
        });
    }
    check_non_dirs(inodes, &names, whiteouts)
}

/// Checks one directory's names in a single pass over the raw arrays (this runs for every name
/// of a tree on each warm mount): names in range, valid and strictly sorted; targets in range
/// and not the root; newly reached inodes numbered in walk order with this directory as parent
/// (directories queued); no directory reached twice. Counts names per inode in `names`;
/// returns the number of subdirectories.
fn check_dir(
    tree: &MergedTree,
    dir: u32,
    names: &mut [u32],
    next: &mut usize,
    queue: &mut Vec<u32>,
) -> Result<u32, FsckError> {
    let inodes = &tree.inodes;
    let node = &inodes[dir as usize];
    if node.kind() != InodeKind::Dir {
        return Err(FsckError::NotADir { dir, kind: node.kind() });
    }
    let first = node.first_child as usize;
    let run = tree
        .dirents
        .get(first..first + node.child_count as usize)
        .ok_or(FsckError::NamesOutOfRange { dir })?;
    let mut subdirs = 0u32;
    let mut prev: &[u8] = &[];
    for d in run {
        let at = d.name as usize;
        let len = tree.names.get(at).copied().unwrap_or(0) as usize;
        let Some(name) = tree.names.get(at + 1..at + 1 + len).filter(|_| len > 0) else {
            return Err(FsckError::NameOutOfRange { dir, at });
        };
        // Formatted only on failure.
        let shown = || String::from_utf8_lossy(name).into_owned();
        if !path::is_valid_name(name) {
            return Err(FsckError::InvalidName { dir, name: shown() });
        }
        if !prev.is_empty() && prev >= name {
            return Err(FsckError::OutOfOrder { dir, name: shown() });
        }
        prev = name;
        let i = d.ino as usize;
        let Some(child) = inodes.get(i) else {
            return Err(FsckError::TargetOutOfRange {
                dir,
                name: shown(),
                ino: i,
            });
        };
        if i == 0 {
            return Err(FsckError::NamesTheRoot { dir, name: shown() });
        }
        names[i] = names[i].saturating_add(1);
        let is_dir = child.kind() == InodeKind::Dir;
        if i >= *next {
            if i != *next {
                return Err(FsckError::WalkOrder {
                    ino: i,
                    expected: *next,
                });
            }
            *next += 1;
            if child.parent != dir {
                return Err(FsckError::WrongParent {
                    ino: i,
                    parent: child.parent,
                    dir,
                });
            }
            if is_dir {
                queue.push(d.ino);
            }
        } else if is_dir {
            return Err(FsckError::DirNamedTwice { ino: i });
        }
        subdirs += u32::from(is_dir);
    }
    Ok(subdirs)
}

fn check_non_dirs(inodes: &[Inode], names: &[u32], whiteouts: bool) -> Result<(), FsckError> {
    for (i, (node, &n)) in inodes.iter().zip(names).enumerate() {
        if node.kind() == InodeKind::Dir {
            continue;
        }
        if node.nlink != n {
            return Err(FsckError::Nlink {
                ino: i,
                nlink: node.nlink,
                names: n,
            });
        }
        if node.child_count != 0 {
            return Err(FsckError::ChildrenOfNonDir {
                ino: i,
                kind: node.kind(),
            });
        }
        if node.entry().is_none() && !(whiteouts && node.kind() == InodeKind::CharDev) {
            return Err(FsckError::NoEntry {
                ino: i,
                kind: node.kind(),
            });
        }
    }
    Ok(())
}
