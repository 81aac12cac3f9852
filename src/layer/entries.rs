//! The tar members of a layer, kept in their encoded form: one byte string of varint-encoded
//! members (the very bytes of the cache file, mapped, on a warm mount), the start of each
//! member, and a side table of the rare fields that are handed out as slices (xattrs, sparse
//! maps). A warm mount therefore neither decodes nor copies its members: loading is a checksum
//! and one scan, and the members' memory is file-backed page cache the kernel may reclaim.
//! Accessors decode one member on demand (a few dozen nanoseconds).
//!
//! A member: `path bytes | kind u8 | mode | uid | gid | mtime (zigzag) | nsec | size |
//! data_offset | stored_size | link (flag, bytes) | major | minor | xattr count, (name, value)*
//! | sparse (flag, count, (offset, len)*)`, numbers as varints (`crate::varint`).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::cache::Bytes;
use crate::tarindex::{Entry, EntryKind, SparseChunk};
use crate::varint::{Reader, Truncated, Writer};

/// One extended attribute: (name, value).
pub type Xattr = (Box<[u8]>, Box<[u8]>);

/// Why a member cannot be stored or a stored set cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("layer index: {0}")]
pub struct EntriesError(&'static str);

impl From<Truncated> for EntriesError {
    fn from(e: Truncated) -> Self {
        EntriesError(e.0)
    }
}

/// The fields handed out as slices, decoded once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rare {
    xattrs: Vec<Xattr>,
    sparse: Option<Box<[SparseChunk]>>,
}

/// The members of one layer, in archive order.
#[derive(Clone, Default)]
pub struct Entries {
    /// The encoded members: built in memory, or a range of a mapped cache file.
    store: Bytes,
    /// Offset of each member in the store.
    starts: Vec<u32>,
    /// Rare fields by member index, sorted.
    rare: Vec<(u32, Rare)>,
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.store.as_slice() == other.store.as_slice() && self.starts == other.starts && self.rare == other.rare
    }
}

impl Eq for Entries {}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mapped = self.store.is_mapped();
        write!(
            f,
            "Entries({} members, {} bytes",
            self.len(),
            self.store.as_slice().len()
        )?;
        write!(f, "{})", if mapped { ", mapped" } else { "" })
    }
}

/// One member, borrowed from [`Entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta<'a> {
    /// Path bytes as stored.
    pub path: &'a [u8],
    /// Member type.
    pub kind: EntryKind,
    /// Permission bits (07777).
    pub mode: u32,
    /// Owner (ids above u32 are shown as u32::MAX, as the kernel has no larger ids).
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Logical size.
    pub size: u64,
    /// Offset of the data in the uncompressed layer.
    pub data_offset: u64,
    /// Bytes stored in the layer (differs from `size` for sparse files).
    pub stored_size: u64,
    /// Symlink or hardlink target.
    pub link: Option<&'a [u8]>,
    /// Device major.
    pub dev_major: u32,
    /// Device minor.
    pub dev_minor: u32,
    /// Extended attributes.
    pub xattrs: &'a [Xattr],
    /// Sparse map.
    pub sparse: Option<&'a [SparseChunk]>,
}

impl Entries {
    /// An empty set.
    pub fn new() -> Entries {
        Entries::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The encoded members, back to back (what the cache file stores).
    pub fn encoded(&self) -> &[u8] {
        self.store.as_slice()
    }

    /// Appends a member (only to a set built in memory).
    pub fn push(&mut self, e: &Entry) -> Result<(), EntriesError> {
        if self.store.is_mapped() {
            return Err(EntriesError("a loaded index is read-only"));
        }
        let buf = self.store.to_mut();
        let start = u32::try_from(buf.len()).map_err(|_| EntriesError("over 4 GiB of members"))?;
        let index = u32::try_from(self.starts.len()).map_err(|_| EntriesError("too many members"))?;
        let mut w = Writer(std::mem::take(buf));
        encode_member(&mut w, e);
        *buf = w.0;
        if u32::try_from(buf.len()).is_err() {
            buf.truncate(start as usize);
            return Err(EntriesError("over 4 GiB of members"));
        }
        self.starts.push(start);
        if !e.xattrs.is_empty() || e.sparse.is_some() {
            let xattrs = e
                .xattrs
                .iter()
                .map(|(k, v)| (k.clone().into(), v.clone().into()))
                .collect();
            let sparse = e.sparse.as_deref().map(Into::into);
            self.rare.push((index, Rare { xattrs, sparse }));
        }
        Ok(())
    }

    /// Where each member starts in [`Entries::encoded`].
    pub fn starts(&self) -> &[u32] {
        &self.starts
    }

    /// The members that have xattrs or a sparse map, in order.
    pub fn rare_members(&self) -> impl Iterator<Item = u32> + '_ {
        self.rare.iter().map(|(i, _)| *i)
    }

