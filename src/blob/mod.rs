//! Random-access bytes: the one interface every later stage reads through.
//!
//! A blob is anything with a length that can be read at an offset without a shared cursor, so
//! many FUSE threads can read one blob at once. Files use `pread`; a member of an archive is a
//! [`Range`] over its parent; compressed streams wrap a `ReadAt` of their compressed bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

pub mod chunk_cache;
pub mod codec_error;
mod codec_io;
/// Seeded test data, for the tests of the modules above the codecs (`layer::format`).
#[cfg(test)]
pub(crate) use codec_io::test_util;
pub mod gzip;
pub mod indexed;
pub mod readahead;
pub mod verified;
pub mod zstd;

/// A failed read whose cause knows whether it may go away by itself (a registry that was down
/// or slow): carried inside an `io::Error` so the cause keeps its type through the readers.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source}")]
pub struct ClassifiedFailure {
    /// True when the same read may succeed later (unreachable, timed out, 5xx, 429, cut stream).
    pub transient: bool,
    /// What went wrong.
    pub source: Arc<dyn std::error::Error + Send + Sync>,
}

impl ClassifiedFailure {
    /// `source` as an `io::Error`.
    pub fn io(transient: bool, source: Arc<dyn std::error::Error + Send + Sync>) -> io::Error {
        let kind = if transient {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, ClassifiedFailure { transient, source })
    }
}

/// True when a failed read may succeed if tried again later: a [`ClassifiedFailure`] says so,
/// else the kind does (timeouts, refused or reset connections, interrupted waits). Corrupt
/// data, missing files and everything else are permanent.
pub fn is_transient(e: &io::Error) -> bool {
    if let Some(c) = e.get_ref().and_then(|i| i.downcast_ref::<ClassifiedFailure>()) {
        return c.transient;
    }
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

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
    /// Advice that the caller is about to read everything from offset 0 in order (a layer's
    /// index pass). Local data ignores it; a registry blob starts one streaming download
    /// instead of answering the reads with Range requests.
    fn advise_sequential(&self) {}
    /// Hint from a reader going through `[from, to)` in order (a file being read sequentially):
    /// compressed streams decompress what follows `from` on other cores meanwhile
    /// (`chunk_cache` read-ahead). Never blocks; others ignore it.
    fn read_ahead(&self, _from: u64, _to: u64) {}
    /// True when the data refuses any read that reaches its end unless all of it matches its
    /// digest, so `verify::Verifier` need not hash it (registry blobs: hashing would
    /// download them whole).
    fn verifies_itself(&self) -> bool {
        false
    }
    /// Like [`Self::read_at`], for a caller that verifies the bytes itself chunk by chunk
    /// (`verified::VerifiedBlob`): a blob that checks its whole digest before serving its end
    /// (a registry blob) skips that check, which would fail every read of a blob with one bad
    /// chunk. Others read as usual.
    fn read_raw_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.read_at(buf, offset)
    }
    /// What names these exact bytes on this machine, if anything does: a local file's device,
    /// inode, size, mtime and ctime (any write, `touch` or replacement changes one of them),
    /// plus the window of an archive member. A layer index built from a blob with an identity
    /// is trusted for that blob without re-hashing its chunks (`layer/mod.rs`).
    fn identity(&self) -> Option<String> {
        None
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
pub fn read_exact_at(r: &dyn ReadAt, buf: &mut [u8], offset: u64) -> io::Result<()> {
    fill_at(buf, offset, |b, o| r.read_at(b, o))
}

/// [`read_exact_at`] through [`ReadAt::read_raw_at`].
pub fn read_raw_exact_at(r: &dyn ReadAt, buf: &mut [u8], offset: u64) -> io::Result<()> {
    fill_at(buf, offset, |b, o| r.read_raw_at(b, o))
}

fn fill_at(mut buf: &mut [u8], mut offset: u64, read: impl Fn(&mut [u8], u64) -> io::Result<usize>) -> io::Result<()> {
    while !buf.is_empty() {
        let n = read(buf, offset)?;
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
///
/// The file may change under a mount (rewritten in place, truncated, deleted or replaced), and
/// bytes read then would be wrong while every index built from the old bytes still points into
/// them. So every read checks, after `pread`, that the file's size and mtime are those seen at
/// open and that it still has a name; otherwise the read fails (EIO for FUSE) with a message
/// saying what changed. A write that changed the bytes read has updated the mtime before they
/// could be read, so a check after the read cannot miss it (writes through `mmap` aside).
#[derive(Debug)]
pub struct FileBlob {
    file: File,
    len: u64,
    mtime: (i64, i64),
    path: Option<std::path::PathBuf>,
}

impl FileBlob {
    /// Wraps an open file, taking its current length.
    pub fn new(file: File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            file,
            path: None,
        })
    }

    /// Names the file in error messages.
    pub fn with_path(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }

    /// Fails when the file is no longer what it was at open.
    fn check_unchanged(&self) -> io::Result<()> {
        let meta = self.file.metadata()?;
        let what = if meta.nlink() == 0 {
            "was deleted or replaced".to_owned()
        } else if meta.len() != self.len {
            format!("changed size from {} to {} bytes", self.len, meta.len())
        } else if (meta.mtime(), meta.mtime_nsec()) != self.mtime {
            "was modified".to_owned()
        } else {
            return Ok(());
        };
        let name = self
            .path
            .as_ref()
            .map_or_else(|| "a source file".into(), |p| p.display().to_string());
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name} {what} since it was opened; remount to read it"),
        ))
    }
}

impl ReadAt for FileBlob {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let want = buf.len().min((self.len - offset).min(usize::MAX as u64) as usize);
        let n = loop {
            match self.file.read_at(&mut buf[..want], offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        self.check_unchanged()?;
        n
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn identity(&self) -> Option<String> {
        let m = self.file.metadata().ok()?;
        (m.len() == self.len && (m.mtime(), m.mtime_nsec()) == self.mtime && m.nlink() > 0).then(|| {
            format!(
                "file {}:{} size {} mtime {}.{:09} ctime {}.{:09}",
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            )
        })
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
    fn identity(&self) -> Option<String> {
        Some(format!("{} bytes {}+{}", self.parent.identity()?, self.start, self.len))
    }
    fn read_ahead(&self, from: u64, to: u64) {
        if from < self.len {
            self.parent.read_ahead(self.start + from, self.start + to.min(self.len));
        }
    }
    fn read_raw_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - offset).min(usize::MAX as u64) as usize);
        self.parent.read_raw_at(&mut buf[..n], self.start + offset)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn file_blob_fails_once_its_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        type Change<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);
        let cases: &[Change] = &[
            (
                "rewritten",
                &|p| std::fs::write(p, b"abcdefghij").unwrap(),
                "was modified",
            ),
            (
                "truncated",
                &|p| File::options().write(true).open(p).unwrap().set_len(4).unwrap(),
                "changed size from 10 to 4",
            ),
            (
                "deleted",
                &|p| std::fs::remove_file(p).unwrap(),
                "was deleted or replaced",
            ),
        ];
        for (what, change, message) in cases {
            std::fs::write(&path, b"0123456789").unwrap();
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
            let blob = FileBlob::new(File::open(&path).unwrap()).unwrap().with_path(&path);
            let mut buf = [0u8; 4];
            assert_eq!(blob.read_at(&mut buf, 2).unwrap(), 4);
            assert_eq!(&buf, b"2345");
            change(&path);
            let err = blob.read_at(&mut buf, 2).unwrap_err();
            assert!(err.to_string().contains(message), "{what}: {err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{what}: {err}");
        }
    }
}
