//! A checkpoint: what a zstd decoder needs to resume a frame at a block boundary, stored in the
//! index (docs/index-format.md, "zstd checkpoints").
//!
//! It is a zstd dictionary in two parts: the entropy header ([`super::seq::SeqState::dictionary_header`]:
//! the tables later blocks may repeat and the three repeat offsets) and the window content
//! before the boundary, of which only the bytes the following segment copies from are kept
//! ("sparse window"): runs of (gap, length) varints then the bytes, zstd-compressed. Unkept
//! bytes read as zeros; no match of the segment reads them.

use super::tracker::Pending;
use crate::cache::Bytes;
use std::ops::Range;

/// Most a window may be (libzstd decodes up to 2^31 with `--long=31` and a raised limit).
pub(super) const MAX_WINDOW: u64 = 1 << 31;
/// Longest entropy header: Huffman tree (at most 129 bytes) and three FSE descriptions.
const MAX_ENTROPY: usize = 4096;
/// Compression level of sparse windows: they are written once and read on every resume.
const SPARSE_LEVEL: i32 = 3;

/// The kept window bytes of a checkpoint: per run, its output position and its range in the
/// buffer; then the buffer.
pub(super) type SparseRuns = (Vec<(u64, Range<usize>)>, Vec<u8>);

/// One checkpoint; see the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The data frame it belongs to (index into the frame table).
    pub frame: u64,
    /// Compressed offset of the header of the block it resumes at.
    pub comp_off: u64,
    /// Output position it resumes at.
    pub out_off: u64,
    /// The frame's window size.
    pub window: u64,
    /// How many bytes before `out_off` the dictionary content covers.
    pub content_len: u64,
    /// Dictionary header: magic, ID, entropy tables, repeat offsets.
    pub entropy: Vec<u8>,
    /// The sparse window, zstd-compressed (in the mapped cache file when loaded from one).
    pub sparse: Bytes,
    /// Length of the sparse window before compression.
    pub sparse_len: u64,
    /// [`block_check`] of each block of the segment (up to the next checkpoint or the end of
    /// the frame): a resumed decoder checks every block against the index pass's decode.
    pub block_crcs: Vec<u32>,
}

/// What a resumed decoder checks each block against: a CRC-32 of the block's output position,
/// the compressed offset of its header, then its output. The offsets are in it because a
/// checkpoint whose block bytes are right but whose `out_off` or `comp_off` is not would
/// otherwise serve true bytes at the wrong place (found by the `zstd_checkpoint` fuzz target).
pub(super) fn block_check(out_off: u64, comp_off: u64, output: &[u8]) -> u32 {
    let mut h = block_hasher(out_off, comp_off);
    h.update(output);
    h.finalize()
}

/// A [`block_check`] before its output.
fn block_hasher(out_off: u64, comp_off: u64) -> crc32fast::Hasher {
    let mut h = crc32fast::Hasher::new();
    h.update(&out_off.to_le_bytes());
    h.update(&comp_off.to_le_bytes());
    h
}

/// Passes the output bytes `[start, end)` to its third argument, in order; false if they are
/// gone.
pub(super) type OutputBytes<'a> = dyn Fn(u64, u64, &mut dyn FnMut(&[u8])) -> bool + 'a;

/// A checkpoint whose sparse window is not compressed yet: [`Checkpoint::from_pending`]
/// gathers it where the recent output is, [`Unsealed::seal`] compresses it (on a thread of its
/// own during the index pass, `follow.rs`).
pub(super) struct Unsealed {
    /// Everything but `sparse`.
    pub checkpoint: Checkpoint,
    /// The sparse window: runs, then the kept bytes.
    raw: Vec<u8>,
}

