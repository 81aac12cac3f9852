//! TEMPORARY shim until the real header parser lands: same API, built on the `tar` crate.
use crate::blob::{Cursor, ReadAt};
use std::io::{self, Read, Seek, SeekFrom};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind { File, Dir, Symlink, Hardlink, CharDev, BlockDev, Fifo }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>, pub kind: EntryKind, pub mode: u32, pub uid: u64, pub gid: u64,
    pub mtime: i64, pub mtime_nsec: u32, pub size: u64, pub data_offset: u64, pub stored_size: u64,
    pub link: Option<Vec<u8>>, pub dev_major: u32, pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>, pub sparse: Option<Vec<SparseChunk>>, pub header_offset: u64,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseChunk { pub offset: u64, pub len: u64 }
pub struct StreamIndexer { buf: Vec<u8> }
impl Default for StreamIndexer { fn default() -> Self { Self::new() } }
impl StreamIndexer { pub fn new() -> Self { Self { buf: Vec::new() } } pub fn feed(&mut self, d: &[u8]) -> Result<()> { self.buf.extend_from_slice(d); Ok(()) } pub fn finish(self) -> Result<Vec<Entry>> { index_seekable(&self.buf) } }
#[derive(Debug, thiserror::Error)]
pub enum TarError { #[error("truncated at offset {offset}")] Truncated { offset: u64 }, #[error("i/o")] Io(#[from] io::Error) }
pub type Result<T> = std::result::Result<T, TarError>;

struct Seeker<'a> { c: Cursor<'a>, r: &'a dyn ReadAt, pos: u64 }
impl Read for Seeker<'_> { fn read(&mut self, b: &mut [u8]) -> io::Result<usize> { let n = self.r.read_at(b, self.pos)?; self.pos += n as u64; Ok(n) } }
impl Seek for Seeker<'_> { fn seek(&mut self, s: SeekFrom) -> io::Result<u64> { self.pos = match s { SeekFrom::Start(p) => p, SeekFrom::Current(d) => (self.pos as i64 + d) as u64, SeekFrom::End(d) => (self.r.len() as i64 + d) as u64 }; Ok(self.pos) } }

pub fn index_seekable(archive: &dyn ReadAt) -> Result<Vec<Entry>> {
    let s = Seeker { c: Cursor::new(archive, 0), r: archive, pos: 0 };
    let _ = &s.c;
    let mut a = tar::Archive::new(s);
    let mut out = Vec::new();
    for e in a.entries_with_seek()? {
        let e = e?;
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => EntryKind::Dir, tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::Hardlink, tar::EntryType::Char => EntryKind::CharDev,
            tar::EntryType::Block => EntryKind::BlockDev, tar::EntryType::Fifo => EntryKind::Fifo, _ => EntryKind::File };
        let size = e.size();
        let off = e.raw_file_position();
        if off + size > archive.len() { return Err(TarError::Truncated { offset: off }); }
        out.push(Entry { path: e.path_bytes().into_owned(), kind, mode: h.mode().unwrap_or(0), uid: h.uid().unwrap_or(0), gid: h.gid().unwrap_or(0),
            mtime: h.mtime().unwrap_or(0) as i64, mtime_nsec: 0, size, data_offset: off, stored_size: size,
            link: e.link_name_bytes().map(|l| l.into_owned()), dev_major: 0, dev_minor: 0, xattrs: vec![], sparse: None, header_offset: e.raw_header_position() });
    }
    Ok(out)
}
