//! Lazy, verity-style verification of a layer blob against the chunk digests its index recorded.
//!
//! When a layer is indexed, its blob (the compressed bytes, or the tar itself) is cut into
//! fixed, aligned chunks of [`CHUNK_SIZE`] bytes and the BLAKE3 hash of each is recorded
//! ([`ChunkHasher`]); the same pass hashes the whole blob, and the index is only kept when that
//! digest matches, so the list describes exactly the bytes the layer's digest names.
//! [`VerifiedBlob`] then serves a blob through that list: the first read that touches a chunk
//! reads the whole chunk, hashes it and compares; a chunk that matched is trusted for the rest
//! of the mount (a bit per chunk), one that did not fails every read that touches it with
//! [`ChunkMismatch`] (EIO for FUSE). A cached index therefore vouches only for bytes it checked,
//! whichever file, archive member, download or registry the bytes come from this time.
//!
//! Chunks are of the blob as stored, not of the decompressed stream: every byte a reader gets
//! from a gzip or zstd layer was inflated from verified input with an index built from the
//! genuine bytes, random reads hash only the chunks their decoder consumes, `blobs/` reads use
//! the same list, and one chunk size serves every compression (docs/index-format.md).

use super::ReadAt;
use crate::cache::Bytes;
use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes per verified chunk (a power of two): a random read of a small file hashes at most
/// one chunk more than its decoder consumes, and the list costs 32 bytes per 64 KiB of blob
/// (0.05%). What it costs the bench rows: docs/benchmarks.md.
pub const CHUNK_SHIFT: u8 = 16;
/// [`CHUNK_SHIFT`] as a size.
pub const CHUNK_SIZE: u64 = 1 << CHUNK_SHIFT;
/// Length of one chunk digest (BLAKE3, 256 bits: a second 64 KiB of bytes with the same digest
/// is as far out of reach as for sha256, and it hashes 64 KiB about twice as fast as sha256
/// with SHA-NI, which is what a random read pays; docs/index-format.md).
pub const DIGEST_LEN: usize = 32;
/// Chunk sizes a stored list may use (`1 << shift` bytes).
const SHIFTS: std::ops::RangeInclusive<u8> = 9..=30;
/// How far ahead of a sequential reader chunks are verified on the read-ahead pool.
const AHEAD_BYTES: u64 = 2 << 20;

/// A read touched a chunk whose bytes differ from the digest recorded when the layer was
/// indexed: the source is a different or damaged copy of the layer. Permanent: the same bytes
/// fail again.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "layer {layer}: bytes {offset}..{end} of the blob do not match the digest recorded for them when \
     the layer was indexed (a different or damaged copy of the layer); reads of them fail"
)]
pub struct ChunkMismatch {
    /// The layer whose blob is read.
    pub layer: Digest,
    /// Start of the chunk in the blob.
    pub offset: u64,
    /// End of the chunk in the blob.
    pub end: u64,
}

/// The chunk digests of one blob.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkDigests {
    shift: u8,
    len: u64,
    /// `DIGEST_LEN` bytes per chunk, in order.
    hashes: Bytes,
}

impl std::fmt::Debug for ChunkDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChunkDigests({} x {} B of {} B)",
            self.count(),
            1u64 << self.shift,
            self.len
        )
    }
}

/// Why a stored list is refused.
#[derive(Debug, thiserror::Error)]
#[error("chunk digests: {0}")]
pub struct ChunkListError(&'static str);

impl ChunkDigests {
    /// A list for a blob of `len` bytes in chunks of `1 << shift`; checks that `hashes` has
    /// exactly one digest per chunk.
    pub fn new(shift: u8, len: u64, hashes: Bytes) -> Result<ChunkDigests, ChunkListError> {
        if !SHIFTS.contains(&shift) {
            return Err(ChunkListError("chunk size out of range"));
        }
        let count = len.div_ceil(1 << shift);
        if hashes.len() as u64 != count.saturating_mul(DIGEST_LEN as u64) {
            return Err(ChunkListError("digest count does not match the blob length"));
        }
        Ok(ChunkDigests { shift, len, hashes })
    }

    /// log2 of the chunk size.
    pub fn shift(&self) -> u8 {
        self.shift
    }

    /// Length of the blob described.
    pub fn blob_len(&self) -> u64 {
        self.len
    }

    /// Number of chunks.
    pub fn count(&self) -> u64 {
        self.len.div_ceil(1 << self.shift)
    }

    /// The digests, back to back.
    pub fn hashes(&self) -> &[u8] {
        &self.hashes
    }

    /// The range of chunk `k` in the blob.
    fn bounds(&self, k: u64) -> (u64, u64) {
        let start = k << self.shift;
        (start, (start + (1 << self.shift)).min(self.len))
    }

    fn matches(&self, k: u64, data: &[u8]) -> bool {
        let at = k as usize * DIGEST_LEN;
        self.hashes.get(at..at + DIGEST_LEN) == Some(blake3::hash(data).as_bytes().as_slice())
    }

    /// The digest that ties the list to its layer: sha256 over a label, the layer digest, the
    /// blob length, the chunk size and every chunk digest. Recorded by the index pass that
    /// confirmed the layer digest; checked when a cached index is loaded.
    pub fn seal(&self, layer: &Digest) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"imgfs chunk digests v1 blake3\0");
        h.update(layer.to_string().as_bytes());
        h.update([0]);
        h.update(self.len.to_le_bytes());
        h.update([self.shift]);
        h.update(self.hashes());
        h.finalize().into()
    }
}

