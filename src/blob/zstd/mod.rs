//! Random access into zstd streams through a frame table and checkpoints inside frames.
//!
//! A zstd stream is a sequence of frames; each data frame decodes independently of the others,
//! so frame starts are free restart points. [`build_index`] decodes the stream once, frame by
//! frame, feeding every decompressed byte to a sink, and records for each data frame its
//! compressed range and its uncompressed range ([`Frame`]). Skippable frames (including the seek
//! table of the zstd "seekable format", which is one) are skipped and not recorded; frames that
//! decode to nothing are not recorded either. Content checksums are verified by libzstd when a
//! frame carries one.
//!
//! # Reading, and the single-frame problem
//!
//! [`ZstdReader`] serves [`ReadAt`] with the same engine as gzip ([`super::chunk_cache`]): fixed
//! chunks in an LRU, and a pool of live decoders. A read decodes only from the start of the frame
//! holding it. For multi-frame streams (zstd:chunked, `zstd --seekable`-style, pzstd) that bounds
//! the cost of a random read by one frame.
//!
//! # Checkpoints inside large frames
//!
//! A single large frame, which is what `zstd` and skopeo write by default, has no restart point
//! except its start. So the index build also records **checkpoints** every
//! [`DEFAULT_CHECKPOINT_SPACING`] of output inside large frames (`checkpoint.rs`, chosen by
//! `tracker.rs` following the frame's blocks and sequences with `seq.rs` as libzstd decodes it): a
//! checkpoint is a zstd dictionary holding the entropy tables and repeat offsets in force at a
//! block boundary plus the window bytes the next segment copies from. A read resumes at the
//! nearest checkpoint below it with libzstd's block API (`block.rs`, `resume.rs`), so a random read
//! decodes at most one segment. The format and the measurements behind the choices are in
//! docs/index-format.md ("zstd checkpoints"). Frames that need a dictionary, and frames whose
//! matches reach further back than their window, get no checkpoints.
//!
//! Other points of the reader:
//!
//! - **Live decoders at increasing positions.** Every decoder that finishes a chunk is kept
//!   (up to `max_decoders`, default [`DEFAULT_MAX_DECODERS`]) positioned where it stopped. A miss
//!   is served by the decoder with the highest position at or below the wanted chunk; only when
//!   none exists is a new decoder started at the nearest checkpoint or frame start. So a
//!   sequential reader streams in O(n), several interleaved sequential readers each keep their
//!   own decoder, and read-ahead starts decoders at the next checkpoints.
//! - **Chunk LRU.** Re-reads of recently decoded ranges never decode again.
//!
//! Each live decoder holds a window (up to 2^27 bytes with the default window limit,
//! typically 2-8 MiB), which is why the default pool here is smaller than gzip's.

mod block;
mod checkpoint;
#[cfg(test)]
mod checkpoint_tests;
mod follow;
mod fse;
mod resume;
mod seq;
mod tracker;

use std::io::{self, Read, Write};
use std::sync::Arc;

pub use checkpoint::{Checkpoint, CheckpointError};
use follow::Follower;
use resume::Resumed;

use ::zstd::zstd_safe::{self, DCtx, InBuffer, OutBuffer, ResetDirective};

use super::chunk_cache::{CacheConfig, Decoder, Source};
use super::codec_io::{HashingReader, IndexReader, IndexWriter, Input, ReadAtSource, Trailer};
use super::indexed::{IndexedReader, StreamIndex};
use super::ReadAt;
use crate::cache::{Bytes, Spill};

/// Magic number opening every zstd data frame (little-endian on disk).
pub const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames have this magic with any value in the low 4 bits.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
/// Default number of idle live decoders per reader (each holds a zstd window).
pub const DEFAULT_MAX_DECODERS: usize = 4;
/// Compressed input buffered while indexing, in bytes.
const BUILD_INPUT_BYTES: usize = 256 << 10;
/// Output produced per decompress call while indexing, in bytes.
const BUILD_OUTPUT_BYTES: usize = 256 << 10;
/// Compressed input buffered by each live reader decoder, in bytes.
const READ_INPUT_BYTES: usize = 64 << 10;
/// Calls in a row that may make no progress before the stream is declared corrupt.
const MAX_STALLS: u32 = 4;
/// Smallest possible zstd frame: magic, frame header descriptor, one header byte, block header.
const MIN_FRAME_BYTES: u64 = 4 + 1 + 1 + 3;
/// First bytes of an encoded [`ZstdIndex`].
const INDEX_MAGIC: &[u8; 8] = b"IMGFSZSI";
/// Version of the encoding written by [`ZstdIndex::to_bytes`] (2: checkpoints; 3: block checks
/// bound to the blocks' offsets, [`checkpoint::block_check`]).
const INDEX_VERSION: u32 = 3;
/// Output between checkpoints inside a frame: a random read decodes 1 MiB on average
/// (docs/index-format.md, "zstd checkpoints").
pub const DEFAULT_CHECKPOINT_SPACING: u64 = 2 << 20;
/// Encoded size of one [`Frame`].
const FRAME_BYTES: usize = 4 * 8;

/// This module's errors: the codecs' shared [`CodecError`](super::codec_error::CodecError).
pub use super::codec_error::CodecError as Error;
use super::codec_error::{Codec, IndexFormatError, IndexFormatError::Field};

/// Result of this module's fallible functions.
pub type Result<T> = std::result::Result<T, Error>;

/// The module's error under a name that is unambiguous outside it.
pub type ZstdError = Error;

