//! The one sequential pass over a layer blob: hash the compressed bytes, decompress (recording
//! access points), hash the uncompressed bytes, and index the tar headers, all at once.

use super::entries::Entries;
use super::hash_thread::HashThread;
use super::{Compression, LayerError, LayerIndex, SeekIndex};
use crate::blob::verified::{ChunkHasher, CHUNK_SHIFT, RAW_CHUNK_SHIFT};
use crate::blob::{gzip, zstd, Cursor, ReadAt};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::tarindex::StreamIndexer;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::time::Instant;

/// Read size of the pass over the compressed blob.
const READ_CHUNK: usize = 1 << 20;
/// Parsed members are moved into the compact form in batches of this many.
const DRAIN_EVERY: usize = 1024;
/// Progress is logged at most this often for big layers.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Detects compression from the first bytes.
pub fn sniff(blob: &dyn ReadAt) -> io::Result<Compression> {
    let mut head = [0u8; 4];
    let n = blob.read_at(&mut head, 0)?;
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

/// A reader that hashes everything read through it: the whole blob (unless the codec does)
/// and each of its chunks (`blob::verified`).
struct BlobHasher<R> {
    inner: R,
    hasher: Option<Hasher>,
    chunks: ChunkHasher,
    read: u64,
    /// The blob's own read failure, kept typed: the codec above only passes its text on, and
    /// whether it is transient (a registry that went away) decides if the layer is retried.
    failed: Option<Arc<io::Error>>,
}

impl<R: Read> Read for BlobHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failed = Some(Arc::new(e));
                return Err(copy);
            }
        };
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.chunks.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Indexes a layer, verifying its digest and (when known) its diff_id; zstd checkpoints' sparse
/// windows go to `spill` as they are made when there is one (`cache::Spill`).
pub fn build_index(
    blob: &dyn ReadAt,
    digest: &Digest,
    diff_id: Option<&str>,
    spacing: u64,
    zstd_checkpoints: bool,
    spill: Option<crate::cache::Spill>,
) -> Result<LayerIndex, LayerError> {
    let io_err = |e: io::Error| LayerError::Io {
        digest: digest.clone(),
        source: Arc::new(e),
    };
    blob.advise_sequential();
    let compression = sniff(blob).map_err(io_err)?;
    // The gzip and zstd index builders hash the compressed stream themselves (sha256): hash
    // here only what they don't.
    let codec_hashes = compression != Compression::None && digest.algorithm() == Algorithm::Sha256;
    let mut reader = BlobHasher {
        inner: BufReader::with_capacity(READ_CHUNK, Cursor::new(blob, 0)),
        hasher: (!codec_hashes).then(|| digest.hasher()),
        chunks: ChunkHasher::new(if compression == Compression::None {
            RAW_CHUNK_SHIFT
        } else {
            CHUNK_SHIFT
        }),
        read: 0,
        failed: None,
    };
    let mut tar = StreamIndexer::new();
    let mut tar_error = None;
    // Members move into the compact form as they come, so a big layer never holds them all as
    // `Entry` values (the peak memory of indexing stays about that of the result).
    let mut entries = Entries::new();
    let mut store_error = None;
    // For an uncompressed layer the diff_id is the digest: don't hash the bytes twice.
    let mut uncompressed = (compression != Compression::None).then(|| HashThread::new(Algorithm::Sha256));
    let started = Instant::now();
    let mut last_log = started;
    let mut out_bytes = 0u64;
    let mut sink = |data: &[u8]| -> io::Result<()> {
        if let Some(h) = uncompressed.as_mut() {
            h.update(data);
        }
        out_bytes += data.len() as u64;
        if last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            log::info!(
                "indexing layer {digest}: {} MiB, {:.0} MiB/s",
                out_bytes >> 20,
                out_bytes as f64 / 1048576.0 / secs
            );
        }
        tar.feed(data).map_err(|e| {
            let msg = crate::error_chain::text(&e);
            tar_error = Some(msg.clone());
            io::Error::new(io::ErrorKind::InvalidData, msg)
        })?;
        if tar.entries_so_far() >= DRAIN_EVERY {
            for e in tar.take_entries() {
                if let Err(err) = entries.push(&e) {
                    store_error = Some(err.to_string());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, err.to_string()));
                }
            }
        }
        Ok(())
    };
    let decompress_err = |reason: String| LayerError::Decompress {
        digest: digest.clone(),
        reason,
    };
    let seek = match compression {
        Compression::None => copy_to_sink(&mut reader, &mut sink)
            .map(|()| SeekIndex::None)
            .map_err(io_err),
        Compression::Gzip => gzip::build_index(&mut reader, spacing, &mut sink)
            .map(|i| SeekIndex::Gzip(Arc::new(i)))
            .map_err(|e| decompress_err(e.to_string())),
        Compression::Zstd => zstd::build_index_spilling(
            &mut reader,
            zstd_checkpoints.then_some(zstd::DEFAULT_CHECKPOINT_SPACING),
            spill,
            &mut sink,
        )
        .map(|i| SeekIndex::Zstd(Arc::new(i)))
        .map_err(|e| decompress_err(e.to_string())),
    };
    // A broken tar stream stops the sink, which the decompressor reports as its own failure:
    // name the real cause.
    let tar_err = |reason: String| LayerError::Tar {
        digest: digest.clone(),
        reason,
    };
    if let Some(source) = reader.failed.take() {
        return Err(LayerError::Io {
            digest: digest.clone(),
            source,
        });
    }
    if let Some(reason) = tar_error.or(store_error) {
        // A damaged compressed stream often inflates to garbage before the inflater notices,
        // and the tar parser is the first to complain: when the blob is not the layer's, say
        // that instead of blaming the tar.
        if let Some(err) = digest_mismatch(blob, digest) {
            return Err(err);
        }
        // The blob is the one the digest names (its publisher wrote it damaged): blame the
        // compressed stream if it is broken, the tar only if it is not.
        if let Some(reason) = stream_error(blob, compression, spacing) {
            return Err(decompress_err(reason));
        }
        return Err(tar_err(reason));
    }
    let seek = match seek {
        Err(err @ LayerError::Decompress { .. }) => return Err(digest_mismatch(blob, digest).unwrap_or(err)),
        seek => seek?,
    };
    if let SeekIndex::Zstd(z) = &seek {
        let bytes: usize = z.checkpoints().iter().map(zstd::Checkpoint::encoded_len).sum();
        log::info!(
            "layer {digest}: {} zstd frames, {} KiB of zstd checkpoints: {}",
            z.frames().len(),
            bytes >> 10,
            z.checkpoints().len()
        );
    }
    // Anything after the compressed stream still counts towards the digest. The codecs read
    // their input to the end, so when they did the hashing nothing may be left.
    let rest = io::copy(&mut reader, &mut io::sink()).map_err(io_err)?;
    let actual = match (reader.hasher.take(), &seek) {
        (Some(h), _) => h.finish(),
        (None, SeekIndex::Gzip(g)) if rest == 0 => Digest::sha256_from_raw(g.compressed_sha256()),
        (None, SeekIndex::Zstd(z)) if rest == 0 => Digest::sha256_from_raw(z.compressed_sha256()),
        _ => {
            return Err(io_err(io::Error::other(
                "bytes after the compressed stream were not hashed",
            )))
        }
    };
    if &actual != digest {
        return Err(LayerError::DigestMismatch {
            digest: digest.clone(),
            actual,
        });
    }
    let diff = match uncompressed {
        Some(h) => h.finish().map_err(io_err)?,
        None => actual.clone(),
    };
    if let Some(expected) = diff_id {
        if expected != diff.to_string() {
            return Err(LayerError::DiffIdMismatch {
                digest: digest.clone(),
                expected: expected.to_owned(),
                actual: diff,
            });
        }
    }
    for e in tar.finish().map_err(|e| tar_err(e.to_string()))? {
        entries.push(&e).map_err(|e| tar_err(e.to_string()))?;
    }
    entries.shrink();
    log::info!(
        "indexed layer {digest}: {} entries, {} MiB in {:.2}s",
        entries.len(),
        out_bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    let chunks = reader.chunks.finish();
    if chunks.blob_len() != blob.len() {
        return Err(io_err(io::Error::other(format!(
            "read {} bytes of a {}-byte blob",
            chunks.blob_len(),
            blob.len()
        ))));
    }
    Ok(LayerIndex {
        entries,
        seek,
        diff_id: diff,
        digest: digest.clone(),
        chunks: Arc::new(chunks),
    })
}