/// Records the chunk digests of a blob read once in order (the index pass).
pub struct ChunkHasher {
    shift: u8,
    current: blake3::Hasher,
    filled: u64,
    len: u64,
    hashes: Vec<u8>,
}

impl ChunkHasher {
    /// A hasher with chunks of `1 << shift` bytes.
    pub fn new(shift: u8) -> ChunkHasher {
        ChunkHasher {
            shift,
            current: blake3::Hasher::new(),
            filled: 0,
            len: 0,
            hashes: Vec::new(),
        }
    }

    /// Adds the next bytes of the blob.
    pub fn update(&mut self, mut data: &[u8]) {
        let size = 1u64 << self.shift;
        while !data.is_empty() {
            let take = ((size - self.filled) as usize).min(data.len());
            self.current.update(&data[..take]);
            self.filled += take as u64;
            self.len += take as u64;
            data = &data[take..];
            if self.filled == size {
                self.hashes.extend_from_slice(self.current.finalize().as_bytes());
                self.current.reset();
                self.filled = 0;
            }
        }
    }

    /// The digests of everything added.
    pub fn finish(mut self) -> ChunkDigests {
        if self.filled > 0 {
            self.hashes.extend_from_slice(self.current.finalize().as_bytes());
        }
        ChunkDigests {
            shift: self.shift,
            len: self.len,
            hashes: Bytes::owned(self.hashes),
        }
    }
}

/// A blob whose reads are checked chunk by chunk against [`ChunkDigests`], see the module docs.
pub struct VerifiedBlob(Arc<Checked>);

/// The state of a [`VerifiedBlob`], shared with its read-ahead jobs.
struct Checked {
    inner: Arc<dyn ReadAt>,
    digests: Arc<ChunkDigests>,
    layer: Digest,
    /// One bit per chunk that matched.
    good: Vec<AtomicU64>,
    /// One bit per chunk that did not.
    bad: Vec<AtomicU64>,
    /// Chunks below this offset have been handed to the read-ahead pool.
    ahead: AtomicU64,
}

fn bit(bits: &[AtomicU64], k: u64) -> bool {
    bits.get((k / 64) as usize)
        .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (k % 64)) != 0)
}

fn set_bit(bits: &[AtomicU64], k: u64) {
    if let Some(w) = bits.get((k / 64) as usize) {
        w.fetch_or(1 << (k % 64), Ordering::Release);
    }
}

impl VerifiedBlob {
    /// `inner` served through `digests`; `layer` names the blob in errors. Fails when the list
    /// describes a blob of another length.
    pub fn new(inner: Arc<dyn ReadAt>, digests: Arc<ChunkDigests>, layer: Digest) -> io::Result<VerifiedBlob> {
        if digests.blob_len() != inner.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "layer {layer}: the blob has {} bytes, its index describes {}",
                    inner.len(),
                    digests.blob_len()
                ),
            ));
        }
        let words = digests.count().div_ceil(64) as usize;
        let bits = || (0..words).map(|_| AtomicU64::new(0)).collect();
        Ok(VerifiedBlob(Arc::new(Checked {
            inner,
            digests,
            layer,
            good: bits(),
            bad: bits(),
            ahead: AtomicU64::new(0),
        })))
    }

    /// Chunks verified good so far (tests, stats).
    pub fn verified_chunks(&self) -> u64 {
        self.0
            .good
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum()
    }
}

impl Checked {
    fn mismatch(&self, k: u64) -> io::Error {
        let (offset, end) = self.digests.bounds(k);
        io::Error::new(
            io::ErrorKind::InvalidData,
            ChunkMismatch {
                layer: self.layer.clone(),
                offset,
                end,
            },
        )
    }

    /// Reads chunk `k` whole and checks it; returns its bytes.
    fn verify(&self, k: u64) -> io::Result<Vec<u8>> {
        if bit(&self.bad, k) {
            return Err(self.mismatch(k));
        }
        let (start, end) = self.digests.bounds(k);
        let mut data = vec![0u8; (end - start) as usize];
        super::read_raw_exact_at(self.inner.as_ref(), &mut data, start)?;
        if self.digests.matches(k, &data) {
            set_bit(&self.good, k);
            Ok(data)
        } else {
            set_bit(&self.bad, k);
            Err(self.mismatch(k))
        }
    }

    /// A read-ahead job: verifies the chunks of `[from, to)` not verified yet.
    fn verify_range(&self, from: u64, to: u64) {
        let shift = self.digests.shift();
        let first = from >> shift;
        let last = to.min(self.digests.blob_len()).div_ceil(1 << shift);
        for k in first..last {
            if !bit(&self.good, k) && self.verify(k).is_err() {
                // The reader meets the same error on its own read and reports it there.
                return;
            }
        }
    }
}