fn corrupt(offset: u64, msg: impl Into<String>) -> Error {
    Error::corrupt(Codec::Zstd, offset, msg)
}

fn bad_index(source: IndexFormatError) -> Error {
    Error::BadIndex {
        codec: Codec::Zstd,
        source,
    }
}

/// One data frame: compressed bytes `[comp_off, comp_off+comp_len)` decode to uncompressed bytes
/// `[out_off, out_off+out_len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the frame starts in the compressed stream.
    pub comp_off: u64,
    /// The frame's compressed length, header and checksum included.
    pub comp_len: u64,
    /// Where the frame's output starts in the uncompressed stream.
    pub out_off: u64,
    /// How many bytes the frame decodes to.
    pub out_len: u64,
}

/// Frame table of one zstd stream, plus its sizes and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZstdIndex {
    compressed_len: u64,
    uncompressed_len: u64,
    compressed_sha256: [u8; 32],
    frames: Vec<Frame>,
    /// Resume points inside frames, in stream order.
    checkpoints: Vec<Checkpoint>,
}

impl ZstdIndex {
    /// Length of the compressed stream.
    pub fn compressed_len(&self) -> u64 {
        self.compressed_len
    }
    /// Length of the decompressed data.
    pub fn uncompressed_len(&self) -> u64 {
        self.uncompressed_len
    }
    /// sha256 of the whole compressed stream, computed while indexing.
    pub fn compressed_sha256(&self) -> [u8; 32] {
        self.compressed_sha256
    }
    /// Data frames in stream order (frames that decode to nothing are left out).
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }
    /// Checkpoints inside frames, in stream order.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// True when a frame is large enough for checkpoints (more than two segments of the default
    /// spacing: smaller ones get none, `tracker.rs`) but the index has none: what an index pass
    /// without checkpoints (or an older publisher) leaves.
    pub fn lacks_checkpoints(&self) -> bool {
        self.checkpoints.is_empty() && self.frames.iter().any(|f| f.out_len > 2 * DEFAULT_CHECKPOINT_SPACING)
    }

    /// The checkpoints, to change: fuzzing forges checkpoints this way ([`Self::to_bytes`] then
    /// writes CRCs that match the changed fields, so only the other checks stand).
    #[doc(hidden)]
    pub fn checkpoints_mut(&mut self) -> &mut Vec<Checkpoint> {
        &mut self.checkpoints
    }

    /// The last checkpoint at or before `offset` inside frame `frame`, if any.
    fn checkpoint_for(&self, frame: usize, offset: u64) -> Option<usize> {
        let i = self
            .checkpoints
            .partition_point(|c| c.out_off <= offset)
            .checked_sub(1)?;
        (self.checkpoints[i].frame == frame as u64).then_some(i)
    }

    /// Index of the frame holding uncompressed `offset` (the last one if past the end); `None`
    /// only when there are no frames.
    pub fn frame_for(&self, offset: u64) -> Option<usize> {
        let i = self.frames.partition_point(|f| f.out_off <= offset);
        (!self.frames.is_empty()).then(|| i.saturating_sub(1))
    }

    /// The versioned little-endian encoding; see [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = IndexWriter::with_capacity(INDEX_MAGIC, INDEX_VERSION, self.encoded_len());
        self.encode(&mut w);
        w.finish()
    }

    /// Writes [`Self::to_bytes`] to `out` as it encodes it, without holding it in memory.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut w = IndexWriter::streaming(INDEX_MAGIC, INDEX_VERSION, out);
        self.encode(&mut w);
        w.finish_streaming()
    }

    /// Length of [`Self::to_bytes`].
    pub fn encoded_len(&self) -> usize {
        let checkpoints: usize = self.checkpoints.iter().map(Checkpoint::encoded_len).sum();
        8 + 4 + 8 + 8 + 32 + 8 + FRAME_BYTES * self.frames.len() + 8 + checkpoints + 32
    }

    fn encode(&self, w: &mut IndexWriter<'_>) {
        w.u64(self.compressed_len);
        w.u64(self.uncompressed_len);
        w.bytes(&self.compressed_sha256);
        w.u64(self.frames.len() as u64);
        for f in &self.frames {
            w.u64(f.comp_off);
            w.u64(f.comp_len);
            w.u64(f.out_off);
            w.u64(f.out_len);
        }
        w.u64(self.checkpoints.len() as u64);
        for c in &self.checkpoints {
            for v in [c.frame, c.comp_off, c.out_off, c.window, c.content_len, c.sparse_len] {
                w.u64(v);
            }
            w.u64(c.entropy.len() as u64);
            w.bytes(&c.entropy);
            w.u64(c.sparse.len() as u64);
            w.bytes(&c.sparse);
            w.u64(c.block_crcs.len() as u64);
            for &b in &c.block_crcs {
                w.u32(b);
            }
            w.u32(c.crc());
            // Copied and hashed: a window mapped from a spill file need not stay in this
            // process's memory.
            c.sparse.release();
        }
    }

    /// Decodes [`Self::to_bytes`] output, rejecting any damage (sha256 trailer) and any
    /// inconsistency (frames overlapping, out of range, not contiguous in output).
    pub fn from_bytes(data: &[u8]) -> Result<ZstdIndex> {
        decode_index(data, Trailer::Check, None).map_err(bad_index)
    }

    /// [`Self::from_bytes`] for bytes inside a file whose own checksum was verified: the sha256
    /// trailer is not hashed again; every other check is made.
    pub fn from_checksummed_bytes(data: &[u8]) -> Result<ZstdIndex> {
        decode_index(data, Trailer::Skip, None).map_err(bad_index)
    }

    /// [`Self::from_checksummed_bytes`] for `range` of a mapped cache file: the sparse windows
    /// (nearly all of a checkpoint index) stay in the mapping, page cache the kernel may
    /// reclaim, instead of being copied into the process's own memory.
    pub fn from_mapped(map: &Arc<memmap2::Mmap>, range: std::ops::Range<usize>) -> Result<ZstdIndex> {
        let data = map
            .get(range.clone())
            .ok_or_else(|| bad_index(Field("index outside its file".into())))?;
        decode_index(data, Trailer::Skip, Some(map)).map_err(bad_index)
    }
}