/// After an index pass failed part way: hashes the whole blob (raw reads: a registry blob does
/// not refuse its end) and returns the mismatch when it is not the layer's digest. None when it
/// matches or cannot be read (the caller's own error then stands).
fn digest_mismatch(blob: &dyn ReadAt, digest: &Digest) -> Option<LayerError> {
    let mut hasher = digest.hasher();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut at = 0u64;
    while at < blob.len() {
        let want = buf.len().min((blob.len() - at).min(usize::MAX as u64) as usize);
        match blob.read_raw_at(&mut buf[..want], at) {
            Ok(0) | Err(_) => return None,
            Ok(n) => {
                hasher.update(&buf[..n]);
                at += n as u64;
            }
        }
    }
    let actual = hasher.finish();
    (&actual != digest).then(|| LayerError::DigestMismatch {
        digest: digest.clone(),
        actual,
    })
}

/// Decompresses the whole blob with nowhere to put the output; the error if the compressed
/// stream itself is broken.
fn stream_error(blob: &dyn ReadAt, compression: Compression, spacing: u64) -> Option<String> {
    let mut input = BufReader::with_capacity(READ_CHUNK, Cursor::new(blob, 0));
    let mut discard = |_: &[u8]| Ok(());
    match compression {
        Compression::None => None,
        Compression::Gzip => gzip::build_index(&mut input, spacing, &mut discard)
            .err()
            .map(|e| e.to_string()),
        Compression::Zstd => zstd::build_index(&mut input, &mut discard).err().map(|e| e.to_string()),
    }
}

fn copy_to_sink(r: &mut impl Read, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        sink(&buf[..n])?;
    }
}