impl Unsealed {
    /// The checkpoint with its sparse window compressed by `cctx` (reused from checkpoint to
    /// checkpoint: a context per window was allocated and cleared 550 times per GiB);
    /// `None` if the compressor fails.
    pub(super) fn seal(self, cctx: &mut ::zstd::bulk::Compressor<'_>) -> Option<Checkpoint> {
        let mut c = self.checkpoint;
        let mut sparse = cctx.compress(&self.raw).ok()?;
        // The buffer was sized for incompressible input: ~2.5x what it holds here.
        sparse.shrink_to_fit();
        c.sparse = Bytes::owned(sparse);
        Some(c)
    }
}

/// The compressor of sparse windows.
pub(super) fn sparse_compressor() -> std::io::Result<::zstd::bulk::Compressor<'static>> {
    ::zstd::bulk::Compressor::new(SPARSE_LEVEL)
}

/// Appends `v` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Why a checkpoint is refused: it does not decode, or its fields do not fit together.
// Variant fields are named for what they hold; each variant's message says the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The compressed sparse window is not a zstd frame of its recorded length.
    #[error("sparse window does not decompress: {0}")]
    Decompress(#[source] std::io::Error),
    /// It decompresses to another length than recorded.
    #[error("sparse window has {found} bytes, not {expected}")]
    Length { found: u64, expected: u64 },
    /// A varint runs past the end of the sparse window.
    #[error("truncated sparse window")]
    Truncated,
    /// A varint longer than 64 bits.
    #[error("varint too long in sparse window")]
    VarintTooLong,
    /// More runs than the sparse window has bytes.
    #[error("sparse window run count {0} too large")]
    RunCount(u64),
    /// A run ends past the checkpoint (or past 2^64).
    #[error("sparse run outside its window")]
    RunOutside,
    /// The runs need more bytes than the sparse window holds.
    #[error("sparse window bytes truncated")]
    BytesTruncated,
    /// Bytes left after the last run's bytes.
    #[error("{0} bytes after the sparse window")]
    Trailing(usize),
    /// Sizes that no index pass writes.
    #[error(
        "checkpoint at output {out_off} is inconsistent (window {window}, content {content_len}, entropy {entropy} bytes, sparse {sparse_len} bytes)"
    )]
    Inconsistent {
        out_off: u64,
        window: u64,
        content_len: u64,
        entropy: usize,
        sparse_len: u64,
    },
}

fn get_varint(data: &[u8], at: &mut usize) -> Result<u64, CheckpointError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at).ok_or(CheckpointError::Truncated)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CheckpointError::VarintTooLong)
}

impl Checkpoint {
    /// Gathers the checkpoint of a completed tracker segment: its kept window bytes (not yet
    /// compressed: [`Unsealed::seal`]) and the checks of its blocks. `bytes(start, end, f)`
    /// passes the output bytes `[start, end)` to `f` in order (the build keeps the recent
    /// output) and returns false if they are gone.
    pub(super) fn from_pending(frame: u64, window: u64, p: Pending, bytes: &OutputBytes<'_>) -> Option<Unsealed> {
        let window_start = p.out_off - p.content_len;
        let mut raw = Vec::new();
        put_varint(&mut raw, p.refs.len() as u64);
        let mut prev = window_start;
        for &(s, e) in &p.refs {
            put_varint(&mut raw, s - prev);
            put_varint(&mut raw, e - s);
            prev = e;
        }
        for &(s, e) in &p.refs {
            if !bytes(s, e, &mut |b| raw.extend_from_slice(b)) {
                return None;
            }
        }
        let mut block_crcs = Vec::with_capacity(p.blocks.len());
        let (mut pos, mut comp) = (p.out_off, p.comp_off);
        for &(n, c) in &p.blocks {
            let end = pos + u64::from(n);
            let mut h = block_hasher(pos, comp);
            if !bytes(pos, end, &mut |b| h.update(b)) {
                return None;
            }
            block_crcs.push(h.finalize());
            pos = end;
            comp += u64::from(c);
        }
        Some(Unsealed {
            checkpoint: Checkpoint {
                frame,
                comp_off: p.comp_off,
                out_off: p.out_off,
                window,
                content_len: p.content_len,
                entropy: p.entropy,
                sparse: Bytes::default(),
                sparse_len: raw.len() as u64,
                block_crcs,
            },
            raw,
        })
    }