/// With `mapped`, the mapping `data` is a slice of: sparse windows are then ranges of it.
fn decode_index(
    data: &[u8],
    trailer: Trailer,
    mapped: Option<&Arc<memmap2::Mmap>>,
) -> std::result::Result<ZstdIndex, IndexFormatError> {
    let mut r = IndexReader::open(data, INDEX_MAGIC, INDEX_VERSION, trailer)?;
    let compressed_len = r.u64()?;
    let uncompressed_len = r.u64()?;
    let compressed_sha256 = r.array32()?;
    let count = r.u64()?;
    if count > (r.remaining() / FRAME_BYTES) as u64 {
        return Err(Field(format!("frame count {count} does not match the encoding")));
    }
    let mut frames = Vec::with_capacity(count as usize);
    let (mut comp_end, mut out_end) = (0u64, 0u64);
    for i in 0..count {
        let f = Frame {
            comp_off: r.u64()?,
            comp_len: r.u64()?,
            out_off: r.u64()?,
            out_len: r.u64()?,
        };
        let end = f.comp_off.checked_add(f.comp_len);
        let ok = f.comp_off >= comp_end
            && f.comp_len >= MIN_FRAME_BYTES
            && end.is_some_and(|e| e <= compressed_len)
            && f.out_off == out_end
            && f.out_len > 0;
        if !ok {
            return Err(Field(format!("frame {i} is inconsistent: {f:?}")));
        }
        comp_end = f.comp_off + f.comp_len;
        out_end = f
            .out_off
            .checked_add(f.out_len)
            .ok_or_else(|| Field(format!("frame {i} overflows")))?;
        frames.push(f);
    }
    if out_end != uncompressed_len {
        return Err(Field(format!(
            "frames hold {out_end} bytes but the index says {uncompressed_len}"
        )));
    }
    let checkpoints = decode_checkpoints(&mut r, &frames, mapped)?;
    r.finish()?;
    Ok(ZstdIndex {
        compressed_len,
        uncompressed_len,
        compressed_sha256,
        frames,
        checkpoints,
    })
}

/// Smallest encoded checkpoint: nine u64 fields and the CRC.
const MIN_CHECKPOINT_BYTES: usize = 9 * 8 + 4;

/// Reads the checkpoints and checks each against its CRC and its frame: strictly increasing,
/// strictly inside the frame's compressed and output ranges, its window inside the frame.
/// With `mapped` (the mapping the encoding is a slice of), sparse windows are ranges of it.
fn decode_checkpoints(
    r: &mut IndexReader<'_>,
    frames: &[Frame],
    mapped: Option<&Arc<memmap2::Mmap>>,
) -> std::result::Result<Vec<Checkpoint>, IndexFormatError> {
    let count = r.u64()?;
    if count > (r.remaining() / MIN_CHECKPOINT_BYTES) as u64 {
        return Err(Field(format!("checkpoint count {count} does not match the encoding")));
    }
    let mut out = Vec::with_capacity(count as usize);
    let (mut comp_end, mut out_end) = (0u64, 0u64);
    for i in 0..count {
        let mut v = [0u64; 6];
        for x in v.iter_mut() {
            *x = r.u64()?;
        }
        let [frame, comp_off, out_off, window, content_len, sparse_len] = v;
        let n = r.u64()?;
        let entropy = r.bytes(usize::try_from(n).map_err(|e| Field(e.to_string()))?)?.to_vec();
        let n = r.u64()?;
        let sparse = r.bytes(usize::try_from(n).map_err(|e| Field(e.to_string()))?)?;
        let sparse = match mapped {
            Some(map) => {
                // `sparse` is a slice of the mapping: its place in it.
                let start = (sparse.as_ptr() as usize).saturating_sub(map.as_ptr() as usize);
                Bytes::mapped(Arc::clone(map), start..start + sparse.len())
                    .ok_or_else(|| Field("sparse window outside the file".into()))?
            }
            None => Bytes::owned(sparse.to_vec()),
        };
        let n = r.u64()?;
        if n > (r.remaining() / 4) as u64 {
            return Err(Field(format!(
                "checkpoint {i}: block count {n} does not match the encoding"
            )));
        }
        let block_crcs = (0..n)
            .map(|_| r.u32())
            .collect::<std::result::Result<Vec<u32>, IndexFormatError>>()?;
        let crc = r.u32()?;
        let c = Checkpoint {
            frame,
            comp_off,
            out_off,
            window,
            content_len,
            entropy,
            sparse,
            sparse_len,
            block_crcs,
        };
        if c.crc() != crc {
            return Err(Field(format!("checkpoint {i} fails its CRC")));
        }
        // The CRC read a mapped window's pages: out of this process's memory again until a
        // resume needs them (tens of MB of an index would otherwise stay resident).
        c.sparse.release();
        c.validate().map_err(|e| Field(e.to_string()))?;
        let f = usize::try_from(frame).ok().and_then(|f| frames.get(f));
        let inside = f.is_some_and(|f| {
            comp_off > f.comp_off + MIN_FRAME_BYTES - 3
                && comp_off < f.comp_off + f.comp_len
                && out_off > f.out_off
                && out_off < f.out_off + f.out_len
                && out_off - content_len >= f.out_off
        });
        if !inside || comp_off <= comp_end || out_off <= out_end {
            return Err(Field(format!(
                "checkpoint {i} (output {out_off}) does not fit its frame"
            )));
        }
        (comp_end, out_end) = (comp_off, out_off);
        out.push(c);
    }
    Ok(out)
}

