//! The on-disk encoding of a [`LayerIndex`] (inside the cache envelope of `crate::cache`, which
//! adds magic, version and a checksum). Little-endian, varints for numbers. `decode` trusts
//! nothing: every count is bounded by the bytes that remain, every offset by the blob length.
//!
//! Layout: `FORMAT_VERSION u32 | blob_len varint | diff_id str | seek kind u8 | seek bytes |
//! entry count varint | path and link bytes varint | entries`. An entry: `path bytes | kind u8 |
//! mode | uid | gid | mtime (zigzag) | nsec | size | data_offset | stored_size | link (flag,
//! bytes) | major | minor | xattr count, (name, value)* | sparse (flag, count, (offset, len)*) |
//! header_offset`. [`decode_from`] reads it piece by piece from a cache file.

use super::entries::{Entries, Meta};
use super::{LayerIndex, SeekIndex};
use crate::blob::{gzip, zstd};
use crate::tarindex::{Entry, EntryKind, SparseChunk};
use crate::varint::{Chunked, Reader, Writer};
use std::io::Read;
use std::sync::Arc;

/// Version of this encoding. History: 1 = first format; 2 = total bytes of paths and link
/// targets after the entry count (the decoder reserves exactly, streaming).
pub const FORMAT_VERSION: u32 = 2;

/// Smallest encoded entry: one byte for each of its 16 lengths, numbers, flags and the kind.
const MIN_ENTRY_BYTES: u64 = 16;

/// Why a cached index was refused.
#[derive(Debug, thiserror::Error)]
#[error("layer index: {0}")]
pub struct FormatError(&'static str);

impl From<crate::varint::Truncated> for FormatError {
    fn from(e: crate::varint::Truncated) -> Self {
        FormatError(e.0)
    }
}

type Result<T> = std::result::Result<T, FormatError>;

/// Encodes an index of a blob of `blob_len` bytes.
pub fn encode(index: &LayerIndex, blob_len: u64) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + index.entries.len() * 64));
    w.0.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    w.num(blob_len);
    w.bytes(index.diff_id.to_string().as_bytes());
    match &index.seek {
        SeekIndex::None => w.0.push(0),
        SeekIndex::Gzip(g) => {
            w.0.push(1);
            w.bytes(&g.to_bytes());
        }
        SeekIndex::Zstd(z) => {
            w.0.push(2);
            w.bytes(&z.to_bytes());
        }
    }
    w.num(index.entries.len() as u64);
    w.num(index.entries.name_bytes() as u64);
    for e in (0..index.entries.len()).filter_map(|i| index.entries.entry(i)) {
        w.entry(&e);
    }
    w.0
}

/// Decodes an index, checking it belongs to a blob of `blob_len` bytes.
pub fn decode(data: &[u8], blob_len: u64) -> Result<LayerIndex> {
    let mut c = Chunked::new(data, data.len() as u64);
    let index = decode_from(&mut c, blob_len)?;
    c.finish()?;
    Ok(index)
}

/// Decodes an index from `c` one piece at a time (the caller checks `c.finish()`).
pub fn decode_from<R: Read>(c: &mut Chunked<R>, blob_len: u64) -> Result<LayerIndex> {
    let (diff_id, seek) = c.next(|r| {
        if r.take(4)? != FORMAT_VERSION.to_le_bytes() {
            return Err(FormatError("other format version"));
        }
        if r.num()? != blob_len {
            return Err(FormatError("blob length differs"));
        }
        let diff_id = std::str::from_utf8(r.bytes()?)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(FormatError("bad diff_id"))?;
        Ok((diff_id, r.seek()?))
    })?;
    let count = c.count(MIN_ENTRY_BYTES)?;
    let path_bytes = c.count(1)?;
    let mut entries = Entries::new();
    entries.reserve(count, path_bytes);
    for _ in 0..count {
        c.next(|r| r.push_entry(&mut entries))?;
    }
    entries.shrink();
    Ok(LayerIndex { entries, seek, diff_id })
}

