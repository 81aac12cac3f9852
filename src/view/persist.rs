//! Merged rootfs trees kept in the index cache, so a warm mount does not merge again.
//!
//! Merging is the largest cost of the first access to a rootfs once the layer indexes are
//! cached (tens of milliseconds for 100k members) and its scratch space is most of that
//! access's peak memory. The result depends only on the layers, so it is stored under a key
//! made of their digests and [`VIEW_FORMAT`]. A loaded tree is checked like a merged one
//! (`MergedTree::fsck`) and every entry reference must exist in the layers it is used with.
//!
//! Encoding (varints, `crate::varint`): `VIEW_FORMAT u32 LE | inode count | name count | name
//! bytes | inodes`, an inode being `kind u8 | entry flag u8 [layer, entry] | nlink | parent |
//! child count | (name, inode)*`. The counts let the decoder reserve the tree's arrays exactly.

use crate::digest::Digest;
use crate::layer::entries::Entries;
use crate::merge::{EntryRef, InodeKind, MergedTree};
use crate::varint::{Reader, Truncated, Writer};
use sha2::{Digest as _, Sha256};

/// Version of the merge rules and of this encoding; part of the cache key.
/// History: 1 = first format; 2 = name totals after the inode count, flat name arrays.
pub const VIEW_FORMAT: u32 = 2;

/// Smallest encoded inode (kind, flag, nlink, parent, child count).
const MIN_INODE_BYTES: usize = 5;
/// Smallest encoded name (length, inode).
const MIN_NAME_BYTES: usize = 2;

/// The cache key of the merged tree of `layers` (bottom first).
pub fn key(layers: &[Digest]) -> String {
    let mut h = Sha256::new();
    h.update(b"imgfs rootfs view\0");
    h.update(VIEW_FORMAT.to_le_bytes());
    for d in layers {
        h.update(d.to_string().as_bytes());
        h.update(b"\0");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn kind_code(k: InodeKind) -> u8 {
    match k {
        InodeKind::Dir => 0,
        InodeKind::File => 1,
        InodeKind::Symlink => 2,
        InodeKind::CharDev => 3,
        InodeKind::BlockDev => 4,
        InodeKind::Fifo => 5,
    }
}

fn kind_from(c: u8) -> Result<InodeKind, Truncated> {
    Ok(match c {
        0 => InodeKind::Dir,
        1 => InodeKind::File,
        2 => InodeKind::Symlink,
        3 => InodeKind::CharDev,
        4 => InodeKind::BlockDev,
        5 => InodeKind::Fifo,
        _ => return Err(Truncated("bad inode kind")),
    })
}

/// Encodes a merged tree.
pub fn encode(tree: &MergedTree) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(16 + tree.inodes.len() * 24));
    w.0.extend_from_slice(&VIEW_FORMAT.to_le_bytes());
    w.num(tree.inodes.len() as u64);
    let (names, name_bytes) = tree.name_totals();
    w.num(names as u64);
    w.num(name_bytes as u64);
    for (ino, i) in (0u32..).zip(&tree.inodes) {
        w.0.push(kind_code(i.kind));
        match i.entry {
            None => w.0.push(0),
            Some(r) => {
                w.0.push(1);
                w.num(u64::from(r.layer));
                w.num(u64::from(r.entry));
            }
        }
        w.num(u64::from(i.nlink));
        w.num(u64::from(i.parent));
        w.num(tree.child_count(ino) as u64);
        for (name, child) in tree.children(ino) {
            w.bytes(name);
            w.num(u64::from(child));
        }
    }
    w.0
}

/// Decodes a merged tree and checks it against the layers it will be shown with.
pub fn decode(data: &[u8], layers: &[&Entries]) -> Result<MergedTree, String> {
    let tree = decode_tree(data)?;
    check_refs(&tree, layers)?;
    Ok(tree)
}