fn new_dctx() -> io::Result<DCtx<'static>> {
    DCtx::try_create().ok_or_else(|| io::Error::other("cannot allocate a zstd decoder"))
}

fn zstd_msg(code: usize) -> String {
    zstd_safe::get_error_name(code).to_string()
}

/// Decodes a whole zstd stream once, passing every decompressed byte in order to `sink`, and
/// returns its frame table (frames only: [`build_index_with`] also records checkpoints inside
/// large frames, which costs the index pass many times its speed today; opt-in, docs/status.md).
///
/// Single pass, constant memory (plus libzstd's window, and for frames that get checkpoints a
/// copy of the last window and segment). Skippable frames are skipped; bytes that start neither
/// a data nor a skippable frame are an error. The sha256 of the compressed bytes is computed on
/// the way ([`ZstdIndex::compressed_sha256`]). A sink error aborts with [`Error::Sink`].
pub fn build_index<R: Read>(compressed: R, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> Result<ZstdIndex> {
    build_index_with(compressed, None, sink)
}

/// [`build_index`] with checkpoints every `spacing` bytes of output (`None`: frames only),
/// recorded on a thread of their own (`follow.rs`).
pub fn build_index_with<R: Read>(
    compressed: R,
    spacing: Option<u64>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<ZstdIndex> {
    build_index_spilling(compressed, spacing, None, sink)
}

/// [`build_index_with`] that puts the checkpoints' sparse windows in `spill` as they are made
/// (the index's checkpoints then map them from there): the pass holds no index in memory.
pub fn build_index_spilling<R: Read>(
    compressed: R,
    spacing: Option<u64>,
    spill: Option<Spill>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<ZstdIndex> {
    let Some(spacing) = spacing else {
        return build(compressed, None, sink);
    };
    std::thread::scope(|scope| {
        let Some((follower, handle)) = Follower::spawn(scope, spacing, spill) else {
            return build(compressed, None, sink);
        };
        let mut idx = build(compressed, Some(follower), sink)?;
        // `build` dropped the follower: the thread has seen everything and ends.
        match handle.join() {
            Ok(cps) => idx.checkpoints = cps,
            Err(_) => log::warn!("zstd checkpoints: the recording thread failed; none recorded"),
        }
        Ok(idx)
    })
}

/// The index pass; checkpoints are the follower's (the returned index has none).
fn build<R: Read>(
    compressed: R,
    mut follower: Option<Follower>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<ZstdIndex> {
    let mut input = Input::new(HashingReader::new(compressed), BUILD_INPUT_BYTES, 0);
    let mut dctx = new_dctx()?;
    let mut out = vec![0u8; BUILD_OUTPUT_BYTES];
    let mut frames = Vec::new();
    let mut total: u64 = 0;
    let mut seen_frame = false;
    loop {
        let start = input.pos();
        let head = input.peek(8)?;
        if head.is_empty() {
            break;
        }
        if head.len() < 4 {
            return Err(corrupt(start, "truncated frame magic"));
        }
        let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
            skip_skippable(&mut input)?;
        } else if magic == ZSTD_MAGIC {
            if let Some(f) = follower.as_mut() {
                f.start(frames.len() as u64, start, total);
            }
            let n = decode_frame(&mut dctx, &mut input, &mut out, sink, follower.as_mut())?;
            if let Some(f) = follower.as_mut() {
                f.end(n > 0);
            }
            if n > 0 {
                let comp_len = input.pos() - start;
                frames.push(Frame {
                    comp_off: start,
                    comp_len,
                    out_off: total,
                    out_len: n,
                });
                total += n;
            }
        } else {
            let what = match seen_frame {
                true => "trailing garbage after the last zstd frame",
                false => "not zstd (bad magic)",
            };
            return Err(corrupt(start, what));
        }
        seen_frame = true;
    }
    if !seen_frame {
        return Err(corrupt(0, "empty input, not zstd"));
    }
    Ok(ZstdIndex {
        compressed_len: input.pos(),
        uncompressed_len: total,
        compressed_sha256: input.source().digest(),
        frames,
        checkpoints: Vec::new(),
    })
}

/// Skips a skippable frame (magic, 32-bit little-endian length, payload).
fn skip_skippable<R: Read>(input: &mut Input<R>) -> Result<()> {
    let start = input.pos();
    let head = input.peek(8)?;
    if head.len() < 8 {
        return Err(corrupt(start, "truncated skippable frame header"));
    }
    let size = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
    input.consume(8);
    if input.skip(size)? != size {
        return Err(corrupt(input.pos(), "truncated skippable frame"));
    }
    Ok(())
}

/// Decodes one data frame starting at the input position; returns its uncompressed size.
fn decode_frame<R: Read>(
    dctx: &mut DCtx<'static>,
    input: &mut Input<R>,
    out: &mut [u8],
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    mut follower: Option<&mut Follower>,
) -> Result<u64> {
    reset(dctx, input.pos())?;
    let mut produced: u64 = 0;
    let mut stalls = 0;
    loop {
        let more = input.fill()?;
        let at = input.pos();
        // With a follower, output goes to a buffer that is then handed to it, not copied.
        let mut owned = follower.as_mut().map(|f| f.output_buffer(out.len()));
        let dst: &mut [u8] = match owned.as_mut() {
            Some(v) => &mut v[..],
            None => &mut *out,
        };
        let step = decompress(dctx, input.data(), dst).map_err(|c| corrupt(at, zstd_msg(c)))?;
        if step.produced > 0 {
            sink(&dst[..step.produced]).map_err(Error::Sink)?;
            produced += step.produced as u64;
        }
        if let (Some(f), Some(v)) = (follower.as_mut(), owned) {
            f.data(&input.data()[..step.consumed], v, step.produced);
        }
        input.consume(step.consumed);
        if step.frame_done {
            return Ok(produced);
        }
        if step.consumed == 0 && step.produced == 0 {
            if !more {
                return Err(corrupt(input.pos(), "truncated zstd frame"));
            }
            stalls += 1;
            if stalls > MAX_STALLS {
                return Err(corrupt(at, "zstd decoder makes no progress"));
            }
        } else {
            stalls = 0;
        }
    }
}

fn reset(dctx: &mut DCtx<'static>, at: u64) -> Result<()> {
    dctx.reset(ResetDirective::SessionOnly)
        .map(|_| ())
        .map_err(|c| corrupt(at, format!("cannot reset zstd decoder: {}", zstd_msg(c))))
}

/// What one `ZSTD_decompressStream` call did.
struct Step {
    consumed: usize,
    produced: usize,
    /// The frame is complete and fully flushed.
    frame_done: bool,
}

/// One streaming call; the error is libzstd's error code.
fn decompress(dctx: &mut DCtx<'static>, src: &[u8], out: &mut [u8]) -> std::result::Result<Step, usize> {
    let mut inb = InBuffer::around(src);
    let mut outb = OutBuffer::around(out);
    let hint = dctx.decompress_stream(&mut outb, &mut inb)?;
    Ok(Step {
        consumed: inb.pos(),
        produced: outb.pos(),
        frame_done: hint == 0,
    })
}

/// Random access to the decompressed bytes of a zstd blob through its [`ZstdIndex`].
pub type ZstdReader = IndexedReader<ZstdIndex>;

impl StreamIndex for ZstdIndex {
    const CODEC: &'static str = "zstd";
    type Source = ZstdSource;

    fn compressed_len(&self) -> u64 {
        self.compressed_len
    }

    fn uncompressed_len(&self) -> u64 {
        self.uncompressed_len
    }

    fn source(blob: Arc<dyn ReadAt>, index: Arc<Self>) -> ZstdSource {
        ZstdSource { blob, index }
    }

    /// Fewer live decoders than gzip: each holds a window of up to 8 MiB (`--long`: 128 MiB).
    fn default_config() -> CacheConfig {
        CacheConfig {
            max_decoders: DEFAULT_MAX_DECODERS,
            ..CacheConfig::default()
        }
    }
}

/// Live decoders resumed at a [`ZstdIndex`]'s frames.
pub struct ZstdSource {
    blob: Arc<dyn ReadAt>,
    index: Arc<ZstdIndex>,
}

impl Source for ZstdSource {
    type Decoder = ZstdDecoder;

    fn len(&self) -> u64 {
        self.index.uncompressed_len
    }

    fn restart_point(&self, offset: u64) -> u64 {
        let Some(i) = self.index.frame_for(offset) else {
            return 0;
        };
        match self.index.checkpoint_for(i, offset) {
            Some(c) => self.index.checkpoints[c].out_off,
            None => self.index.frames[i].out_off,
        }
    }

    fn next_restart_point(&self, offset: u64) -> Option<u64> {
        let frames = &self.index.frames;
        let frame = frames
            .get(frames.partition_point(|f| f.out_off <= offset))
            .map(|f| f.out_off);
        let cps = &self.index.checkpoints;
        let cp = cps.get(cps.partition_point(|c| c.out_off <= offset)).map(|c| c.out_off);
        let next = match (frame, cp) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        (next < self.index.uncompressed_len).then_some(next)
    }

    fn open(&self, offset: u64) -> io::Result<ZstdDecoder> {
        let i = self
            .index
            .frame_for(offset)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "zstd stream is empty"))?;
        if let Some(c) = self.index.checkpoint_for(i, offset) {
            let r = Resumed::open(Arc::clone(&self.blob), Arc::clone(&self.index), c)?;
            return Ok(ZstdDecoder::Resumed(r, Arc::clone(&self.blob)));
        }
        Ok(ZstdDecoder::Frames(self.frames_from(i)?))
    }
}

impl ZstdSource {
    /// A streaming decoder at the start of frame `i`.
    fn frames_from(&self, i: usize) -> io::Result<FrameDecoder> {
        let f = self.index.frames[i];
        let src = ReadAtSource::new(Arc::clone(&self.blob), f.comp_off, f.comp_off + f.comp_len);
        Ok(FrameDecoder {
            index: Arc::clone(&self.index),
            dctx: new_dctx()?,
            input: Input::new(src, READ_INPUT_BYTES, f.comp_off),
            frame: i,
            frame_out: 0,
            frame_done: false,
            pos: f.out_off,
            stalls: 0,
        })
    }
}

/// A live decoder of a [`ZstdReader`]: resumed at a checkpoint inside a frame (to that frame's
/// end, then streaming from frame starts), or streaming from a frame start.
pub enum ZstdDecoder {
    /// Inside a frame, from a checkpoint; the blob is kept to go on with the next frame.
    Resumed(Resumed, Arc<dyn ReadAt>),
    /// From a frame start, frame after frame.
    Frames(FrameDecoder),
}

impl Decoder for ZstdDecoder {
    fn position(&self) -> u64 {
        match self {
            ZstdDecoder::Resumed(r, _) => r.position(),
            ZstdDecoder::Frames(f) => f.pos,
        }
    }

    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let (next, blob) = match self {
                ZstdDecoder::Frames(f) => return f.read(out),
                ZstdDecoder::Resumed(r, blob) => {
                    let n = r.read(out)?;
                    if n > 0 || out.is_empty() {
                        return Ok(n);
                    }
                    (r.frame() + 1, Arc::clone(blob))
                }
            };
            let ZstdDecoder::Resumed(r, _) = self else { return Ok(0) };
            let index = Arc::clone(r.index());
            if next >= index.frames.len() {
                return Ok(0);
            }
            let source = ZstdSource { blob, index };
            *self = ZstdDecoder::Frames(source.frames_from(next)?);
        }
    }
}

