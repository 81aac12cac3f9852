//! The outer file of an archive source: plain tar, or a tar compressed as a whole
//! (`docker save | gzip`, `| zstd`).
//!
//! A compressed tar is made randomly readable once: one pass inflates it, records gzip access
//! points (or zstd frames), and the index is cached keyed by the file's identity. After that a
//! member is read by decompressing from the nearest access point only. Compression is detected
//! by magic bytes, never by file name.

use super::{Result, SourceError};
use crate::blob::{gzip, zstd, FileBlob, ReadAt};
use crate::cache::Cache;
use crate::progress::LayerState;
use sha2::{Digest as _, Sha256};
use std::fs::{File, Metadata};
use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

/// Output spacing of access points in an outer archive: blobs are read whole or in large
/// ranges, so coarser than for layers keeps the index small.
const OUTER_GZIP_SPACING: u64 = 4 << 20;

/// Compression of a byte stream, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression recognized.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd frame (`28 b5 2f fd`).
    Zstd,
}

/// Sniffs the first bytes of a stream.
pub fn sniff(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

/// The name of a whole-file compression imgfs recognises but cannot read in place: xz and
/// bzip2 streams have no access points to restart from, so a member could only be reached by
/// decompressing everything before it on every read (docs/layout.md says why they are refused).
pub fn unreadable_compression(head: &[u8]) -> Option<&'static str> {
    match head {
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some("xz"),
        [b'B', b'Z', b'h', b'1'..=b'9', ..] => Some("bzip2"),
        _ => None,
    }
}

/// Opens a file source, decompressing it transparently when it is gzip or zstd.
pub fn open_file(path: &Path, meta: &Metadata, cache: &Cache) -> Result<Arc<dyn ReadAt>> {
    let file = File::open(path).map_err(|e| SourceError::io(path, "cannot open", e))?;
    let blob = FileBlob::new(file).map_err(|e| SourceError::io(path, "cannot stat", e))?;
    let blob: Arc<dyn ReadAt> = Arc::new(blob.with_path(path));
    let mut head = [0u8; 6];
    let n = blob
        .read_at(&mut head, 0)
        .map_err(|e| SourceError::io(path, "cannot read", e))?;
    if let Some(name) = unreadable_compression(&head[..n]) {
        return Err(SourceError::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "compressed with {name} as a whole, which imgfs cannot read in place; decompress it first \
                 ({name} -dk FILE), or compress it with gzip or zstd instead"
            ),
        });
    }
    let key = identity_key(path, meta);
    let compressed = match sniff(&head[..n]) {
        Compression::None => return Ok(blob),
        Compression::Gzip => open_gzip(blob, path, &key, cache),
        Compression::Zstd => open_zstd(blob, path, &key, cache),
    };
    compressed.map_err(|e| SourceError::io(path, "cannot decompress", e))
}

/// A key that changes whenever the file does: the index is only valid for these exact bytes.
pub(super) fn identity_key(path: &Path, meta: &Metadata) -> String {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let id = format!(
        "{}\0{}\0{}\0{}\0{}\0{}",
        canonical.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino(),
        meta.dev()
    );
    let sum = Sha256::digest(id.as_bytes());
    sum.iter().map(|b| format!("{b:02x}")).collect()
}

/// The progress of indexing the archive `path` (shown as a bar on a terminal).
fn opening_task(path: &Path, blob: &dyn ReadAt) -> Arc<crate::progress::LayerProgress> {
    let name = path
        .file_name()
        .map_or(path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let progress = crate::progress::opening().task(&name, blob.len());
    progress.set(LayerState::Indexing);
    progress
}

fn open_gzip(blob: Arc<dyn ReadAt>, path: &Path, key: &str, cache: &Cache) -> std::io::Result<Arc<dyn ReadAt>> {
    let index = match cache
        .load("outer-gzip", key)
        .and_then(|b| gzip::GzipIndex::from_bytes(&b).ok())
    {
        Some(index) => index,
        None => {
            log::info!("{}: building a seek index of the gzip stream (once)", path.display());
            let progress = opening_task(path, blob.as_ref());
            let counted = progress.counting(blob.as_ref());
            let reader = BufReader::with_capacity(1 << 20, crate::blob::Cursor::new(&counted, 0));
            let index = gzip::build_index(reader, OUTER_GZIP_SPACING, &mut |_| Ok(())).map_err(|e| {
                progress.fail(e.to_string(), false);
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
            })?;
            progress.set(LayerState::Ready);
            cache.store("outer-gzip", key, &index.to_bytes());
            index
        }
    };
    Ok(Arc::new(gzip::GzipReader::new(blob, Arc::new(index))?))
}

fn open_zstd(blob: Arc<dyn ReadAt>, path: &Path, key: &str, cache: &Cache) -> std::io::Result<Arc<dyn ReadAt>> {
    let index = match cache
        .load("outer-zstd", key)
        .and_then(|b| zstd::ZstdIndex::from_bytes(&b).ok())
    {
        Some(index) => index,
        None => {
            log::info!("{}: building a seek index of the zstd stream (once)", path.display());
            let progress = opening_task(path, blob.as_ref());
            let counted = progress.counting(blob.as_ref());
            let reader = BufReader::with_capacity(1 << 20, crate::blob::Cursor::new(&counted, 0));
            let index = zstd::build_index(reader, &mut |_| Ok(())).map_err(|e| {
                progress.fail(e.to_string(), false);
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
            })?;
            progress.set(LayerState::Ready);
            cache.store("outer-zstd", key, &index.to_bytes());
            index
        }
    };
    Ok(Arc::new(zstd::ZstdReader::new(blob, Arc::new(index))?))
}
