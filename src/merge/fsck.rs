//! Structural checks of a [`MergedTree`]: what the filesystem layer relies on.

use super::path;
use super::{Inode, InodeKind, MergedTree};

/// Checks, by one breadth-first walk (no recursion):
/// the root is inode 0 and a directory; every inode is reachable and numbered in walk order
/// (children in name order, first reach wins); children are strictly sorted with valid names
/// and in-range targets; every directory has exactly one name (the root none) and the right
/// parent; `nlink` is right for directories and non-directories; only directories have children
/// and only directories may lack an entry (and, with `whiteouts`, character devices: the
/// whiteouts of an overlay tree).
pub(super) fn check(tree: &MergedTree, whiteouts: bool) -> Result<(), String> {
    let inodes = &tree.inodes;
    let root = inodes.first().ok_or("no root inode")?;
    if root.kind() != InodeKind::Dir || root.parent != 0 {
        return Err(format!("bad root: {:?}, parent {}", root.kind(), root.parent));
    }
    let mut names = vec![0u32; inodes.len()];
    let mut next = 1usize; // the number the next newly reached inode must have
    let mut head = 0usize; // BFS cursor: directories are numbered in the order they are walked
    let mut queue = vec![0u32];
    while let Some(&dir) = queue.get(head) {
        head += 1;
        let subdirs = check_dir(tree, dir, &mut names, &mut next, &mut queue)?;
        let want = subdirs.saturating_add(2);
        if inodes[dir as usize].nlink != want {
            return Err(format!("dir {dir}: nlink {} != {want}", inodes[dir as usize].nlink));
        }
    }
    if next != inodes.len() {
        return Err(format!("{} inodes, {next} reachable", inodes.len()));
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
) -> Result<u32, String> {
    let inodes = &tree.inodes;
    let node = &inodes[dir as usize];
    if node.kind() != InodeKind::Dir {
        return Err(format!("inode {dir} has children but is {:?}", node.kind()));
    }
    let first = node.first_child as usize;
    let run = tree
        .dirents
        .get(first..first + node.child_count as usize)
        .ok_or_else(|| format!("dir {dir}: names out of range"))?;
    let mut subdirs = 0u32;
    let mut prev: &[u8] = &[];
    for d in run {
        let at = d.name as usize;
        let len = tree.names.get(at).copied().unwrap_or(0) as usize;
        let Some(name) = tree.names.get(at + 1..at + 1 + len).filter(|_| len > 0) else {
            return Err(format!("dir {dir}: name at {at} out of range"));
        };
        // Formatted only on failure.
        let shown = || String::from_utf8_lossy(name);
        if !path::is_valid_name(name) {
            return Err(format!("dir {dir}: invalid name {:?}", shown()));
        }
        if !prev.is_empty() && prev >= name {
            return Err(format!("dir {dir}: {:?} out of order or duplicated", shown()));
        }
        prev = name;
        let i = d.ino as usize;
        let Some(child) = inodes.get(i) else {
            return Err(format!("dir {dir}: {:?} -> {i} out of range", shown()));
        };
        if i == 0 {
            return Err(format!("dir {dir}: {:?} names the root", shown()));
        }
        names[i] = names[i].saturating_add(1);
        let is_dir = child.kind() == InodeKind::Dir;
        if i >= *next {
            if i != *next {
                return Err(format!("inode {i} reached when {next} was expected"));
            }
            *next += 1;
            if child.parent != dir {
                return Err(format!("inode {i}: parent {} != {dir}", child.parent));
            }
            if is_dir {
                queue.push(d.ino);
            }
        } else if is_dir {
            return Err(format!("directory {i} has more than one name"));
        }
        subdirs += u32::from(is_dir);
    }
    Ok(subdirs)
}

fn check_non_dirs(inodes: &[Inode], names: &[u32], whiteouts: bool) -> Result<(), String> {
    for (i, (node, &n)) in inodes.iter().zip(names).enumerate() {
        if node.kind() == InodeKind::Dir {
            continue;
        }
        if node.nlink != n {
            return Err(format!("inode {i}: nlink {} but {n} names", node.nlink));
        }
        if node.child_count != 0 {
            return Err(format!("inode {i}: {:?} with children", node.kind()));
        }
        if node.entry().is_none() && !(whiteouts && node.kind() == InodeKind::CharDev) {
            return Err(format!("inode {i}: {:?} without an entry", node.kind()));
        }
    }
    Ok(())
}