    /// Members from their encoding and its index (see [`Entries::encoded`],
    /// [`Entries::starts`], [`Entries::rare_members`]), copied.
    pub fn from_encoded(bytes: &[u8], starts: Vec<u32>, rare: &[u32]) -> Result<Entries, EntriesError> {
        Self::assemble(Bytes::owned(bytes.to_vec()), starts, rare)
    }

    /// The same, with the members in `range` of a mapped cache file, used in place.
    pub fn from_mapped(
        map: Arc<memmap2::Mmap>,
        range: Range<usize>,
        starts: Vec<u32>,
        rare: &[u32],
    ) -> Result<Entries, EntriesError> {
        let store = Bytes::mapped(map, range).ok_or(EntriesError("members outside the file"))?;
        Self::assemble(store, starts, rare)
    }

    /// Checks the index against the bytes and decodes the rare fields. The members themselves
    /// are not decoded here (that is what makes a warm mount fast): the checksum of the cache
    /// file vouches for them, and every accessor still decodes with bounds checks, so damage
    /// that got past the checksum yields `None` (EIO), never a panic.
    fn assemble(store: Bytes, starts: Vec<u32>, rare_members: &[u32]) -> Result<Entries, EntriesError> {
        let len = store.as_slice().len();
        if u32::try_from(len).is_err() {
            return Err(EntriesError("over 4 GiB of members"));
        }
        let increasing = starts.windows(2).all(|w| w[0] < w[1]);
        let first_ok = starts.first().is_none_or(|&s| s == 0);
        let last_ok = starts.last().is_none_or(|&s| (s as usize) < len);
        if !increasing || !first_ok || !last_ok || (starts.is_empty() && len != 0) {
            return Err(EntriesError("member offsets out of order or range"));
        }
        let mut entries = Entries {
            store,
            starts,
            rare: Vec::with_capacity(rare_members.len()),
        };
        let mut prev = None;
        for &i in rare_members {
            if prev.is_some_and(|p| p >= i) {
                return Err(EntriesError("rare members out of order"));
            }
            prev = Some(i);
            let mut r = entries.at(i as usize).ok_or(EntriesError("rare member out of range"))?;
            match decode_member(&mut r, true)? {
                (_, Some(x)) => entries.rare.push((i, x)),
                (_, None) => return Err(EntriesError("member listed as rare has no rare fields")),
            }
        }
        Ok(entries)
    }

    /// Frees spare capacity once complete.
    pub fn shrink(&mut self) {
        self.store.shrink_to_fit();
        self.starts.shrink_to_fit();
        self.rare.shrink_to_fit();
    }

    /// A reader at member `i`.
    fn at(&self, i: usize) -> Option<Reader<'_>> {
        let start = *self.starts.get(i)? as usize;
        Some(Reader(self.store.as_slice().get(start..)?))
    }

    fn rare(&self, i: usize) -> Option<&Rare> {
        let i = u32::try_from(i).ok()?;
        let at = self.rare.binary_search_by_key(&i, |(n, _)| *n).ok()?;
        self.rare.get(at).map(|(_, x)| x)
    }

    /// Path bytes of member `i` (empty if out of range).
    pub fn path(&self, i: usize) -> &[u8] {
        self.at(i).and_then(|mut r| r.bytes().ok()).unwrap_or(&[])
    }

    /// Type of member `i`.
    pub fn kind(&self, i: usize) -> Option<EntryKind> {
        let mut r = self.at(i)?;
        r.bytes().ok()?;
        kind_from(r.byte().ok()?).ok()
    }

    /// Link target of member `i`.
    pub fn link(&self, i: usize) -> Option<&[u8]> {
        self.meta(i)?.link
    }

    /// Everything about member `i`.
    pub fn meta(&self, i: usize) -> Option<Meta<'_>> {
        let (mut m, _) = decode_member(&mut self.at(i)?, false).ok()?;
        if let Some(x) = self.rare(i) {
            m.xattrs = &x.xattrs;
            m.sparse = x.sparse.as_deref();
        }
        Some(m)
    }

    /// Member `i` as a parser `Entry` (for tests; `header_offset` is not kept).
    pub fn entry(&self, i: usize) -> Option<Entry> {
        let m = self.meta(i)?;
        Some(Entry {
            path: m.path.to_vec(),
            kind: m.kind,
            mode: m.mode,
            uid: u64::from(m.uid),
            gid: u64::from(m.gid),
            mtime: m.mtime,
            mtime_nsec: m.mtime_nsec,
            size: m.size,
            data_offset: m.data_offset,
            stored_size: m.stored_size,
            link: m.link.map(<[u8]>::to_vec),
            dev_major: m.dev_major,
            dev_minor: m.dev_minor,
            xattrs: m.xattrs.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
            sparse: m.sparse.map(<[SparseChunk]>::to_vec),
            header_offset: 0,
        })
    }
}

