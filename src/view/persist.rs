//! Merged rootfs trees kept in the index cache, so a warm mount does not merge again.
//!
//! Merging is the largest cost of the first access to a rootfs once the layer indexes are
//! cached (tens of milliseconds for 100k members) and its scratch space is most of that
//! access's peak memory. The result depends only on the layers, so it is stored under a key
//! made of their digests, [`VIEW_FORMAT`] and the layer index format (which numbers members).
//!
//! Encoding: a 16-byte header `VIEW_FORMAT | inode count | name count | name bytes` (u32 LE);
//! the name arena as the tree keeps it (each name a length byte and its bytes), names in
//! directory order (inode by inode, each directory's names sorted); then per inode, varints
//! `kind | entry flag [layer, entry] | nlink | parent | child count`; then each name's inode.
//! A warm mount uses the name arena in place in the mapped file ([`decode_mapped`]): half the
//! file is neither decoded nor copied, and those pages are the page cache's. The rest is
//! small varints, a third of the size of the fixed records they become in memory.

use std::ops::Range;
use std::sync::Arc;

use crate::cache::Bytes;
use crate::digest::Digest;
use crate::layer::entries::Entries;
use crate::merge::{Dirent, EntryRef, FsckError, Inode, InodeKind, MergedTree};
use crate::varint::{Reader, Truncated, Writer};
use sha2::{Digest as _, Sha256};

/// Version of the merge rules and of this encoding; part of the cache key.
/// History: 1 = first format; 2 = name totals after the inode count, flat name arrays;
/// 3 = the name arena first, used in place.
pub const VIEW_FORMAT: u32 = 3;

const HEADER_BYTES: usize = 16;
/// Smallest encoded inode (kind, flag, nlink, parent, child count).
const MIN_INODE_BYTES: usize = 5;