    /// Output position of the first byte of the dictionary content.
    pub(super) fn content_start(&self) -> u64 {
        self.out_off - self.content_len
    }

    /// The kept window bytes: (output position, range in the returned buffer) per run, and the
    /// buffer. Every run lies inside `[content_start, out_off)`.
    pub(super) fn sparse_runs(&self) -> Result<SparseRuns, CheckpointError> {
        let raw =
            ::zstd::bulk::decompress(&self.sparse, self.sparse_len as usize).map_err(CheckpointError::Decompress)?;
        if raw.len() as u64 != self.sparse_len {
            return Err(CheckpointError::Length {
                found: raw.len() as u64,
                expected: self.sparse_len,
            });
        }
        let mut at = 0;
        let n = get_varint(&raw, &mut at)?;
        if n > raw.len() as u64 {
            return Err(CheckpointError::RunCount(n));
        }
        let mut runs = Vec::with_capacity(n as usize);
        let mut pos = self.content_start();
        let mut lens = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let gap = get_varint(&raw, &mut at)?;
            let len = get_varint(&raw, &mut at)?;
            let start = pos.checked_add(gap).ok_or(CheckpointError::RunOutside)?;
            pos = start.checked_add(len).ok_or(CheckpointError::RunOutside)?;
            if pos > self.out_off {
                return Err(CheckpointError::RunOutside);
            }
            lens.push((start, len));
        }
        for (start, len) in lens {
            let end = at.checked_add(len as usize).ok_or(CheckpointError::BytesTruncated)?;
            if end > raw.len() {
                return Err(CheckpointError::BytesTruncated);
            }
            runs.push((start, at..end));
            at = end;
        }
        if at != raw.len() {
            return Err(CheckpointError::Trailing(raw.len() - at));
        }
        Ok((runs, raw))
    }

    /// Checks what can be checked without the frame; the entropy header itself is checked by
    /// libzstd when a decoder loads it, and the rest against the frame as it is decoded.
    pub(super) fn validate(&self) -> Result<(), CheckpointError> {
        let ok = self.window > 0
            && self.window <= MAX_WINDOW
            && self.content_len > 0
            && self.content_len <= self.window
            && self.content_len <= self.out_off
            && (20..=MAX_ENTROPY).contains(&self.entropy.len())
            && self.entropy[..4] == super::seq::DICT_MAGIC.to_le_bytes()
            && self.sparse_len <= self.content_len.saturating_mul(4).saturating_add(64)
            && !self.block_crcs.is_empty();
        match ok {
            true => Ok(()),
            false => Err(CheckpointError::Inconsistent {
                out_off: self.out_off,
                window: self.window,
                content_len: self.content_len,
                entropy: self.entropy.len(),
                sparse_len: self.sparse_len,
            }),
        }
    }

    /// CRC-32 of every field: any damage to a checkpoint is caught before it is used.
    pub(super) fn crc(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for v in [
            self.frame,
            self.comp_off,
            self.out_off,
            self.window,
            self.content_len,
            self.sparse_len,
            self.entropy.len() as u64,
            self.sparse.len() as u64,
            self.block_crcs.len() as u64,
        ] {
            h.update(&v.to_le_bytes());
        }
        h.update(&self.entropy);
        h.update(&self.sparse);
        for c in &self.block_crcs {
            h.update(&c.to_le_bytes());
        }
        h.finalize()
    }

    /// Bytes this checkpoint takes in the index: nine u64 (six fields and three lengths), the
    /// entropy header, the sparse window, the block checks and the CRC.
    pub fn encoded_len(&self) -> usize {
        9 * 8 + self.entropy.len() + self.sparse.len() + 4 * self.block_crcs.len() + 4
    }
}