/// Decodes a tree and checks its structure ([`MergedTree::fsck`]); [`check_refs`] remains, so
/// the layers need not be loaded yet.
pub fn decode_tree(data: &[u8]) -> Result<MergedTree, String> {
    let tree = decode_arrays(&mut Reader(data), data.len(), &mut |_| {}).map_err(|e| e.0.to_owned())?;
    tree.fsck()?;
    Ok(tree)
}

/// Decodes a tree from a cache file whose checksum has been verified, telling `done` now and
/// then how many bytes of `data` it has decoded (so a caller can release the pages of a mapped
/// file behind the decoder). The structural check ([`MergedTree::fsck`], a third of the time of a
/// warm mount's first access) is left out: the file is byte for byte what imgfs wrote from a
/// merge, and the cache directory is trusted like the binary (docs/security.md). A damaged tree
/// could still not crash anything: every accessor is bounds-checked and nothing walks the tree.
/// [`check_refs`] remains for the caller.
pub fn decode_checksummed(data: &[u8], done: &mut dyn FnMut(usize)) -> Result<MergedTree, String> {
    decode_arrays(&mut Reader(data), data.len(), done).map_err(|e| e.0.to_owned())
}

/// Every member a tree names must exist in the layers it is shown with.
pub fn check_refs(tree: &MergedTree, layers: &[&Entries]) -> Result<(), String> {
    for (n, i) in tree.inodes.iter().enumerate() {
        if let Some(r) = i.entry {
            let ok = layers
                .get(r.layer as usize)
                .is_some_and(|l| (r.entry as usize) < l.len());
            if !ok {
                return Err(format!("inode {n} names a member that does not exist"));
            }
        }
    }
    Ok(())
}

fn decode_arrays(r: &mut Reader<'_>, len: usize, done: &mut dyn FnMut(usize)) -> Result<MergedTree, Truncated> {
    if r.take(4)? != VIEW_FORMAT.to_le_bytes() {
        return Err(Truncated("other format version"));
    }
    let count = r.count(MIN_INODE_BYTES)?;
    let names = r.count(MIN_NAME_BYTES)?;
    let name_bytes = r.count(1)?;
    let mut tree = MergedTree::default();
    tree.reserve(count, names, name_bytes);
    for n in 0..count {
        if n % 4096 == 4095 {
            done(len - r.0.len());
        }
        let kind = kind_from(r.byte()?)?;
        let entry = match r.byte()? {
            0 => None,
            1 => Some(EntryRef {
                layer: r.u32()?,
                entry: r.u32()?,
            }),
            _ => return Err(Truncated("bad entry flag")),
        };
        let (nlink, parent) = (r.u32()?, r.u32()?);
        let ino = tree
            .push_inode(kind, entry, nlink, parent)
            .ok_or(Truncated("too many inodes"))?;
        for _ in 0..r.count(MIN_NAME_BYTES)? {
            let (name, child) = (r.bytes()?, r.u32()?);
            tree.push_child(ino, name, child)
                .map_err(|_| Truncated("bad directory entry"))?;
        }
    }
    if !r.0.is_empty() {
        return Err(Truncated("trailing bytes"));
    }
    tree.shrink_to_fit();
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarindex::{Entry, EntryKind};

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            mode: 0o644,
            ..Entry::for_test(path.as_bytes(), kind)
        }
    }

    #[test]
    fn round_trip_and_damage_is_refused() {
        let mut l0 = Entries::new();
        for (p, k) in [("a", EntryKind::Dir), ("a/b", EntryKind::File), ("c", EntryKind::File)] {
            l0.push(&entry(p, k)).unwrap();
        }
        let (tree, _) = crate::merge::merge(&[&l0]);
        let bytes = encode(&tree);
        assert_eq!(decode(&bytes, &[&l0]).unwrap(), tree);
        // Used with fewer layers or members than it names: refused.
        assert!(decode(&bytes, &[]).is_err());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], &[&l0]).is_err(), "prefix {n}");
        }
        assert_ne!(key(&[Digest::sha256_of(b"x")]), key(&[Digest::sha256_of(b"y")]));
    }
}