/// Why a cached tree cannot be used (it is then merged again).
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The payload range is not inside the mapped file.
    #[error("payload outside the file")]
    PayloadOutside,
    /// Shorter than the header.
    #[error("truncated header")]
    TruncatedHeader,
    /// Written under another [`VIEW_FORMAT`].
    #[error("other format version")]
    OtherVersion,
    /// The header's name arena size runs past the data.
    #[error("name arena past the end")]
    ArenaPastEnd,
    /// The header's counts need more bytes than there are.
    #[error("counts larger than the data")]
    CountsTooLarge,
    /// A varint is truncated or out of range.
    #[error(transparent)]
    Varint(#[from] Truncated),
    /// An inode kind code that no kind has.
    #[error("bad inode kind")]
    BadKind,
    /// An entry flag other than 0 and 1.
    #[error("bad entry flag")]
    BadEntryFlag,
    /// A non-directory with names under it.
    #[error("names under a non-directory")]
    NamesUnderNonDir,
    /// The directories' name counts overflow.
    #[error("too many names")]
    TooManyNames,
    /// The directories hold another number of names than the header says.
    #[error("{found} names in the directories, {header} in the header")]
    NameCount { found: u32, header: usize },
    /// A name starts past the name arena.
    #[error("names past the arena")]
    NamesPastArena,
    /// Bytes left over after the names or the records.
    #[error("names or records do not fill the file")]
    NotFilled,
    /// The name arena is not inside the mapped file.
    #[error("name arena outside the file")]
    ArenaOutside,
    /// The decoded tree breaks an invariant of merged trees.
    #[error(transparent)]
    Fsck(#[from] FsckError),
    /// An inode names a layer member the layers do not have.
    #[error("inode {ino} names a member that does not exist")]
    MissingMember { ino: usize },
}

/// The cache key of the merged tree of `layers` (bottom first).
pub fn key(layers: &[Digest]) -> String {
    let mut h = Sha256::new();
    h.update(b"imgfs rootfs view\0");
    h.update(VIEW_FORMAT.to_le_bytes());
    // The tree names layer members by number: an index rebuilt under another layer format
    // may number them differently.
    h.update(crate::layer::format::FORMAT_VERSION.to_le_bytes());
    for d in layers {
        h.update(d.to_string().as_bytes());
        h.update(b"\0");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes a merged tree.
pub fn encode(tree: &MergedTree) -> Vec<u8> {
    let count = tree.inodes().len() as u32;
    let (names, name_bytes) = tree.name_totals();
    let arena = name_bytes + names;
    let mut w = Writer(Vec::with_capacity(HEADER_BYTES + arena + tree.inodes().len() * 12));
    for n in [VIEW_FORMAT as usize, count as usize, names, arena] {
        // The tree's own limits keep every count within u32; a wrong one fails the decoder.
        w.0.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }
    for ino in 0..count {
        for (name, _) in tree.children(ino) {
            w.0.push(name.len() as u8);
            w.0.extend_from_slice(name);
        }
    }
    for (ino, i) in (0..count).zip(tree.inodes()) {
        w.0.push(i.kind().code());
        match i.entry() {
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
    }
    for ino in 0..count {
        for (_, child) in tree.children(ino) {
            w.num(u64::from(child));
        }
    }
    w.0
}

/// Decodes a merged tree and checks it against the layers it will be shown with.
pub fn decode(data: &[u8], layers: &[&Entries]) -> Result<MergedTree, PersistError> {
    let tree = decode_tree(data)?;
    check_refs(&tree, layers)?;
    Ok(tree)
}

/// Decodes a tree into memory of its own and checks its structure ([`MergedTree::fsck`]);
/// [`check_refs`] remains, so the layers need not be loaded yet.
pub fn decode_tree(data: &[u8]) -> Result<MergedTree, PersistError> {
    let l = layout(data)?;
    let (inodes, dirents) = decode_records(data, &l)?;
    let tree = MergedTree::from_parts(inodes, dirents, Bytes::owned(data[l.arena].to_vec()));
    tree.fsck()?;
    Ok(tree)
}

/// The tree in the `payload` of a mapped cache file whose checksum has been verified, its names
/// used in place. The structural check ([`MergedTree::fsck`], longer than everything else a
/// warm mount's first access does) is left out: the file is byte for byte what imgfs wrote
/// from a merge, and the cache directory is trusted like the binary (docs/security.md). A
/// damaged tree could still not crash anything: every accessor is bounds-checked and nothing
/// walks the tree. [`check_refs`] remains for the caller.
pub fn decode_mapped(map: Arc<memmap2::Mmap>, payload: Range<usize>) -> Result<MergedTree, PersistError> {
    let data = map.get(payload.clone()).ok_or(PersistError::PayloadOutside)?;
    let l = layout(data)?;
    let (inodes, dirents) = decode_records(data, &l)?;
    let at = |r: Range<usize>| payload.start + r.start..payload.start + r.end;
    // The varints now live in `inodes` and `dirents`, and the names are read one at a time from
    // here on: the pages the decoder walked leave this process's memory (page cache keeps them).
    crate::cache::release(&map, payload.clone());
    let names = Bytes::mapped(map, at(l.arena)).ok_or(PersistError::ArenaOutside)?;
    Ok(MergedTree::from_parts(inodes, dirents, names))
}

/// Every member a tree names must exist in the layers it is shown with.
pub fn check_refs(tree: &MergedTree, layers: &[&Entries]) -> Result<(), PersistError> {
    for (n, i) in tree.inodes().iter().enumerate() {
        if let Some(r) = i.entry() {
            let ok = layers
                .get(r.layer as usize)
                .is_some_and(|l| (r.entry as usize) < l.len());
            if !ok {
                return Err(PersistError::MissingMember { ino: n });
            }
        }
    }
    Ok(())
}

/// Where the parts of an encoded tree are, from its header.
struct Layout {
    inodes: usize,
    names: usize,
    /// The name arena.
    arena: Range<usize>,
    /// The varints after it.
    records: Range<usize>,
}

/// Reads and checks the header of `data`. The counts are bounded by what the data could hold,
/// so a hostile header cannot make the decoder reserve memory.
fn layout(data: &[u8]) -> Result<Layout, PersistError> {
    let word = |i: usize| -> Result<usize, PersistError> {
        let b = data.get(4 * i..4 * i + 4).ok_or(PersistError::TruncatedHeader)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if word(0)? != VIEW_FORMAT as usize {
        return Err(PersistError::OtherVersion);
    }
    let (inodes, names) = (word(1)?, word(2)?);
    let end = HEADER_BYTES
        .checked_add(word(3)?)
        .filter(|&e| e <= data.len())
        .ok_or(PersistError::ArenaPastEnd)?;
    let records = end..data.len();
    // Each inode takes at least MIN_INODE_BYTES, each name a length byte and a varint.
    if inodes.saturating_mul(MIN_INODE_BYTES).saturating_add(names) > records.len() || names > end - HEADER_BYTES {
        return Err(PersistError::CountsTooLarge);
    }
    Ok(Layout {
        inodes,
        names,
        arena: HEADER_BYTES..end,
        records,
    })
}

/// The inodes and names of a tree from its varints, the names' offsets found by walking the
/// name arena: every name must lie in it, and together they must fill it exactly.
fn decode_records(data: &[u8], l: &Layout) -> Result<(Vec<Inode>, Vec<Dirent>), PersistError> {
    let arena = &data[l.arena.clone()];
    let mut r = Reader(&data[l.records.clone()]);
    let mut inodes = Vec::with_capacity(l.inodes);
    let mut first = 0u32;
    for _ in 0..l.inodes {
        let kind = InodeKind::from_code(r.byte()?).ok_or(PersistError::BadKind)?;
        let entry = match r.byte()? {
            0 => None,
            1 => Some(EntryRef {
                layer: r.u32()?,
                entry: r.u32()?,
            }),
            _ => return Err(PersistError::BadEntryFlag),
        };
        let (nlink, parent, kids) = (r.u32()?, r.u32()?, r.u32()?);
        if kids > 0 && kind != InodeKind::Dir {
            return Err(PersistError::NamesUnderNonDir);
        }
        let next = first.checked_add(kids).ok_or(PersistError::TooManyNames)?;
        // As `MergedTree::push_inode` makes them: no names, no run.
        let run = if kids == 0 { 0..0 } else { first..next };
        inodes.push(Inode::new(kind, entry, nlink, parent, run));
        first = next;
    }
    if first as usize != l.names {
        return Err(PersistError::NameCount {
            found: first,
            header: l.names,
        });
    }
    let mut dirents = Vec::with_capacity(l.names);
    let mut at = 0usize;
    for _ in 0..l.names {
        let len = *arena.get(at).ok_or(PersistError::NamesPastArena)? as usize;
        let ino = r.u32()?;
        dirents.push(Dirent::new(at as u32, ino));
        at += 1 + len;
    }
    if at != arena.len() || !r.0.is_empty() {
        return Err(PersistError::NotFilled);
    }
    Ok((inodes, dirents))
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

    #[test]
    fn mapped_tree_is_used_in_place_and_bad_kinds_are_refused() {
        let mut l0 = Entries::new();
        for (p, k) in [
            ("d", EntryKind::Dir),
            ("d/f", EntryKind::File),
            ("s", EntryKind::Symlink),
        ] {
            l0.push(&Entry {
                link: (k == EntryKind::Symlink).then(|| b"d/f".to_vec()),
                ..entry(p, k)
            })
            .unwrap();
        }
        let (tree, _) = crate::merge::merge(&[&l0]);
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::cache::Cache::new(Some(dir.path().to_path_buf()));
        let mut bytes = encode(&tree);
        cache.store("view", "k", &bytes);
        let (map, payload) = cache.map("view", "k").unwrap();
        let loaded = decode_mapped(map, payload).unwrap();
        assert_eq!(loaded, tree);
        assert_eq!(loaded.lookup(b"d/f"), tree.lookup(b"d/f"));
        assert!(loaded.lookup(b"d/f").is_some());
        check_refs(&loaded, &[&l0]).unwrap();
        // The root's kind byte, just after the name arena: an unknown code is refused.
        let arena = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        bytes[HEADER_BYTES + arena] = 9;
        cache.store("view", "k", &bytes);
        let (map, payload) = cache.map("view", "k").unwrap();
        assert_eq!(decode_mapped(map, payload).unwrap_err(), PersistError::BadKind);
        assert!(decode_tree(&bytes).is_err());
        // A header that does not describe the data exactly.
        let mut short = encode(&tree);
        short.pop();
        assert!(decode_tree(&short).is_err());
    }
}
