//! The tar members of a layer in a compact form: the fields every member has in one fixed-size
//! record, all path bytes (and symlink targets) in one arena, and the rare fields (xattrs,
//! sparse maps, device numbers, hardlink and symlink targets) in a side table. About 56 bytes a
//! member plus its path, instead of a heap-allocated `Entry` of ~200 bytes plus allocations: a
//! mount keeps every member of every layer it shows in memory.

use crate::tarindex::{Entry, EntryKind, SparseChunk};

/// One extended attribute: (name, value).
pub type Xattr = (Box<[u8]>, Box<[u8]>);

/// `Record::extra` of a member without rare fields.
const NO_EXTRA: u32 = u32::MAX;

/// Why a member cannot be stored.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("layer too large for the index: {0}")]
pub struct EntriesError(&'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    mtime: i64,
    size: u64,
    data_offset: u64,
    path_off: u32,
    path_len: u32,
    uid: u32,
    gid: u32,
    mtime_nsec: u32,
    extra: u32,
    mode: u16,
    kind: EntryKind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Extra {
    link: Option<(u32, u32)>,
    stored_size: u64,
    dev_major: u32,
    dev_minor: u32,
    xattrs: Vec<Xattr>,
    sparse: Option<Box<[SparseChunk]>>,
}

/// The members of one layer, in archive order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    records: Vec<Record>,
    arena: Vec<u8>,
    extras: Vec<Extra>,
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
        self.records.len()
    }

    /// Bytes of all paths and link targets together (what [`Entries::reserve`] takes).
    pub fn name_bytes(&self) -> usize {
        self.arena.len()
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn store(&mut self, bytes: &[u8]) -> Result<(u32, u32), EntriesError> {
        let off = u32::try_from(self.arena.len()).map_err(|_| EntriesError("over 4 GiB of path names"))?;
        let len = u32::try_from(bytes.len()).map_err(|_| EntriesError("a path over 4 GiB"))?;
        off.checked_add(len).ok_or(EntriesError("over 4 GiB of path names"))?;
        self.arena.extend_from_slice(bytes);
        Ok((off, len))
    }

    /// Appends a member.
    pub fn push(&mut self, e: &Entry) -> Result<(), EntriesError> {
        let xattrs: Vec<Xattr> = e
            .xattrs
            .iter()
            .map(|(k, v)| (k.clone().into(), v.clone().into()))
            .collect();
        self.push_meta(&Meta {
            path: &e.path,
            kind: e.kind,
            mode: e.mode,
            uid: u32::try_from(e.uid).unwrap_or(u32::MAX),
            gid: u32::try_from(e.gid).unwrap_or(u32::MAX),
            mtime: e.mtime,
            mtime_nsec: e.mtime_nsec,
            size: e.size,
            data_offset: e.data_offset,
            stored_size: e.stored_size,
            link: e.link.as_deref(),
            dev_major: e.dev_major,
            dev_minor: e.dev_minor,
            xattrs: &xattrs,
            sparse: e.sparse.as_deref(),
        })
    }

    /// Appends a member given by borrowed fields (decoding a cached index allocates nothing
    /// per member this way).
    pub fn push_meta(&mut self, e: &Meta<'_>) -> Result<(), EntriesError> {
        let (path_off, path_len) = self.store(e.path)?;
        let rare = e.link.is_some()
            || e.dev_major != 0
            || e.dev_minor != 0
            || !e.xattrs.is_empty()
            || e.sparse.is_some()
            || e.stored_size != e.size;
        let extra = if rare {
            let link = match e.link {
                Some(l) => Some(self.store(l)?),
                None => None,
            };
            self.extras.push(Extra {
                link,
                stored_size: e.stored_size,
                dev_major: e.dev_major,
                dev_minor: e.dev_minor,
                xattrs: e.xattrs.to_vec(),
                sparse: e.sparse.map(Into::into),
            });
            u32::try_from(self.extras.len() - 1).map_err(|_| EntriesError("too many members"))?
        } else {
            NO_EXTRA
        };
        self.records.push(Record {
            mtime: e.mtime,
            size: e.size,
            data_offset: e.data_offset,
            path_off,
            path_len,
            uid: e.uid,
            gid: e.gid,
            mtime_nsec: e.mtime_nsec,
            extra,
            mode: (e.mode & 0o7777) as u16,
            kind: e.kind,
        });
        Ok(())
    }

    /// Reserves room for `n` more members with `path_bytes` more bytes of paths and targets.
    pub fn reserve(&mut self, n: usize, path_bytes: usize) {
        self.records.reserve(n);
        self.arena.reserve(path_bytes);
    }

    /// Frees spare capacity once complete.
    pub fn shrink(&mut self) {
        self.records.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.extras.shrink_to_fit();
    }

    fn bytes(&self, (off, len): (u32, u32)) -> &[u8] {
        self.arena.get(off as usize..off as usize + len as usize).unwrap_or(&[])
    }

    /// Path bytes of member `i` (empty if out of range).
    pub fn path(&self, i: usize) -> &[u8] {
        self.records
            .get(i)
            .map_or(&[], |r| self.bytes((r.path_off, r.path_len)))
    }

    /// Type of member `i`.
    pub fn kind(&self, i: usize) -> Option<EntryKind> {
        self.records.get(i).map(|r| r.kind)
    }

    /// Link target of member `i`.
    pub fn link(&self, i: usize) -> Option<&[u8]> {
        let r = self.records.get(i)?;
        let x = self.extras.get(r.extra as usize)?;
        x.link.map(|l| self.bytes(l))
    }

    /// Everything about member `i`.
    pub fn meta(&self, i: usize) -> Option<Meta<'_>> {
        let r = self.records.get(i)?;
        let x = self.extras.get(r.extra as usize);
        Some(Meta {
            path: self.bytes((r.path_off, r.path_len)),
            kind: r.kind,
            mode: u32::from(r.mode),
            uid: r.uid,
            gid: r.gid,
            mtime: r.mtime,
            mtime_nsec: r.mtime_nsec,
            size: r.size,
            data_offset: r.data_offset,
            stored_size: x.map_or(r.size, |x| x.stored_size),
            link: x.and_then(|x| x.link).map(|l| self.bytes(l)),
            dev_major: x.map_or(0, |x| x.dev_major),
            dev_minor: x.map_or(0, |x| x.dev_minor),
            xattrs: x.map_or(&[], |x| &x.xattrs),
            sparse: x.and_then(|x| x.sparse.as_deref()),
        })
    }

    /// Member `i` as a parser `Entry` (for encoding and tests; `header_offset` is not kept).
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
            want.mode &= 0o7777;
            want.gid = u64::from(u32::MAX);
            assert_eq!(es.entry(i).unwrap(), want, "member {i}");
        }
        assert_eq!(es.link(1), Some(&b"target"[..]));
        assert!(es.meta(3).is_none());
        assert_eq!(std::mem::size_of::<Record>(), 56);
    }
}
