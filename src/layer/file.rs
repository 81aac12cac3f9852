//! One regular file inside a layer: a window of the layer's uncompressed stream, expanded by the
//! sparse map when the member is a GNU sparse file (holes read as zeros).

use super::entries::Meta;
use crate::blob::ReadAt;
use std::io;
use std::sync::Arc;

/// The bytes of a file member.
pub struct FileData {
    stream: Arc<dyn ReadAt>,
    data_offset: u64,
    stored_size: u64,
    size: u64,
    /// (logical offset, length, offset in the stored data), sorted by logical offset.
    chunks: Option<Vec<(u64, u64, u64)>>,
}

impl FileData {
    /// The file of `entry` in a layer's uncompressed `stream`.
    pub fn new(stream: Arc<dyn ReadAt>, entry: &Meta<'_>) -> FileData {
        let chunks = entry.sparse.map(|list| {
            let mut stored = 0u64;
            let mut out: Vec<(u64, u64, u64)> = list
                .iter()
                .map(|c| {
                    let item = (c.offset, c.len, stored);
                    stored = stored.saturating_add(c.len);
                    item
                })
                .collect();
            out.sort_by_key(|c| c.0);
            out
        });
        FileData {
            stream,
            data_offset: entry.data_offset,
            stored_size: entry.stored_size,
            size: entry.size,
            chunks,
        }
    }

    fn read_stored(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.stored_size {
            return Ok(0);
        }
        let n = buf
            .len()
            .min((self.stored_size - offset).min(usize::MAX as u64) as usize);
        let start = self
            .data_offset
            .checked_add(offset)
            .ok_or_else(|| io::Error::other("offset overflow"))?;
        crate::blob::read_exact_at(self.stream.as_ref(), &mut buf[..n], start)?;
        Ok(n)
    }
}

impl ReadAt for FileData {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let want = buf.len().min((self.size - offset).min(usize::MAX as u64) as usize);
        let Some(chunks) = &self.chunks else {
            return self.read_stored(&mut buf[..want], offset);
        };
        let buf = &mut buf[..want];
        buf.fill(0);
        let end = offset + want as u64;
        for &(lo, len, stored) in chunks {
            let hi = lo.saturating_add(len);
            if hi <= offset || lo >= end {
                continue;
            }
            let from = lo.max(offset);
            let to = hi.min(end);
            let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
            let got = self.read_stored(dst, stored + (from - lo))?;
            if got < dst.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sparse chunk beyond stored data",
                ));
            }
        }
        Ok(want)
    }
    fn len(&self) -> u64 {
        self.size
    }
    /// Sparse files are not read ahead: their stored data is not laid out by offset, and they
    /// are rare and mostly holes.
    fn read_ahead(&self, from: u64, to: u64) {
        if self.chunks.is_none() && from < self.stored_size {
            let at = |o: u64| self.data_offset.saturating_add(o.min(self.stored_size));
            self.stream.read_ahead(at(from), at(to));
        }
    }
}