fn encode_member(w: &mut Writer, e: &Entry) {
    w.bytes(&e.path);
    w.0.push(kind_code(e.kind));
    // A symlink's mode is always 0777 on Linux (lstat says so, nothing can change it), and
    // GNU tar, bsdtar and umoci show it so: the header's bits (0755, 0644, even 0) are dropped.
    let mode = if e.kind == EntryKind::Symlink {
        0o777
    } else {
        e.mode & 0o7777
    };
    w.num(u64::from(mode));
    w.num(e.uid.min(u64::from(u32::MAX)));
    w.num(e.gid.min(u64::from(u32::MAX)));
    w.num(((e.mtime << 1) ^ (e.mtime >> 63)) as u64);
    w.num(u64::from(e.mtime_nsec));
    w.num(e.size);
    w.num(e.data_offset);
    w.num(e.stored_size);
    match &e.link {
        None => w.0.push(0),
        Some(l) => {
            w.0.push(1);
            w.bytes(l);
        }
    }
    w.num(u64::from(e.dev_major));
    w.num(u64::from(e.dev_minor));
    w.num(e.xattrs.len() as u64);
    for (k, v) in &e.xattrs {
        w.bytes(k);
        w.bytes(v);
    }
    match &e.sparse {
        None => w.0.push(0),
        Some(chunks) => {
            w.0.push(1);
            w.num(chunks.len() as u64);
            for c in chunks {
                w.num(c.offset);
                w.num(c.len);
            }
        }
    }
}

/// Decodes one member. With `keep_rare`, its xattrs and sparse map are returned decoded (when it
/// has any); without, they are only skipped. The `Meta`'s own slices for them stay empty: they
/// must borrow from [`Entries`]' side table.
fn decode_member<'a>(r: &mut Reader<'a>, keep_rare: bool) -> Result<(Meta<'a>, Option<Rare>), EntriesError> {
    let path = r.bytes()?;
    let kind = kind_from(r.byte()?)?;
    let mode = r.u32()?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let z = r.num()?;
    let mtime = ((z >> 1) as i64) ^ -((z & 1) as i64);
    let mtime_nsec = r.u32()?;
    let size = r.num()?;
    let data_offset = r.num()?;
    let stored_size = r.num()?;
    let link = match r.byte()? {
        0 => None,
        1 => Some(r.bytes()?),
        _ => return Err(EntriesError("bad link flag")),
    };
    let dev_major = r.u32()?;
    let dev_minor = r.u32()?;
    let nx = r.count(2)?;
    let mut xattrs = Vec::new();
    for _ in 0..nx {
        let (k, v) = (r.bytes()?, r.bytes()?);
        if keep_rare {
            xattrs.push((Box::from(k), Box::from(v)));
        }
    }
    let sparse = match r.byte()? {
        0 => None,
        1 => {
            let n = r.count(2)?;
            let mut chunks = Vec::with_capacity(if keep_rare { n } else { 0 });
            for _ in 0..n {
                let (offset, len) = (r.num()?, r.num()?);
                if keep_rare {
                    chunks.push(SparseChunk { offset, len });
                }
            }
            keep_rare.then(|| chunks.into_boxed_slice())
        }
        _ => return Err(EntriesError("bad sparse flag")),
    };
    let meta = Meta {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        mtime_nsec,
        size,
        data_offset,
        stored_size,
        link,
        dev_major,
        dev_minor,
        xattrs: &[],
        sparse: None,
    };
    let rare = (!xattrs.is_empty() || sparse.is_some()).then_some(Rare { xattrs, sparse });
    Ok((meta, rare))
}