impl ReadAt for VerifiedBlob {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let c = &self.0;
        let len = c.digests.blob_len();
        if offset >= len || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min((len - offset).min(usize::MAX as u64) as usize);
        let shift = c.digests.shift();
        let mut done = 0;
        while done < n {
            let pos = offset + done as u64;
            let k = pos >> shift;
            let (start, end) = c.digests.bounds(k);
            let take = (n - done).min((end - pos) as usize);
            if bit(&c.good, k) {
                // One read for the whole run of verified chunks (a sequential reader's request
                // spans several).
                let mut last = k;
                let want_end = offset + n as u64;
                while last + 1 < c.digests.count() && c.digests.bounds(last).1 < want_end && bit(&c.good, last + 1) {
                    last += 1;
                }
                let run_end = c.digests.bounds(last).1;
                let take = (n - done).min((run_end - pos) as usize);
                super::read_raw_exact_at(c.inner.as_ref(), &mut buf[done..done + take], pos)?;
                done += take;
                continue;
            }
            let data = c.verify(k)?;
            let at = (pos - start) as usize;
            buf[done..done + take].copy_from_slice(&data[at..at + take]);
            done += take;
        }
        Ok(n)
    }

    fn len(&self) -> u64 {
        self.0.digests.blob_len()
    }

    fn advise_sequential(&self) {
        self.0.inner.advise_sequential();
    }

    /// Verifies the chunks after a sequential reader on the read-ahead pool, so that the
    /// reader's own core only copies bytes (an uncompressed layer read in order).
    fn read_ahead(&self, from: u64, to: u64) {
        let c = &self.0;
        c.inner.read_ahead(from, to);
        let to = to.min(from.saturating_add(AHEAD_BYTES)).min(self.len());
        let queued = c.ahead.load(Ordering::Relaxed);
        // Continue after what was queued, unless the reader is elsewhere in the blob.
        let start = if queued > from && queued - from <= AHEAD_BYTES {
            queued
        } else {
            from
        };
        // Batches of a quarter of the window, so that each sequential read does not queue a job.
        if to <= start || (to - start < AHEAD_BYTES / 4 && to < self.len()) {
            return;
        }
        c.ahead.store(to, Ordering::Relaxed);
        let me = Arc::clone(c);
        if !super::readahead::submit(move || me.verify_range(start, to)) {
            c.ahead.store(start, Ordering::Relaxed);
        }
    }

    fn read_raw_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.read_at(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn digests_of(data: &[u8], shift: u8) -> Arc<ChunkDigests> {
        let mut h = ChunkHasher::new(shift);
        for piece in data.chunks(1000) {
            h.update(piece);
        }
        Arc::new(h.finish())
    }

    #[test]
    fn good_bytes_read_back_and_a_flipped_byte_fails_only_its_chunk() {
        let good = blob(10_000);
        let digests = digests_of(&good, 10);
        assert_eq!(digests.count(), 10);
        let mut bad = good.clone();
        bad[4500] ^= 1;
        let layer = Digest::sha256_of(&good);
        let v = VerifiedBlob::new(Arc::new(bad), digests.clone(), layer.clone()).unwrap();
        let mut buf = vec![0u8; 3000];
        assert_eq!(v.read_at(&mut buf, 100).unwrap(), 3000);
        assert_eq!(buf, good[100..3100]);
        let err = v.read_at(&mut buf, 3500).unwrap_err();
        let m = err.get_ref().and_then(|e| e.downcast_ref::<ChunkMismatch>()).unwrap();
        assert_eq!((m.offset, m.end, &m.layer), (4096, 5120, &layer));
        assert!(err.to_string().contains(&layer.to_string()), "{err}");
        // Again: still an error, and the chunks around it still read.
        assert!(v.read_at(&mut buf[..10], 4096).is_err());
        assert_eq!(v.read_at(&mut buf[..500], 5120).unwrap(), 500);
        assert_eq!(buf[..500], good[5120..5620]);
        let mut tail = vec![0u8; 100];
        assert_eq!(v.read_at(&mut tail, 9950).unwrap(), 50);
        assert_eq!(tail[..50], good[9950..]);
        // A list for another length is refused.
        assert!(VerifiedBlob::new(Arc::new(blob(9_999)), digests, layer).is_err());
    }

    #[test]
    fn lists_are_checked_and_sealed_to_their_layer() {
        let data = blob(3000);
        let d = digests_of(&data, 10);
        assert!(ChunkDigests::new(10, 3000, Bytes::owned(d.hashes().to_vec())).is_ok());
        assert!(ChunkDigests::new(10, 3073, Bytes::owned(d.hashes().to_vec())).is_err());
        assert!(ChunkDigests::new(40, 3000, Bytes::owned(d.hashes().to_vec())).is_err());
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        assert_ne!(d.seal(&a), d.seal(&b));
        let empty = ChunkHasher::new(10).finish();
        assert_eq!((empty.count(), empty.hashes().len()), (0, 0));
    }
}
