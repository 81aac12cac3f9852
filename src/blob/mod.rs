//! Random-access bytes: the one interface every later stage reads through.
//!
//! A blob is anything with a length that can be read at an offset without a shared cursor, so
//! many FUSE threads can read one blob at once. Files use `pread`; a member of an archive is a
//! [`Range`] over its parent; compressed streams wrap a `ReadAt` of their compressed bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

pub mod chunk_cache;
mod codec_io;
pub mod gzip;
pub mod zstd;

/// Positional reads; implementations are shared between threads.
pub trait ReadAt: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`. Returns 0 only at or past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Length of the data in bytes.
    fn len(&self) -> u64;
    /// True when the data is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
pub fn read_exact_at(r: &dyn ReadAt, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = r.read_at(buf, offset)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Reads a whole blob into memory; for small documents (JSON) only, callers bound `len` first.
pub fn read_all(r: &dyn ReadAt) -> io::Result<Vec<u8>> {
    let len = usize::try_from(r.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "blob too large"))?;
    let mut buf = vec![0; len];
    read_exact_at(r, &mut buf, 0)?;
    Ok(buf)
}

/// A local file read with `pread`; its length is fixed when opened.
#[derive(Debug)]
pub struct FileBlob {
    file: File,
    len: u64,
}

impl FileBlob {
    /// Wraps an open file, taking its current length.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl ReadAt for FileBlob {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let want = buf.len().min((self.len - offset).min(usize::MAX as u64) as usize);
        loop {
            match self.file.read_at(&mut buf[..want], offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn len(&self) -> u64 {
        self.len
    }
}

/// Bytes held in memory (synthesized documents, small test data).
impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(off) = usize::try_from(offset) else { return Ok(0) };
        if off >= self.as_slice().len() {
            return Ok(0);
        }
        let n = buf.len().min(self.as_slice().len() - off);
        buf[..n].copy_from_slice(&self[off..off + n]);
        Ok(n)
    }
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
}

/// A window `[start, start+len)` of a parent blob, e.g. one member of a tar archive.
#[derive(Clone)]
pub struct Range {
    parent: Arc<dyn ReadAt>,
    start: u64,
    len: u64,
}

impl Range {
    /// The window must lie inside the parent; callers check that against the parent's length.
    pub fn new(parent: Arc<dyn ReadAt>, start: u64, len: u64) -> io::Result<Self> {
        match start.checked_add(len) {
            Some(end) if end <= parent.len() => Ok(Self { parent, start, len }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("range {start}+{len} lies outside its {}-byte parent", parent.len()),
            )),
        }
    }
}

impl ReadAt for Range {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - offset).min(usize::MAX as u64) as usize);
        self.parent.read_at(&mut buf[..n], self.start + offset)
    }
    fn len(&self) -> u64 {
        self.len
    }
}

/// Adapts a `ReadAt` to `std::io::Read` from a starting offset (streaming passes, hashing).
pub struct Cursor<'a> {
    inner: &'a dyn ReadAt,
    pos: u64,
}

impl<'a> Cursor<'a> {
    /// Starts reading `inner` at `pos`.
    pub fn new(inner: &'a dyn ReadAt, pos: u64) -> Self {
        Self { inner, pos }
    }
}

impl io::Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