impl Writer {
    fn entry(&mut self, e: &Entry) {
        self.bytes(&e.path);
        self.0.push(kind_code(e.kind));
        self.num(u64::from(e.mode));
        self.num(e.uid);
        self.num(e.gid);
        self.num(((e.mtime << 1) ^ (e.mtime >> 63)) as u64);
        self.num(u64::from(e.mtime_nsec));
        self.num(e.size);
        self.num(e.data_offset);
        self.num(e.stored_size);
        match &e.link {
            None => self.0.push(0),
            Some(l) => {
                self.0.push(1);
                self.bytes(l);
            }
        }
        self.num(u64::from(e.dev_major));
        self.num(u64::from(e.dev_minor));
        self.num(e.xattrs.len() as u64);
        for (k, v) in &e.xattrs {
            self.bytes(k);
            self.bytes(v);
        }
        match &e.sparse {
            None => self.0.push(0),
            Some(chunks) => {
                self.0.push(1);
                self.num(chunks.len() as u64);
                for c in chunks {
                    self.num(c.offset);
                    self.num(c.len);
                }
            }
        }
        self.num(e.header_offset);
    }
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

fn kind_from(c: u8) -> Result<EntryKind> {
    Ok(match c {
        0 => EntryKind::File,
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        3 => EntryKind::Hardlink,
        4 => EntryKind::CharDev,
        5 => EntryKind::BlockDev,
        6 => EntryKind::Fifo,
        _ => return Err(FormatError("bad entry kind")),
    })
}

impl Reader<'_> {
    fn seek(&mut self) -> Result<SeekIndex> {
        Ok(match self.byte()? {
            0 => SeekIndex::None,
            1 => SeekIndex::Gzip(Arc::new(
                gzip::GzipIndex::from_bytes(self.bytes()?).map_err(|_| FormatError("bad gzip index"))?,
            )),
            2 => SeekIndex::Zstd(Arc::new(
                zstd::ZstdIndex::from_bytes(self.bytes()?).map_err(|_| FormatError("bad zstd index"))?,
            )),
            _ => return Err(FormatError("bad seek kind")),
        })
    }

    /// Decodes one member straight into `entries` (see `Writer::entry` for the layout).
    fn push_entry(&mut self, entries: &mut Entries) -> Result<()> {
        let path = self.bytes()?;
        let kind = kind_from(self.byte()?)?;
        let mode = self.u32()?;
        let uid = u32::try_from(self.num()?).unwrap_or(u32::MAX);
        let gid = u32::try_from(self.num()?).unwrap_or(u32::MAX);
        let z = self.num()?;
        let mtime = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let mtime_nsec = self.u32()?;
        let size = self.num()?;
        let data_offset = self.num()?;
        let stored_size = self.num()?;
        let link = match self.byte()? {
            0 => None,
            1 => Some(self.bytes()?),
            _ => return Err(FormatError("bad link flag")),
        };
        let dev_major = self.u32()?;
        let dev_minor = self.u32()?;
        let nx = self.count(2)?;
        let mut xattrs = Vec::with_capacity(nx);
        for _ in 0..nx {
            xattrs.push((Box::from(self.bytes()?), Box::from(self.bytes()?)));
        }
        let sparse = match self.byte()? {
            0 => None,
            1 => {
                let n = self.count(2)?;
                let mut chunks = Vec::with_capacity(n);
                for _ in 0..n {
                    chunks.push(SparseChunk {
                        offset: self.num()?,
                        len: self.num()?,
                    });
                }
                Some(chunks)
            }
            _ => return Err(FormatError("bad sparse flag")),
        };
        let _header_offset = self.num()?;
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
            xattrs: &xattrs,
            sparse: sparse.as_deref(),
        };
        entries.push_meta(&meta).map_err(|_| FormatError("too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn sample() -> LayerIndex {
        let e = Entry {
            path: b"usr/bin/\xff".to_vec(),
            kind: EntryKind::File,
            mode: 0o4755,
            uid: 1000,
            gid: u64::from(u32::MAX),
            mtime: -5,
            mtime_nsec: 123,
            size: 10,
            data_offset: 1536,
            stored_size: 4,
            link: Some(b"x".to_vec()),
            dev_major: 1,
            dev_minor: 3,
            xattrs: vec![(b"user.a".to_vec(), b"\0b".to_vec())],
            sparse: Some(vec![SparseChunk { offset: 6, len: 4 }]),
            header_offset: 1024,
        };
        let mut entries = Entries::new();
        entries.push(&e).unwrap();
        entries.push(&e).unwrap();
        LayerIndex {
            entries,
            seek: SeekIndex::None,
            diff_id: Digest::sha256_of(b"x"),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample(), 4096);
        let back = decode(&bytes, 4096).unwrap();
        assert_eq!(back.entries, sample().entries);
        assert_eq!(back.diff_id, sample().diff_id);
        assert!(decode(&bytes, 4097).is_err());
    }

    #[test]
    fn truncations_never_panic_and_fail() {
        let bytes = encode(&sample(), 4096);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], 4096).is_err(), "prefix {n} accepted");
        }
    }
}
