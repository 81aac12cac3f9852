//! Lazy, verity-style verification of a layer blob against the chunk digests its index recorded.
//!
//! When a layer is indexed, its blob (the compressed bytes, or the tar itself) is cut into
//! fixed, aligned chunks ([`CHUNK_SHIFT`], [`RAW_CHUNK_SHIFT`]) and the BLAKE3 hash of each is recorded
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
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// log2 of the bytes per verified chunk of a compressed blob: a random read of a small file
/// hashes at most one chunk more than its decoder consumes (which is far more: it inflates from
/// an access point), and the list costs 32 bytes per 64 KiB of blob (0.05%). What it costs the
/// bench rows: docs/benchmarks.md.
pub const CHUNK_SHIFT: u8 = 16;
/// log2 of the bytes per verified chunk of an uncompressed tar. A random read of a small file
/// reads only the file's own bytes from an uncompressed layer, so the chunk is what it pays:
/// 16 KiB is one disk request like the file's few KiB and hashes in a few microseconds, where
/// 64 KiB chunks cost the bench's random small files 46% of their rate (docs/benchmarks.md).
/// The list costs 32 bytes per 16 KiB (0.2%); the size is stored with each list.
pub const RAW_CHUNK_SHIFT: u8 = 14;
/// Length of one chunk digest (BLAKE3, 256 bits: a second 64 KiB of bytes with the same digest
/// is as far out of reach as for sha256, and it hashes 64 KiB about twice as fast as sha256
/// with SHA-NI, which is what a random read pays; docs/index-format.md).
pub const DIGEST_LEN: usize = 32;
/// Chunk sizes a stored list may use (`1 << shift` bytes).
const SHIFTS: std::ops::RangeInclusive<u8> = 9..=30;
/// How far ahead of a sequential reader chunks are verified on the read-ahead pool.
const AHEAD_BYTES: u64 = 8 << 20;
/// Bytes a read-ahead job reads and hashes at a time (one read for many small chunks).
const AHEAD_BATCH: u64 = 256 << 10;

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
    /// One bit per chunk a thread is reading and hashing now: others wait for its verdict
    /// instead of hashing the same bytes again (a sequential reader that catches up with the
    /// verify-ahead job, or two readers of one small file).
    busy: Vec<AtomicU64>,
    /// Signalled whenever busy chunks get their verdict.
    verdicts: (Mutex<()>, Condvar),
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
            busy: bits(),
            verdicts: (Mutex::new(()), Condvar::new()),
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

    fn decided(&self, k: u64) -> bool {
        bit(&self.good, k) || bit(&self.bad, k)
    }

    /// Takes chunk `k` for this thread to verify: false when it is decided already or another
    /// thread has it.
    fn claim(&self, k: u64) -> bool {
        if self.decided(k) {
            return false;
        }
        let Some(w) = self.busy.get((k / 64) as usize) else {
            return false;
        };
        let mask = 1 << (k % 64);
        if w.fetch_or(mask, Ordering::AcqRel) & mask != 0 {
            return false;
        }
        // It may have been decided between the check and the claim.
        if self.decided(k) {
            self.release(&[k]);
            return false;
        }
        true
    }

    /// Gives claimed chunks back (their verdict is set) and wakes the threads waiting for them.
    fn release(&self, chunks: &[u64]) {
        for &k in chunks {
            if let Some(w) = self.busy.get((k / 64) as usize) {
                w.fetch_and(!(1 << (k % 64)), Ordering::AcqRel);
            }
        }
        let _guard = self.verdicts.0.lock().unwrap_or_else(|e| e.into_inner());
        self.verdicts.1.notify_all();
    }

    /// Waits until chunk `k`, claimed by another thread, has its verdict. Returns false when
    /// nobody has it any more without a verdict (the other thread's read failed): the caller
    /// verifies it itself.
    fn wait(&self, k: u64) -> bool {
        let mut guard = self.verdicts.0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.decided(k) {
                return true;
            }
            if !bit(&self.busy, k) {
                return false;
            }
            // The timeout only bounds a lost wake-up; verdicts come within one chunk's hash.
            guard = match self.verdicts.1.wait_timeout(guard, Duration::from_millis(20)) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Verifies the claimed chunks `mine` (ascending, inside `[first, last]`) from one read of
    /// chunks `first..=last` into `span`, and releases them. `span` keeps the bytes read.
    fn verify_span(&self, first: u64, last: u64, mine: &[u64], span: &mut Vec<u8>) -> io::Result<()> {
        let start = self.digests.bounds(first).0;
        let end = self.digests.bounds(last).1;
        span.clear();
        span.resize((end - start) as usize, 0);
        if let Err(e) = super::read_raw_exact_at(self.inner.as_ref(), span, start) {
            // No verdict: waiting threads see the claim go and verify these chunks themselves.
            self.release(mine);
            return Err(e);
        }
        let mut result = Ok(());
        for &k in mine {
            let (a, b) = self.digests.bounds(k);
            if self
                .digests
                .matches(k, &span[(a - start) as usize..(b - start) as usize])
            {
                set_bit(&self.good, k);
            } else {
                set_bit(&self.bad, k);
                if result.is_ok() {
                    result = Err(self.mismatch(k));
                }
            }
        }
        self.release(mine);
        result
    }

    /// Makes sure chunks `first..=last` are verified good. Returns the bytes of those chunks
    /// when this thread read them to verify some of them (the caller serves from them), None
    /// when every chunk was verified already (the caller reads the source).
    fn ensure(&self, first: u64, last: u64) -> io::Result<Option<Vec<u8>>> {
        let mut span = None;
        loop {
            let mut mine = Vec::new();
            let mut theirs = Vec::new();
            for k in first..=last {
                if bit(&self.bad, k) {
                    self.release(&mine);
                    return Err(self.mismatch(k));
                }
                if bit(&self.good, k) {
                    continue;
                }
                if self.claim(k) {
                    mine.push(k);
                } else if !bit(&self.good, k) {
                    theirs.push(k);
                }
            }
            if !mine.is_empty() {
                let buf = span.get_or_insert_with(Vec::new);
                self.verify_span(first, last, &mine, buf)?;
            }
            let mut retry = false;
            for k in theirs {
                if !self.wait(k) {
                    retry = true;
                } else if bit(&self.bad, k) {
                    return Err(self.mismatch(k));
                }
            }
            if !retry {
                return Ok(span);
            }
            // Chunks another thread gave up on (its read failed): verify them here.
            span = None;
        }
    }

    /// A read-ahead job: verifies the chunks of `[from, to)` not verified yet, one batch of
    /// chunks per read.
    fn verify_range(&self, from: u64, to: u64) {
        let shift = self.digests.shift();
        let end = to.min(self.digests.blob_len()).div_ceil(1 << shift);
        let batch = (AHEAD_BATCH >> shift).max(1);
        let mut span = Vec::new();
        let mut k = from >> shift;
        while k < end {
            let last = (k + batch).min(end) - 1;
            let mine: Vec<u64> = (k..=last).filter(|&c| self.claim(c)).collect();
            if let (Some(&a), Some(&b)) = (mine.first(), mine.last()) {
                if self.verify_span(a, b, &mine, &mut span).is_err() {
                    // The reader meets the same error on its own read and reports it there.
                    return;
                }
            }
            k = last + 1;
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
        let (first, last) = (offset >> shift, (offset + n as u64 - 1) >> shift);
        match c.ensure(first, last)? {
            // This thread read the chunks to check them: serve those very bytes.
            Some(span) => {
                let at = (offset - c.digests.bounds(first).0) as usize;
                buf[..n].copy_from_slice(&span[at..at + n]);
            }
            // All verified before: one read straight into the caller's buffer.
            None => super::read_raw_exact_at(c.inner.as_ref(), &mut buf[..n], offset)?,
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

    /// Counts the reads of a whole chunk (verification reads) and makes each read slow, so that
    /// threads meet on the same chunk.
    struct Slow {
        data: Vec<u8>,
        chunk_reads: std::sync::atomic::AtomicUsize,
        chunk: usize,
    }

    impl ReadAt for Slow {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            if buf.len() % self.chunk == 0 {
                self.chunk_reads.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(30));
            self.data.read_at(buf, offset)
        }
        fn len(&self) -> u64 {
            self.data.len() as u64
        }
    }

    #[test]
    fn threads_reading_one_chunk_hash_it_once_and_all_get_the_true_bytes() {
        let good = blob(8192);
        let digests = digests_of(&good, 12);
        let slow = Arc::new(Slow {
            data: good.clone(),
            chunk_reads: Default::default(),
            chunk: 4096,
        });
        let v = Arc::new(VerifiedBlob::new(slow.clone(), digests, Digest::sha256_of(&good)).unwrap());
        let readers: Vec<_> = (0..4)
            .map(|i| {
                let v = Arc::clone(&v);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 100];
                    v.read_at(&mut buf, 1000 + i * 10).map(|n| (n, buf))
                })
            })
            .collect();
        for (i, r) in readers.into_iter().enumerate() {
            let (n, buf) = r.join().unwrap().unwrap();
            assert_eq!(buf[..n], good[1000 + i * 10..1100 + i * 10]);
        }
        // One thread read and hashed chunk 0; the others waited for its verdict and then read
        // only their 100 bytes.
        assert_eq!(slow.chunk_reads.load(Ordering::SeqCst), 1);
        assert_eq!(v.verified_chunks(), 1);
    }

    #[test]
    fn a_read_ahead_job_and_a_reader_share_the_work_and_the_verdicts() {
        let good = blob(64 << 10);
        let mut bad = good.clone();
        bad[40_000] ^= 0x80;
        let digests = digests_of(&good, 12);
        let v = VerifiedBlob::new(Arc::new(bad), digests, Digest::sha256_of(&good)).unwrap();
        // The reader verifies chunks 2 and 3; the job (one batch: one read) the other 14, and
        // finds chunk 9 bad.
        let mut buf = vec![0u8; 8192];
        assert_eq!(v.read_at(&mut buf, 4096 * 2).unwrap(), 8192);
        v.0.verify_range(0, 64 << 10);
        assert_eq!(v.verified_chunks(), 15);
        assert!(bit(&v.0.bad, 9));
        assert_eq!(v.read_at(&mut buf, 4096 * 7).unwrap(), 8192);
        assert_eq!(buf, good[4096 * 7..4096 * 9]);
        // A read over the bad chunk fails whole; the chunks around it read.
        assert!(v.read_at(&mut buf, 4096 * 8 + 100).is_err());
        assert_eq!(v.read_at(&mut buf, 4096 * 10).unwrap(), 8192);
        assert_eq!(buf, good[4096 * 10..4096 * 12]);
        assert_eq!(v.verified_chunks(), 15);
        assert!(
            !v.0.busy.iter().any(|w| w.load(Ordering::SeqCst) != 0),
            "no chunk left claimed"
        );
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