fn kind_code(k: EntryKind) -> u8 {
    match k {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink => 2,
        EntryKind::Hardlink => 3,
        EntryKind::CharDev => 4,
        EntryKind::BlockDev => 5,
        EntryKind::Fifo => 6,
    }
}

fn kind_from(c: u8) -> Result<EntryKind, EntriesError> {
    Ok(match c {
        0 => EntryKind::File,
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        3 => EntryKind::Hardlink,
        4 => EntryKind::CharDev,
        5 => EntryKind::BlockDev,
        6 => EntryKind::Fifo,
        _ => return Err(EntriesError("bad entry kind")),
    })
}

impl crate::merge::LayerEntries for Entries {
    fn count(&self) -> usize {
        self.len()
    }
    fn path(&self, i: usize) -> &[u8] {
        Entries::path(self, i)
    }
    fn kind(&self, i: usize) -> EntryKind {
        Entries::kind(self, i).unwrap_or(EntryKind::File)
    }
    fn link(&self, i: usize) -> Option<&[u8]> {
        Entries::link(self, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            mode: 0o100755,
            uid: 1,
            gid: u64::MAX,
            mtime: -3,
            mtime_nsec: 9,
            size: 7,
            data_offset: 512,
            stored_size: 7,
            ..Entry::for_test(path, kind)
        }
    }

    #[test]
    fn round_trip_common_and_rare_members() {
        let plain = entry(b"a/b", EntryKind::File);
        let mut link = entry(b"l", EntryKind::Symlink);
        link.link = Some(b"target".to_vec());
        let mut rare = entry(b"\xffdev", EntryKind::CharDev);
        rare.dev_major = 1;
        rare.dev_minor = 3;
        rare.xattrs = vec![(b"user.a".to_vec(), b"\0".to_vec())];
        rare.sparse = Some(vec![SparseChunk { offset: 4, len: 3 }]);
        rare.stored_size = 3;
        let mut es = Entries::new();
        for e in [&plain, &link, &rare] {
            es.push(e).unwrap();
        }
        assert_eq!(es.len(), 3);
        for (i, e) in [plain, link, rare].into_iter().enumerate() {
            let mut want = e.clone();
            want.mode = if e.kind == EntryKind::Symlink {
                0o777
            } else {
                e.mode & 0o7777
            };
            want.gid = u64::from(u32::MAX);
            assert_eq!(es.entry(i).unwrap(), want, "member {i}");
        }
        assert_eq!(es.link(1), Some(&b"target"[..]));
        assert!(es.meta(3).is_none());
        // The same members from their encoding and index.
        let rare: Vec<u32> = es.rare_members().collect();
        assert_eq!(rare, [2]);
        let back = Entries::from_encoded(es.encoded(), es.starts().to_vec(), &rare).unwrap();
        assert_eq!(back, es);
        assert_eq!(back.link(1), Some(&b"target"[..]));
        // An index that does not fit the bytes is refused.
        let (bytes, starts) = (es.encoded(), es.starts().to_vec());
        assert!(Entries::from_encoded(bytes, vec![0, 5, 5], &rare).is_err());
        assert!(Entries::from_encoded(bytes, vec![1, 5, 9], &rare).is_err());
        assert!(Entries::from_encoded(&bytes[..starts[2] as usize], starts.clone(), &rare).is_err());
        assert!(Entries::from_encoded(bytes, starts.clone(), &[1]).is_err());
        assert!(Entries::from_encoded(bytes, starts.clone(), &[2, 2]).is_err());
        // Damage past the index check gives `None` from the accessors, never a panic.
        for at in 0..bytes.len() {
            for cut in [at + 1, bytes.len()] {
                let mut bad = bytes[..cut].to_vec();
                bad[at] ^= 0xff;
                if let Ok(e) = Entries::from_encoded(&bad, starts.clone(), &[]) {
                    for i in 0..4 {
                        let _ = (e.meta(i), e.path(i), e.kind(i), e.link(i), e.entry(i));
                    }
                }
            }
        }
    }
}