/// A streaming decoder from a frame start: inside frame `frame`, at uncompressed `pos`.
pub struct FrameDecoder {
    index: Arc<ZstdIndex>,
    dctx: DCtx<'static>,
    /// Reads only the current frame's compressed range.
    input: Input<ReadAtSource>,
    frame: usize,
    /// Bytes the current frame produced so far.
    frame_out: u64,
    frame_done: bool,
    pos: u64,
    stalls: u32,
}

impl FrameDecoder {
    /// Moves to the next data frame (skipping whatever lies between, e.g. skippable frames).
    fn next_frame(&mut self) -> Result<()> {
        self.frame += 1;
        if let Some(f) = self.index.frames.get(self.frame) {
            self.input.reposition(f.comp_off, f.comp_off + f.comp_len);
            reset(&mut self.dctx, f.comp_off)?;
            self.frame_out = 0;
            self.frame_done = false;
        }
        Ok(())
    }

    fn step(&mut self, out: &mut [u8]) -> Result<usize> {
        let f = self.index.frames[self.frame];
        let more = self.input.fill()?;
        let at = self.input.pos();
        let step = decompress(&mut self.dctx, self.input.data(), out).map_err(|c| corrupt(at, zstd_msg(c)))?;
        self.input.consume(step.consumed);
        self.frame_out += step.produced as u64;
        self.pos += step.produced as u64;
        if self.frame_out > f.out_len {
            return Err(corrupt(at, "frame decodes to more bytes than indexed"));
        }
        if step.frame_done {
            if self.frame_out != f.out_len || self.input.pos() != f.comp_off + f.comp_len {
                return Err(corrupt(at, "frame does not match the index"));
            }
            self.frame_done = true;
        } else if step.consumed == 0 && step.produced == 0 {
            self.stalls += 1;
            if !more || self.stalls > MAX_STALLS {
                return Err(corrupt(self.input.pos(), "truncated zstd frame"));
            }
        } else {
            self.stalls = 0;
        }
        Ok(step.produced)
    }

    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.frame < self.index.frames.len() {
            if self.frame_done {
                self.next_frame()?;
                continue;
            }
            let n = self.step(out)?;
            if n > 0 {
                return Ok(n);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    /// An edit of an encoded index.
    type Edit<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;

    use super::*;
    use crate::blob::codec_io::test_util::{check_random_reads, check_read, test_data, Rng, ShortReads};
    use sha2::Digest;

    fn frame(data: &[u8], level: i32, checksum: bool) -> Vec<u8> {
        let mut enc = ::zstd::stream::Encoder::new(Vec::new(), level).unwrap();
        enc.include_checksum(checksum).unwrap();
        std::io::Write::write_all(&mut enc, data).unwrap();
        enc.finish().unwrap()
    }

    fn skippable(nibble: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (SKIPPABLE_MAGIC | nibble).to_le_bytes().to_vec();
        v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn index(comp: &[u8]) -> Result<(ZstdIndex, Vec<u8>)> {
        let mut plain = Vec::new();
        let idx = build_index(comp, &mut |b: &[u8]| {
            plain.extend_from_slice(b);
            Ok(())
        })?;
        Ok((idx, plain))
    }

    fn roundtrip(comp: &[u8], plain: &[u8], reads: usize) -> ZstdIndex {
        let (idx, got) = index(comp).unwrap();
        assert!(got == plain, "build_index output differs");
        assert_eq!(idx.uncompressed_len(), plain.len() as u64);
        assert_eq!(idx.compressed_len(), comp.len() as u64);
        let sha: [u8; 32] = sha2::Sha256::digest(comp).into();
        assert_eq!(idx.compressed_sha256(), sha);
        assert_eq!(ZstdIndex::from_bytes(&idx.to_bytes()).unwrap(), idx);
        let config = CacheConfig {
            chunk_size: 64 << 10,
            cache_bytes: 512 << 10,
            max_decoders: 3,
        };
        let blob = ShortReads::new(comp.to_vec());
        let r = ZstdReader::with_config(blob, Arc::new(idx.clone()), config).unwrap();
        check_random_reads(&r, plain, reads, plain.len() as u64 + 3);
        idx
    }

    #[test]
    fn single_frame_sizes() {
        for (i, &size) in [0usize, 1, 32767, 32768, 32769, 300_000, 3 << 20].iter().enumerate() {
            let plain = test_data(size, 40 + i as u64);
            for (level, checksum) in [(1, false), (3, true), (19, true)] {
                if level == 19 && size > 1 << 20 {
                    continue;
                }
                let idx = roundtrip(&frame(&plain, level, checksum), &plain, 120);
                assert_eq!(idx.frames().len(), usize::from(size > 0));
            }
        }
    }

    #[test]
    fn multi_frame_with_skippable_and_empty_frames() {
        let sizes = [0usize, 5000, 70_000, 0, 1, 200_000, 65536, 131_072, 10];
        let parts: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| test_data(n, 60 + i as u64))
            .collect();
        let mut comp = skippable(0, b"leading skippable frame");
        for (i, p) in parts.iter().enumerate() {
            comp.extend(frame(p, 1 + i as i32 % 5, i % 2 == 0));
            if i % 3 == 1 {
                comp.extend(skippable(i as u32, &vec![7u8; i * 100]));
            }
        }
        // A seekable-format seek table is just a skippable frame (magic ...5E).
        comp.extend(skippable(0xE, &[0u8; 40]));
        let plain = parts.concat();
        let idx = roundtrip(&comp, &plain, 400);
        assert_eq!(idx.frames().len(), sizes.iter().filter(|&&n| n > 0).count());
    }

    #[test]
    fn cli_output() {
        use std::process::{Command, Stdio};
        let plain = test_data(2 << 20, 70);
        let run = |args: &[&str]| -> Option<Vec<u8>> {
            let mut child = Command::new("zstd")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .ok()?;
            let mut stdin = child.stdin.take()?;
            let input = plain.clone();
            let w = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
            let out = child.wait_with_output().ok()?;
            w.join().ok()?.ok()?;
            out.status.success().then_some(out.stdout)
        };
        for args in [
            &["-c", "-q"][..],
            &["-c", "-q", "-T2", "--long"][..],
            &["-c", "-q", "-19", "--no-check"][..],
        ] {
            // The zstd CLI is required (scripts/install-deps.sh): never a silent skip.
            let comp = run(args).unwrap_or_else(|| panic!("zstd {args:?} failed or is not installed"));
            roundtrip(&comp, &plain, 60);
        }
    }

    #[test]
    fn truncation_and_garbage() {
        let a = test_data(30_000, 80);
        let b = test_data(20_000, 81);
        let fa = frame(&a, 3, true);
        let comp = [fa.clone(), skippable(1, b"xy"), frame(&b, 3, false)].concat();
        let boundaries = [fa.len(), fa.len() + 10];
        let near = |c: usize| c < 64 || boundaries.iter().any(|b| c.abs_diff(*b) < 64) || comp.len() - c < 64;
        for cut in (0..comp.len()).filter(|&c| near(c) || c % 23 == 0) {
            match index(&comp[..cut]) {
                Err(Error::Corrupt { offset, .. }) => assert!(offset <= cut as u64, "cut {cut}"),
                Ok(_) if boundaries.contains(&cut) => {}
                other => panic!("cut {cut}: expected an error, got {:?}", other.map(|_| ())),
            }
        }
        for tail in [&b"\0"[..], b"\0\0\0\0\0", b"garbage!", &ZSTD_MAGIC.to_le_bytes()[..]] {
            let bad = [comp.clone(), tail.to_vec()].concat();
            match index(&bad) {
                Err(Error::Corrupt { offset, .. }) => assert!(offset >= comp.len() as u64),
                other => panic!("tail {tail:?}: expected an error, got {:?}", other.map(|_| ())),
            }
        }
        for junk in [&b""[..], b"\x1f\x8b\x08\x00", b"abcdefgh"] {
            assert!(matches!(index(junk), Err(Error::Corrupt { .. })));
        }
    }

    #[test]
    fn corruption_never_panics() {
        let plain = test_data(100_000, 82);
        let comp = frame(&plain, 3, true);
        let mut rng = Rng(3);
        let mut errors = 0;
        for _ in 0..300 {
            let at = rng.below(comp.len() as u64) as usize;
            let mut bad = comp.clone();
            bad[at] ^= 1 << rng.below(8);
            match index(&bad) {
                Err(Error::Corrupt { offset, .. }) => {
                    assert!(offset <= comp.len() as u64);
                    errors += 1;
                }
                Err(e) => panic!("unexpected error kind {e}"),
                Ok((_, out)) => assert!(out == plain, "flip at {at} gave different data silently"),
            }
        }
        assert!(errors > 250, "{errors}");
    }

    #[test]
    fn read_errors_on_damaged_blob() {
        let plain = test_data(1 << 20, 83);
        let comp = [frame(&plain[..500_000], 3, true), frame(&plain[500_000..], 3, true)].concat();
        let (idx, _) = index(&comp).unwrap();
        let idx = Arc::new(idx);
        let short: Arc<dyn ReadAt> = Arc::new(comp[..comp.len() - 1].to_vec());
        assert!(ZstdReader::new(short, Arc::clone(&idx)).is_err());
        let mut bad = comp.clone();
        let mid = comp.len() / 4;
        bad[mid..mid + 1000].fill(0x55);
        let r = ZstdReader::new(Arc::new(bad), idx).unwrap();
        let mut buf = vec![0u8; 1000];
        let e = r.read_at(&mut buf, 400_000).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("compressed offset"), "{e}");
        // The other frame is intact.
        check_read(&r, &plain, 600_000, 1000);
    }

    #[test]
    fn sequential_reads_of_one_frame_are_linear() {
        let plain = test_data(12 << 20, 84);
        let comp = frame(&plain, 3, true);
        let (idx, _) = index(&comp).unwrap();
        let idx = Arc::new(idx);
        for cache_bytes in [DEFAULT_CACHE_BYTES_FOR_TEST, 0] {
            let config = CacheConfig {
                chunk_size: 128 << 10,
                cache_bytes,
                max_decoders: 2,
            };
            let r = ZstdReader::with_config(Arc::new(comp.clone()), Arc::clone(&idx), config).unwrap();
            let mut buf = vec![0u8; 128 << 10];
            let mut off = 0;
            while off < plain.len() {
                let n = r.read_at(&mut buf, off as u64).unwrap();
                assert!(buf[..n] == plain[off..off + n]);
                off += n;
            }
            let s = r.stats();
            assert_eq!(s.decompressed_bytes, plain.len() as u64, "{s:?}");
            assert_eq!(s.decoders_opened, 1, "{s:?}");
        }
    }

    const DEFAULT_CACHE_BYTES_FOR_TEST: usize = super::super::chunk_cache::DEFAULT_CACHE_BYTES;

    #[test]
    fn interleaved_sequential_readers_keep_their_decoders() {
        // Two files of one single-frame layer read alternately, as two FUSE readers would.
        let plain = test_data(8 << 20, 85);
        let comp = frame(&plain, 3, false);
        let (idx, _) = index(&comp).unwrap();
        let config = CacheConfig {
            chunk_size: 128 << 10,
            cache_bytes: 0,
            max_decoders: 4,
        };
        let r = ZstdReader::with_config(Arc::new(comp), Arc::new(idx), config).unwrap();
        let (mut a, mut b) = (0usize, 4 << 20);
        while b < plain.len() {
            check_read(&r, &plain, a as u64, 128 << 10);
            check_read(&r, &plain, b as u64, 128 << 10);
            a += 128 << 10;
            b += 128 << 10;
        }
        let s = r.stats();
        // One pass for reader a, one pass to 4 MiB and on for reader b.
        assert!(s.decompressed_bytes <= plain.len() as u64 + (4 << 20), "{s:?}");
    }

    #[test]
    fn concurrent_readers() {
        let plain = Arc::new(test_data(4 << 20, 86));
        let comp: Vec<u8> = plain.chunks(300_000).flat_map(|c| frame(c, 3, true)).collect();
        let (idx, _) = index(&comp).unwrap();
        let r = Arc::new(ZstdReader::new(ShortReads::new(comp), Arc::new(idx)).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (r, plain) = (Arc::clone(&r), Arc::clone(&plain));
                std::thread::spawn(move || check_random_reads(r.as_ref(), &plain, 150, t + 9))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn encoding_rejects_damage_and_inconsistency() {
        let plain = test_data(300_000, 87);
        let comp: Vec<u8> = plain.chunks(50_000).flat_map(|c| frame(c, 3, true)).collect();
        let (idx, _) = index(&comp).unwrap();
        let enc = idx.to_bytes();
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 1 << (i % 8);
            assert!(ZstdIndex::from_bytes(&bad).is_err(), "flip at {i}");
            assert!(ZstdIndex::from_bytes(&enc[..i]).is_err(), "cut at {i}");
        }
        let resign = |mut e: Vec<u8>| {
            let n = e.len() - 32;
            let sum: [u8; 32] = sha2::Sha256::digest(&e[..n]).into();
            e[n..].copy_from_slice(&sum);
            e
        };
        let header = 8 + 4 + 8 + 8 + 32;
        let f1 = header + 8 + FRAME_BYTES;
        let edits: Vec<(&str, Edit<'_>)> = vec![
            (
                "count too big",
                Box::new(|e| e[header..header + 8].copy_from_slice(&u64::MAX.to_le_bytes())),
            ),
            ("count too small", Box::new(|e| e[header] -= 1)),
            ("overlapping frames", Box::new(move |e| e[f1..f1 + 8].fill(0))),
            ("comp_len 0", Box::new(move |e| e[f1 + 8..f1 + 16].fill(0))),
            ("gap in output", Box::new(move |e| e[f1 + 16] ^= 1)),
            ("empty frame", Box::new(move |e| e[f1 + 24..f1 + 32].fill(0))),
            (
                "huge comp_len",
                Box::new(move |e| e[f1 + 8..f1 + 16].copy_from_slice(&u64::MAX.to_le_bytes())),
            ),
            ("short compressed_len", Box::new(|e| e[12..20].fill(0))),
            ("wrong uncompressed_len", Box::new(|e| e[20] ^= 1)),
        ];
        for (what, edit) in edits {
            let mut bad = enc.clone();
            edit(&mut bad);
            assert!(ZstdIndex::from_bytes(&resign(bad)).is_err(), "{what}");
        }
    }

    #[test]
    fn sink_errors_abort() {
        let plain = test_data(1 << 20, 88);
        let r = build_index(&frame(&plain, 1, false)[..], &mut |_b: &[u8]| {
            Err(io::Error::other("stop"))
        });
        assert!(matches!(r, Err(Error::Sink(_))));
    }

    #[test]
    fn reader_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ZstdReader>();
        let _as_blob = |r: ZstdReader| -> Arc<dyn ReadAt> { Arc::new(r) };
    }
}
