//! Random access into gzip streams through an index of access points (the "zran" technique).
//!
//! DEFLATE cannot be entered at an arbitrary byte: blocks start at *bit* positions, and every
//! block may copy from the previous 32 KiB of output. So an access point records all a fresh
//! raw inflater needs to resume mid-stream:
//!
//! - `out`: the uncompressed offset of the point;
//! - `inp`: the compressed offset of the first whole byte after the point, and `bits` (0..=7):
//!   how many high bits of the byte *before* `inp` still belong to the next block. Resuming
//!   primes the inflater with those bits (`inflatePrime`) and feeds it from `inp`;
//! - `window`: the output before `out` that the data after the point copies from (at most
//!   [`WINDOW_SIZE`] = 32 KiB), installed with `inflateSetDictionary`.
//!
//! Windows are kept small in two ways. They are *sparse*: only output within 32 KiB after a
//! point can reach into its window, so the builder walks the DEFLATE codes of that output
//! (module `refscan`), zeroes the window bytes nothing references and drops the unreferenced head;
//! it then inflates that stretch again with the sparse window and keeps the sparse window only
//! if the output is identical (the full window otherwise). And they are stored deflate-compressed.
//! Measured on 600 MiB of `/usr` (binaries, 2.1:1), 581 points at the default spacing
//! ([`DEFAULT_SPACING`], one point per MiB) take 1.1 MB, where full compressed windows took 9.6 MB.
//!
//! Points are taken at DEFLATE block boundaries, found by inflating with `Z_BLOCK` (inflate
//! stops after each block header/end and reports in `data_type` whether it sits at a block
//! boundary (128), whether the last block was seen (64), and the count of unused bits (0..7)).
//! The first boundary after every `spacing` bytes of output becomes a point, so points can be
//! no denser than the compressor's blocks (typically 16-100 KiB of output; zlib-ng/zlib-rs
//! level 1 writes blocks of about 1 MiB).
//!
//! Multi-member streams (pigz, bgzip, `cat a.gz b.gz`) are one uncompressed stream: members'
//! outputs are concatenated. A point at the start of a member's DEFLATE data needs no window
//! and no bits (`member_start`); point 0 is always such a point. Decoding crosses member
//! boundaries (trailer, next header, `inflateReset`). After the last member, zero bytes (padding
//! some tools add) are accepted; anything else is an error. [`build_index`] verifies every
//! member's CRC-32 and ISIZE; readers verify them for members they decode from the start.
//!
//! [`GzipReader`] serves [`ReadAt`] over the index with a chunk LRU and a pool of live
//! inflaters (see [`super::chunk_cache`]): sequential reads cost one pass, random reads at most
//! `spacing` bytes of inflate from the nearest point plus one chunk.

use std::io::{self, Read};
use std::sync::Arc;

use flate2::Crc;

use super::chunk_cache::{CacheConfig, ChunkCache, ChunkedReader, Decoder, ReaderStats, Source};
use super::codec_io::{HashingReader, IndexReader, IndexWriter, Input, ReadAtSource, Trailer};
use super::ReadAt;
use zlib::{Inflater, Z_BLOCK, Z_NO_FLUSH};

/// Default distance between access points, in uncompressed bytes.
pub const DEFAULT_SPACING: u64 = 1 << 20;
/// DEFLATE's history window: the most output a back-reference can reach, in bytes.
pub const WINDOW_SIZE: usize = 32 << 10;
/// Compressed input buffered while indexing, in bytes.
const BUILD_INPUT_BYTES: usize = 256 << 10;
/// Output produced per inflate call while indexing (and handed to the sink), in bytes.
const BUILD_OUTPUT_BYTES: usize = 256 << 10;
/// Compressed input buffered by each live reader inflater, in bytes.
const READ_INPUT_BYTES: usize = 64 << 10;
/// zlib level used to compress stored windows (1 fastest .. 9 smallest).
const WINDOW_LEVEL: u32 = 6;
/// Compressed bytes collected after a point to make its window sparse, at most.
const MAX_PENDING_INPUT: usize = 1 << 20;
/// Inflate calls in a row that may make no progress before the stream is declared corrupt.
const MAX_STALLS: u32 = 4;
/// First bytes of an encoded [`GzipIndex`].
const INDEX_MAGIC: &[u8; 8] = b"IMGFSGZI";
/// Version of the encoding written by [`GzipIndex::to_bytes`].
const INDEX_VERSION: u32 = 1;
/// Smallest encoded access point (no window), in bytes; bounds the point count of an encoding.
const MIN_POINT_BYTES: usize = 8 + 8 + 1 + 1 + 4 + 4;
/// Flag bit of an encoded point: it starts a member.
const FLAG_MEMBER_START: u8 = 1;

const GZIP_ID1: u8 = 0x1f;
const GZIP_ID2: u8 = 0x8b;
const GZIP_CM_DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// Errors of indexing and of decoding an index.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the compressed stream failed.
    #[error("reading gzip data: {0}")]
    Io(#[from] io::Error),
    /// The compressed stream is not valid gzip; `offset` is where it was noticed.
    #[error("corrupt gzip stream at compressed offset {offset}: {msg}")]
    Corrupt { offset: u64, msg: String },
    /// The sink given to [`build_index`] failed.
    #[error("consumer of decompressed data failed: {0}")]
    Sink(#[source] io::Error),
    /// An encoded index is malformed.
    #[error("invalid gzip index: {0}")]
    BadIndex(String),
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) | Error::Sink(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// Result of this module's fallible functions.
pub type Result<T> = std::result::Result<T, Error>;

/// The module's error under a name that is unambiguous outside it.
pub type GzipError = Error;

fn corrupt(offset: u64, msg: impl Into<String>) -> Error {
    Error::Corrupt {
        offset,
        msg: msg.into(),
    }
}

/// A place where inflating can resume; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPoint {
    /// Uncompressed offset.
    pub out: u64,
    /// Compressed offset of the first whole byte after the point.
    pub inp: u64,
    /// Bits (0..=7) of the byte at `inp - 1` that still belong to the next block.
    pub bits: u8,
    /// The point is the start of a member's DEFLATE data (no window, no bits).
    pub member_start: bool,
    /// Length of the uncompressed window (<= [`WINDOW_SIZE`]).
    window_len: u32,
    /// The window, raw-deflate compressed.
    window: Vec<u8>,
}

impl AccessPoint {
    fn member_start(out: u64, inp: u64) -> Self {
        Self {
            out,
            inp,
            bits: 0,
            member_start: true,
            window_len: 0,
            window: Vec::new(),
        }
    }

    fn at_block(out: u64, inp: u64, bits: u8, window: &[u8]) -> Result<Self> {
        Ok(Self {
            out,
            inp,
            bits,
            member_start: false,
            window_len: window.len() as u32,
            window: match window.is_empty() {
                true => Vec::new(),
                false => compress_window(window)?,
            },
        })
    }

    /// Length of the uncompressed window in bytes.
    pub fn window_len(&self) -> usize {
        self.window_len as usize
    }

    /// Bytes the compressed window takes.
    pub fn compressed_window_len(&self) -> usize {
        self.window.len()
    }

    /// The stored window: the last `window_len` bytes of output before `out`, except that bytes
    /// the following data never copies from are zero.
    pub fn window(&self) -> Result<Vec<u8>> {
        if self.window_len == 0 {
            return Ok(Vec::new());
        }
        inflate_window(&self.window, self.window_len()).map_err(Error::BadIndex)
    }
}

/// Access points of one gzip stream, plus its sizes and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GzipIndex {
    compressed_len: u64,
    uncompressed_len: u64,
    spacing: u64,
    compressed_sha256: [u8; 32],
    points: Vec<AccessPoint>,
}

impl GzipIndex {
    /// Length of the compressed stream (including trailing zero padding).
    pub fn compressed_len(&self) -> u64 {
        self.compressed_len
    }
    /// Length of the decompressed data.
    pub fn uncompressed_len(&self) -> u64 {
        self.uncompressed_len
    }
    /// Spacing the index was built with.
    pub fn spacing(&self) -> u64 {
        self.spacing
    }
    /// sha256 of the whole compressed stream, computed while indexing.
    pub fn compressed_sha256(&self) -> [u8; 32] {
        self.compressed_sha256
    }
    /// The access points, by increasing offset; the first is at offset 0.
    pub fn points(&self) -> &[AccessPoint] {
        &self.points
    }

    /// The last access point at or below uncompressed `offset`.
    pub fn point_for(&self, offset: u64) -> &AccessPoint {
        let i = self.points.partition_point(|p| p.out <= offset);
        &self.points[i.saturating_sub(1)]
    }

    /// The versioned little-endian encoding; see [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = IndexWriter::new(INDEX_MAGIC, INDEX_VERSION);
        w.u64(self.compressed_len);
        w.u64(self.uncompressed_len);
        w.u64(self.spacing);
        w.bytes(&self.compressed_sha256);
        w.u64(self.points.len() as u64);
        for p in &self.points {
            w.u64(p.out);
            w.u64(p.inp);
            w.u8(p.bits);
            w.u8(if p.member_start { FLAG_MEMBER_START } else { 0 });
            w.u32(p.window_len);
            w.u32(p.window.len() as u32);
            w.bytes(&p.window);
        }
        w.finish()
    }

    /// Decodes [`Self::to_bytes`] output. Rejects any damage (the encoding ends with a sha256 of
    /// the rest) and any inconsistency: points not strictly increasing or out of range, windows
    /// that do not inflate to their length, counts the input cannot hold.
    pub fn from_bytes(data: &[u8]) -> Result<GzipIndex> {
        decode_index(data, Trailer::Check).map_err(Error::BadIndex)
    }

    /// [`Self::from_bytes`] for bytes inside a file whose own checksum was verified: the sha256
    /// trailer is not hashed again; every other check is made.
    pub fn from_checksummed_bytes(data: &[u8]) -> Result<GzipIndex> {
        decode_index(data, Trailer::Skip).map_err(Error::BadIndex)
    }
}

fn decode_index(data: &[u8], trailer: Trailer) -> std::result::Result<GzipIndex, String> {
    let mut r = IndexReader::open(data, INDEX_MAGIC, INDEX_VERSION, trailer)?;
    let compressed_len = r.u64()?;
    let uncompressed_len = r.u64()?;
    let spacing = r.u64()?;
    let compressed_sha256 = r.array32()?;
    let count = r.u64()?;
    if count == 0 || count > (r.remaining() / MIN_POINT_BYTES) as u64 {
        return Err(format!("point count {count} does not fit the encoding"));
    }
    let mut points: Vec<AccessPoint> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let p = decode_point(&mut r)?;
        check_point(&p, compressed_len, uncompressed_len).map_err(|e| format!("access point {i}: {e}"))?;
        if let Some(prev) = points.last() {
            let (a, b) = (bit_pos(prev), bit_pos(&p));
            if p.out <= prev.out || b <= a {
                return Err(format!("access point {i} does not follow point {}", i - 1));
            }
        } else if p.out != 0 || !p.member_start {
            return Err("the first access point is not the start of the first member".into());
        }
        points.push(p);
    }
    r.finish()?;
    Ok(GzipIndex {
        compressed_len,
        uncompressed_len,
        spacing,
        compressed_sha256,
        points,
    })
}

fn decode_point(r: &mut IndexReader<'_>) -> std::result::Result<AccessPoint, String> {
    let out = r.u64()?;
    let inp = r.u64()?;
    let bits = r.u8()?;
    let flags = r.u8()?;
    let window_len = r.u32()?;
    let comp_len = r.u32()? as usize;
    let window = r.bytes(comp_len)?.to_vec();
    if flags & !FLAG_MEMBER_START != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    Ok(AccessPoint {
        out,
        inp,
        bits,
        member_start: flags & FLAG_MEMBER_START != 0,
        window_len,
        window,
    })
}

fn check_point(p: &AccessPoint, comp_len: u64, out_len: u64) -> std::result::Result<(), String> {
    if p.bits > 7 || (p.bits > 0 && p.inp == 0) {
        return Err(format!("bad bit count {}", p.bits));
    }
    if p.inp > comp_len || p.out > out_len {
        return Err("offset out of range".into());
    }
    if p.window_len() > WINDOW_SIZE || p.window_len as u64 > p.out {
        return Err(format!("bad window length {}", p.window_len));
    }
    if p.member_start && (p.bits != 0 || p.window_len != 0) {
        return Err("member start with bits or window".into());
    }
    if p.window_len == 0 {
        return match p.window.is_empty() {
            true => Ok(()),
            false => Err("data for an empty window".into()),
        };
    }
    // The window itself is inflated (and so checked) when the point is first used: inflating
    // every window here made loading a cached index cost as much as a small inflate pass, and
    // the index's checksum already rejects damaged bytes.
    Ok(())
}

/// Position of a point in bits from the start of the compressed stream.
fn bit_pos(p: &AccessPoint) -> u128 {
    p.inp as u128 * 8 - p.bits as u128
}

fn compress_window(window: &[u8]) -> Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut c = Compress::new(Compression::new(WINDOW_LEVEL), false);
    let mut out = Vec::with_capacity(window.len() + window.len() / 8 + 64);
    match c.compress_vec(window, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => {
            // Kept for the life of the mount: without this each window would hold the 36 KiB
            // of its worst-case buffer (40 MB for a 1 GiB layer) instead of a few KiB.
            out.shrink_to_fit();
            Ok(out)
        }
        other => Err(Error::Io(io::Error::other(format!(
            "compressing a window failed: {other:?}"
        )))),
    }
}

/// Inflates a stored window, which must be exactly `len` bytes.
fn inflate_window(comp: &[u8], len: usize) -> std::result::Result<Vec<u8>, String> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(len + 1);
    let status = d
        .decompress_vec(comp, &mut out, FlushDecompress::Finish)
        .map_err(|e| format!("window does not inflate: {e}"))?;
    if status != Status::StreamEnd || out.len() != len || d.total_in() != comp.len() as u64 {
        return Err(format!("window does not inflate to {len} bytes"));
    }
    Ok(out)
}

/// Inflates a whole gzip stream once, passing every decompressed byte in order to `sink`, and
/// returns its index with a point about every `spacing` uncompressed bytes.
///
/// Single pass, constant memory. Every member's header, CRC-32 and ISIZE are checked; zero
/// padding after the last member is accepted, any other trailing byte is an error. The sha256
/// of the compressed bytes is computed on the way ([`GzipIndex::compressed_sha256`]), so
/// callers need not wrap the reader. A sink error aborts with [`Error::Sink`].
pub fn build_index<R: Read>(
    compressed: R,
    spacing: u64,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<GzipIndex> {
    let spacing = spacing.max(1);
    let input = Input::new(HashingReader::new(compressed), BUILD_INPUT_BYTES, 0);
    let mut s = GzStream::new(input, Inflater::new_raw()?, true);
    s.start_first_member()?;
    let mut points = vec![AccessPoint::member_start(0, s.input.pos())];
    let mut pending: Option<PendingPoint> = None;
    let mut out = vec![0u8; BUILD_OUTPUT_BYTES];
    let mut total: u64 = 0;
    let mut last: u64 = 0;
    loop {
        let (n, event) = s.step(&mut out, Z_BLOCK)?;
        if n > 0 {
            sink(&out[..n]).map_err(Error::Sink)?;
            total += n as u64;
        }
        if let Some(p) = &mut pending {
            p.follow(s.tap.take().unwrap_or_default(), &out[..n]);
            if p.complete() || matches!(event, Event::MemberStart | Event::End) {
                points.push(p.finish()?);
                pending = None;
            } else {
                s.tap = Some(Vec::new());
            }
        }
        let due = pending.is_none() && total - last >= spacing;
        match event {
            Event::End => break,
            Event::Boundary(bits) if due => {
                let window = s.inflater.dictionary()?;
                let partial = s.input.last_byte().filter(|_| bits > 0);
                pending = Some(PendingPoint::new(total, s.input.pos(), bits, window, partial));
                s.tap = Some(Vec::new());
                last = total;
            }
            Event::MemberStart if due => {
                points.push(AccessPoint::member_start(total, s.input.pos()));
                last = total;
            }
            _ => {}
        }
    }
    Ok(GzipIndex {
        compressed_len: s.input.pos(),
        uncompressed_len: total,
        spacing,
        compressed_sha256: s.input.source().digest(),
        points,
    })
}

/// A block-boundary access point whose window is not final yet: the builder collects the
/// compressed bytes and output that follow it (up to [`WINDOW_SIZE`] bytes of output), then
/// stores only the part of the window that output references (see [`refscan`]), after checking
/// that inflating with that sparse window reproduces the output exactly.
struct PendingPoint {
    out: u64,
    inp: u64,
    bits: u8,
    window: Vec<u8>,
    /// Compressed bytes from the point on; starts with the partial byte when `bits > 0`.
    comp: Vec<u8>,
    /// The first up-to-[`WINDOW_SIZE`] bytes of output after the point.
    after: Vec<u8>,
}

impl PendingPoint {
    fn new(out: u64, inp: u64, bits: u8, window: Vec<u8>, partial: Option<u8>) -> Self {
        Self {
            out,
            inp,
            bits,
            window,
            comp: partial.into_iter().collect(),
            after: Vec::with_capacity(WINDOW_SIZE),
        }
    }

    /// Records the compressed bytes consumed and the output produced by one more step.
    fn follow(&mut self, comp: Vec<u8>, out: &[u8]) {
        self.comp.extend_from_slice(&comp);
        let room = WINDOW_SIZE - self.after.len().min(WINDOW_SIZE);
        self.after.extend_from_slice(&out[..out.len().min(room)]);
    }

    /// Enough output follows the point that nothing further can reach into its window (or the
    /// data is so sparse in output, e.g. a run of empty blocks, that collecting stops; the full
    /// window is kept then).
    fn complete(&self) -> bool {
        self.after.len() >= WINDOW_SIZE || self.comp.len() > MAX_PENDING_INPUT
    }

    fn finish(&self) -> Result<AccessPoint> {
        let start_bit = match self.bits {
            0 => 0,
            b => usize::from(8 - b),
        };
        let sparse = refscan::referenced(&self.comp, start_bit, self.window.len())
            .map(|marks| sparse_window(&self.window, &marks))
            .filter(|w| self.reproduces(w));
        let window = match &sparse {
            Some(w) => w,
            None => {
                log::debug!("access point at {}: keeping the full window", self.out);
                &self.window
            }
        };
        AccessPoint::at_block(self.out, self.inp, self.bits, window)
    }

    /// Whether inflating from the point with `window` gives exactly the recorded output.
    fn reproduces(&self, window: &[u8]) -> bool {
        let Ok(mut inf) = Inflater::new_raw() else {
            return false;
        };
        let mut input = self.comp.as_slice();
        if self.bits > 0 {
            let Some((&first, rest)) = input.split_first() else {
                return false;
            };
            if inf.prime(self.bits, first >> (8 - self.bits)).is_err() {
                return false;
            }
            input = rest;
        }
        if !window.is_empty() && inf.set_dictionary(window).is_err() {
            return false;
        }
        let mut got = vec![0u8; self.after.len()];
        let mut filled = 0;
        while filled < got.len() {
            let r = inf.inflate(input, &mut got[filled..], Z_NO_FLUSH);
            input = &input[r.consumed..];
            filled += r.produced;
            let progress = r.consumed > 0 || r.produced > 0;
            if !progress || !matches!(r.code, zlib::Z_OK | zlib::Z_STREAM_END) {
                break;
            }
        }
        filled == got.len() && got == self.after
    }
}

/// The window with unreferenced bytes zeroed, starting at the first referenced byte.
fn sparse_window(window: &[u8], marks: &[bool]) -> Vec<u8> {
    let Some(first) = marks.iter().position(|&m| m) else {
        return Vec::new();
    };
    window[first..]
        .iter()
        .zip(&marks[first..])
        .map(|(&b, &m)| if m { b } else { 0 })
        .collect()
}

/// What the inflater reached at the end of a [`GzStream::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Nothing of note (output full or input used up).
    Data,
    /// A DEFLATE block boundary (not after the last block), with the unused bits of the last byte.
    Boundary(u8),
    /// A member ended and the next one's DEFLATE data starts at the input position.
    MemberStart,
    /// The last member ended.
    End,
}

/// Raw inflate over a gzip stream that handles member trailers and headers itself.
struct GzStream<R> {
    input: Input<R>,
    inflater: Inflater,
    /// CRC-32 and length of the current member's output, when it was decoded from its start.
    check: Option<Crc>,
    /// Indexing: trailing bytes are read to the end and must all be zero.
    strict: bool,
    /// When set, compressed bytes consumed by inflate are appended here.
    tap: Option<Vec<u8>>,
    done: bool,
    stalls: u32,
}

impl<R: Read> GzStream<R> {
    fn new(input: Input<R>, inflater: Inflater, at_member_start: bool) -> Self {
        Self {
            input,
            inflater,
            check: at_member_start.then(Crc::new),
            strict: false,
            tap: None,
            done: false,
            stalls: 0,
        }
    }

    /// Parses the header of the first member (indexing only).
    fn start_first_member(&mut self) -> Result<()> {
        self.strict = true;
        match read_header(&mut self.input, true, true)? {
            Header::Member => Ok(()),
            Header::End => Err(corrupt(0, "no gzip member")),
        }
    }

    /// One inflate call into `out` (non-empty), then member bookkeeping.
    fn step(&mut self, out: &mut [u8], flush: i32) -> Result<(usize, Event)> {
        if self.done {
            return Ok((0, Event::End));
        }
        if !self.input.fill()? {
            return Err(corrupt(
                self.input.pos(),
                "compressed data ends inside a DEFLATE stream",
            ));
        }
        let at = self.input.pos();
        let r = self.inflater.inflate(self.input.data(), out, flush);
        if let Some(tap) = &mut self.tap {
            tap.extend_from_slice(&self.input.data()[..r.consumed]);
        }
        self.input.consume(r.consumed);
        let produced = &out[..r.produced];
        if let Some(c) = &mut self.check {
            c.update(produced);
        }
        match r.code {
            zlib::Z_STREAM_END => return Ok((r.produced, self.end_member()?)),
            zlib::Z_OK | zlib::Z_BUF_ERROR => {}
            code => {
                let msg = self.inflater.message().unwrap_or_else(|| format!("code {code}"));
                let at = self.input.pos();
                return Err(corrupt(at, format!("invalid DEFLATE data: {msg}")));
            }
        }
        if r.consumed == 0 && r.produced == 0 {
            self.stalls += 1;
            if self.stalls > MAX_STALLS {
                return Err(corrupt(at, "inflate makes no progress"));
            }
        } else {
            self.stalls = 0;
        }
        let dt = r.data_type;
        let boundary = flush == Z_BLOCK && dt & 128 != 0 && dt & 64 == 0 && dt & 0x3f < 8;
        let event = match boundary {
            true => Event::Boundary((dt & 7) as u8),
            false => Event::Data,
        };
        Ok((r.produced, event))
    }

    /// Checks the trailer of the member that just ended and moves to the next one, if any.
    fn end_member(&mut self) -> Result<Event> {
        let at = self.input.pos();
        let mut trailer = [0u8; 8];
        for b in trailer.iter_mut() {
            *b = self
                .input
                .byte()?
                .ok_or_else(|| corrupt(self.input.pos(), "truncated gzip trailer"))?;
        }
        if let Some(c) = self.check.take() {
            let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
            let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
            if crc != c.sum() {
                return Err(corrupt(at, "CRC-32 mismatch in gzip trailer"));
            }
            if size != c.amount() {
                return Err(corrupt(at, "length mismatch (ISIZE) in gzip trailer"));
            }
        }
        match read_header(&mut self.input, false, self.strict)? {
            Header::Member => {
                self.inflater.reset()?;
                self.check = Some(Crc::new());
                Ok(Event::MemberStart)
            }
            Header::End => {
                self.done = true;
                Ok(Event::End)
            }
        }
    }
}

enum Header {
    /// A member header was read; its DEFLATE data follows.
    Member,
    /// No further member.
    End,
}

/// Reads a member header (RFC 1952), or recognises the end of the stream. After the last
/// member, zero bytes are padding: `strict` reads them to the end to prove nothing else follows.
fn read_header<R: Read>(input: &mut Input<R>, first: bool, strict: bool) -> Result<Header> {
    let start = input.pos();
    let Some(id1) = input.byte()? else {
        return match first {
            true => Err(corrupt(start, "empty input, not gzip")),
            false => Ok(Header::End),
        };
    };
    if id1 == 0 && !first {
        if strict {
            expect_zeros(input)?;
        }
        return Ok(Header::End);
    }
    let mut crc = Crc::new();
    crc.update(&[id1]);
    let what = if first {
        "not gzip"
    } else {
        "trailing garbage after gzip member"
    };
    if id1 != GZIP_ID1 || header_byte(input, &mut crc)? != GZIP_ID2 {
        return Err(corrupt(start, format!("{what} (bad magic)")));
    }
    if header_byte(input, &mut crc)? != GZIP_CM_DEFLATE {
        return Err(corrupt(start + 2, "unknown gzip compression method"));
    }
    let flags = header_byte(input, &mut crc)?;
    if flags & FRESERVED != 0 {
        return Err(corrupt(start + 3, "reserved gzip header flags set"));
    }
    for _ in 0..6 {
        header_byte(input, &mut crc)?; // MTIME, XFL, OS
    }
    if flags & FEXTRA != 0 {
        let xlen = u16::from_le_bytes([header_byte(input, &mut crc)?, header_byte(input, &mut crc)?]);
        for _ in 0..xlen {
            header_byte(input, &mut crc)?;
        }
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            while header_byte(input, &mut crc)? != 0 {}
        }
    }
    if flags & FHCRC != 0 {
        let want = crc.sum() as u16;
        let at = input.pos();
        let got = u16::from_le_bytes([header_byte(input, &mut crc)?, header_byte(input, &mut crc)?]);
        if got != want {
            return Err(corrupt(at, "gzip header CRC mismatch"));
        }
    }
    Ok(Header::Member)
}

/// The next header byte, added to the header CRC.
fn header_byte<R: Read>(input: &mut Input<R>, crc: &mut Crc) -> Result<u8> {
    let b = input
        .byte()?
        .ok_or_else(|| corrupt(input.pos(), "truncated gzip header"))?;
    crc.update(&[b]);
    Ok(b)
}

/// Consumes the rest of the input, which must be zero bytes.
fn expect_zeros<R: Read>(input: &mut Input<R>) -> Result<()> {
    while input.fill()? {
        let data = input.data();
        if let Some(i) = data.iter().position(|&b| b != 0) {
            let at = input.pos() + i as u64;
            return Err(corrupt(at, "trailing garbage after the last gzip member"));
        }
        let n = data.len();
        input.consume(n);
    }
    Ok(())
}

/// Random access to the decompressed bytes of a gzip blob through its [`GzipIndex`].
pub struct GzipReader {
    inner: Arc<ChunkedReader<GzipSource>>,
}

impl GzipReader {
    /// A reader with the default [`CacheConfig`].
    pub fn new(compressed: Arc<dyn ReadAt>, index: Arc<GzipIndex>) -> io::Result<Self> {
        Self::with_config(compressed, index, CacheConfig::default())
    }

    /// A reader with explicit cache and pool sizes. Fails if `compressed` is not the length the
    /// index was built from.
    pub fn with_config(compressed: Arc<dyn ReadAt>, index: Arc<GzipIndex>, config: CacheConfig) -> io::Result<Self> {
        Self::build(compressed, index, config, None)
    }

    /// A reader whose chunks live in `cache`, shared with other readers (one budget for a whole
    /// mount); `config.cache_bytes` is ignored.
    pub fn with_shared_cache(
        compressed: Arc<dyn ReadAt>,
        index: Arc<GzipIndex>,
        config: CacheConfig,
        cache: Arc<ChunkCache>,
    ) -> io::Result<Self> {
        Self::build(compressed, index, config, Some(cache))
    }

    fn build(
        compressed: Arc<dyn ReadAt>,
        index: Arc<GzipIndex>,
        config: CacheConfig,
        cache: Option<Arc<ChunkCache>>,
    ) -> io::Result<Self> {
        if compressed.len() != index.compressed_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "gzip blob is {} bytes but its index was built from {} bytes",
                    compressed.len(),
                    index.compressed_len
                ),
            ));
        }
        let source = GzipSource {
            blob: compressed,
            index,
        };
        Ok(Self {
            inner: Arc::new(ChunkedReader::new(source, config, cache)),
        })
    }

    /// The index this reader uses.
    pub fn index(&self) -> &Arc<GzipIndex> {
        &self.inner.source().index
    }

    /// The cache configuration in force.
    pub fn config(&self) -> CacheConfig {
        self.inner.config()
    }

    /// Work done so far.
    pub fn stats(&self) -> ReaderStats {
        self.inner.stats()
    }
}

impl ReadAt for GzipReader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn read_ahead(&self, from: u64, to: u64) {
        self.inner.read_ahead(from, to)
    }
    fn len(&self) -> u64 {
        self.inner.source().index.uncompressed_len
    }
}

struct GzipSource {
    blob: Arc<dyn ReadAt>,
    index: Arc<GzipIndex>,
}

impl Source for GzipSource {
    type Decoder = GzipDecoder;

    fn len(&self) -> u64 {
        self.index.uncompressed_len
    }

    fn restart_point(&self, offset: u64) -> u64 {
        self.index.point_for(offset).out
    }

    fn next_restart_point(&self, offset: u64) -> Option<u64> {
        let points = &self.index.points;
        let next = points.get(points.partition_point(|p| p.out <= offset))?.out;
        (next < self.index.uncompressed_len).then_some(next)
    }

    fn open(&self, offset: u64) -> io::Result<GzipDecoder> {
        let p = self.index.point_for(offset);
        let mut inflater = Inflater::new_raw()?;
        if p.bits > 0 {
            let mut byte = [0u8];
            super::read_exact_at(self.blob.as_ref(), &mut byte, p.inp - 1)?;
            inflater.prime(p.bits, byte[0] >> (8 - p.bits))?;
        }
        if p.window_len > 0 {
            inflater.set_dictionary(&p.window()?)?;
        }
        let end = self.index.compressed_len;
        let src = ReadAtSource::new(Arc::clone(&self.blob), p.inp, end);
        let input = Input::new(src, READ_INPUT_BYTES, p.inp);
        Ok(GzipDecoder {
            stream: GzStream::new(input, inflater, p.member_start),
            pos: p.out,
            len: self.index.uncompressed_len,
        })
    }
}

/// A live inflater of a [`GzipReader`], positioned at `pos`.
struct GzipDecoder {
    stream: GzStream<ReadAtSource>,
    pos: u64,
    len: u64,
}

impl Decoder for GzipDecoder {
    fn position(&self) -> u64 {
        self.pos
    }

    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos >= self.len || out.is_empty() {
                return Ok(0);
            }
            let want = (out.len() as u64).min(self.len - self.pos) as usize;
            let (n, event) = self.stream.step(&mut out[..want], Z_NO_FLUSH)?;
            self.pos += n as u64;
            if self.pos == self.len && event != Event::End {
                self.finish()?;
            }
            if n > 0 {
                return Ok(n);
            }
            if event == Event::End {
                return Ok(0);
            }
        }
    }
}

impl GzipDecoder {
    /// At the end of the data: decodes what remains of the stream (end of the last block,
    /// trailers, empty members) so the last member's CRC-32 and length are checked too.
    fn finish(&mut self) -> Result<()> {
        let mut scratch = [0u8; 64];
        loop {
            let (n, event) = self.stream.step(&mut scratch, Z_NO_FLUSH)?;
            if n > 0 {
                let at = self.stream.input.pos();
                return Err(corrupt(at, "more data than the index says"));
            }
            if event == Event::End {
                return Ok(());
            }
        }
    }
}

/// Minimal safe wrapper over zlib-rs's C-style inflate API (`libz-rs-sys`).
// The only FFI of the crate: zlib-rs exposes inflatePrime/inflateSetDictionary/Z_BLOCK (what an
// access point needs) through zlib's C API alone. Every unsafe block below says why it holds.
#[allow(unsafe_code)]
mod zlib {
    use std::ffi::{c_int, c_uint, CStr};
    use std::io;

    use libz_rs_sys as z;

    pub(super) use z::{Z_BLOCK, Z_BUF_ERROR, Z_NO_FLUSH, Z_OK, Z_STREAM_END};

    /// Raw DEFLATE (no zlib/gzip wrapper), 32 KiB window.
    const RAW_WINDOW_BITS: c_int = -15;

    /// What one [`Inflater::inflate`] call did.
    pub(super) struct Inflated {
        pub code: c_int,
        pub consumed: usize,
        pub produced: usize,
        pub data_type: c_int,
    }

    /// An initialised raw-inflate `z_stream`, ended on drop. The stream lives in a `Box` so
    /// its address never changes (zlib's state may point back at it).
    pub(super) struct Inflater {
        strm: Box<z::z_stream>,
    }

    // SAFETY: the z_stream and the state it points to are owned exclusively by this value
    // (allocated through the Rust global allocator); `next_in`/`next_out` only point at caller
    // buffers during a call. Nothing is tied to the creating thread.
    unsafe impl Send for Inflater {}

    fn zerr(what: &str, code: c_int) -> io::Error {
        io::Error::other(format!("zlib {what} failed with code {code}"))
    }

    impl Inflater {
        pub(super) fn new_raw() -> io::Result<Self> {
            // `default()` installs zlib-rs's Rust allocator, as inflateInit requires.
            let mut strm = Box::new(z::z_stream::default());
            let size = std::mem::size_of::<z::z_stream>() as c_int;
            // SAFETY: `strm` is a valid z_stream with allocator fields set; the version string
            // is zlib-rs's own static C string.
            let rc = unsafe { z::inflateInit2_(strm.as_mut(), RAW_WINDOW_BITS, z::zlibVersion(), size) };
            if rc != Z_OK {
                return Err(zerr("inflateInit2", rc));
            }
            Ok(Self { strm })
        }

        /// Starts a new DEFLATE stream (next gzip member); keeps the allocation.
        pub(super) fn reset(&mut self) -> io::Result<()> {
            // SAFETY: the stream was initialised by `new_raw`.
            match unsafe { z::inflateReset(self.strm.as_mut()) } {
                Z_OK => Ok(()),
                rc => Err(zerr("inflateReset", rc)),
            }
        }

        /// Inserts the low `bits` bits of `value` before the next input byte.
        pub(super) fn prime(&mut self, bits: u8, value: u8) -> io::Result<()> {
            // SAFETY: initialised stream; 0..=7 bits is within inflatePrime's limit of 16.
            match unsafe { z::inflatePrime(self.strm.as_mut(), c_int::from(bits), value.into()) } {
                Z_OK => Ok(()),
                rc => Err(zerr("inflatePrime", rc)),
            }
        }

        /// Installs `dict` (at most 32 KiB) as the history preceding the next output.
        pub(super) fn set_dictionary(&mut self, dict: &[u8]) -> io::Result<()> {
            let len = c_uint::try_from(dict.len()).map_err(|_| zerr("dictionary size", -1))?;
            // SAFETY: initialised stream; `dict` is valid for `len` bytes and only read.
            match unsafe { z::inflateSetDictionary(self.strm.as_mut(), dict.as_ptr(), len) } {
                Z_OK => Ok(()),
                rc => Err(zerr("inflateSetDictionary", rc)),
            }
        }

        /// The current history window (the last up-to-32 KiB of output of this DEFLATE stream).
        pub(super) fn dictionary(&self) -> io::Result<Vec<u8>> {
            let mut len: c_uint = 0;
            // SAFETY: initialised stream; a null dictionary pointer only asks for the length.
            let rc = unsafe { z::inflateGetDictionary(self.strm.as_ref(), std::ptr::null_mut(), &mut len) };
            if rc != Z_OK {
                return Err(zerr("inflateGetDictionary", rc));
            }
            let mut buf = vec![0u8; len as usize];
            let mut got: c_uint = 0;
            // SAFETY: `buf` has room for the `len` bytes the window holds, and the window does
            // not change between the two calls (we hold `&self`).
            let rc = unsafe { z::inflateGetDictionary(self.strm.as_ref(), buf.as_mut_ptr(), &mut got) };
            if rc != Z_OK || got != len {
                return Err(zerr("inflateGetDictionary", rc));
            }
            Ok(buf)
        }

        /// One `inflate` call from `input` into `out`.
        pub(super) fn inflate(&mut self, input: &[u8], out: &mut [u8], flush: c_int) -> Inflated {
            let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
            let avail_out = out.len().min(c_uint::MAX as usize) as c_uint;
            let s = self.strm.as_mut();
            s.next_in = input.as_ptr();
            s.avail_in = avail_in;
            s.next_out = out.as_mut_ptr();
            s.avail_out = avail_out;
            // SAFETY: initialised stream; next_in/next_out point at live buffers of the given
            // sizes for the duration of the call, and are cleared right after.
            let code = unsafe { z::inflate(s, flush) };
            let consumed = (avail_in - s.avail_in) as usize;
            let produced = (avail_out - s.avail_out) as usize;
            s.next_in = std::ptr::null();
            s.avail_in = 0;
            s.next_out = std::ptr::null_mut();
            s.avail_out = 0;
            Inflated {
                code,
                consumed,
                produced,
                data_type: s.data_type,
            }
        }

        /// zlib's message for the last error, if any.
        pub(super) fn message(&self) -> Option<String> {
            if self.strm.msg.is_null() {
                return None;
            }
            // SAFETY: a non-null `msg` points at one of zlib-rs's static NUL-terminated strings.
            let s = unsafe { CStr::from_ptr(self.strm.msg) };
            Some(s.to_string_lossy().into_owned())
        }
    }

    impl Drop for Inflater {
        fn drop(&mut self) {
            // SAFETY: the stream was initialised by `new_raw` and is not used afterwards.
            unsafe {
                z::inflateEnd(self.strm.as_mut());
            }
        }
    }
}

/// Finds which bytes of a point's window the following DEFLATE data actually references.
///
/// Only output within [`WINDOW_SIZE`] bytes after a point can reach back into its window, and
/// typically it references a fraction of it. Bytes nobody references can be stored as zeros
/// (which compress to almost nothing) and the window can start at the first referenced byte.
/// This module decodes just the DEFLATE code structure (Huffman codes, lengths, distances)
/// without producing output. Its result is an optimisation only: the builder checks every
/// sparse window by inflating with it and comparing, and falls back to the full window.
mod refscan {
    use super::WINDOW_SIZE;

    /// LSB-first bit reader over a byte slice.
    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl Bits<'_> {
        fn bit(&mut self) -> Option<u32> {
            let byte = *self.data.get(self.pos >> 3)?;
            let b = (byte >> (self.pos & 7)) & 1;
            self.pos += 1;
            Some(u32::from(b))
        }

        fn bits(&mut self, n: u32) -> Option<u32> {
            let mut v = 0;
            for i in 0..n {
                v |= self.bit()? << i;
            }
            Some(v)
        }

        fn align(&mut self) {
            self.pos = self.pos.div_ceil(8) * 8;
        }
    }

    /// Longest DEFLATE code, in bits.
    const MAX_BITS: usize = 15;

    /// A canonical Huffman code: number of codes of each length, and symbols by code order.
    struct Huffman {
        counts: [u16; MAX_BITS + 1],
        symbols: Vec<u16>,
    }

    impl Huffman {
        /// Builds the code from per-symbol lengths (0 = unused); `None` if over-subscribed.
        fn new(lengths: &[u8]) -> Option<Self> {
            let mut counts = [0u16; MAX_BITS + 1];
            for &l in lengths {
                counts[usize::from(l)] += 1;
            }
            counts[0] = 0;
            let mut left: i32 = 1;
            for &c in &counts[1..] {
                left = 2 * left - i32::from(c);
                if left < 0 {
                    return None;
                }
            }
            let mut offsets = [0u16; MAX_BITS + 2];
            for len in 1..=MAX_BITS {
                offsets[len + 1] = offsets[len] + counts[len];
            }
            let mut symbols = vec![0u16; usize::from(offsets[MAX_BITS + 1])];
            for (sym, &l) in lengths.iter().enumerate() {
                if l > 0 {
                    let slot = &mut offsets[usize::from(l)];
                    symbols[usize::from(*slot)] = sym as u16;
                    *slot += 1;
                }
            }
            Some(Self { counts, symbols })
        }

        /// Decodes one symbol, reading the code bit by bit (codes are sent MSB first).
        fn decode(&self, bits: &mut Bits<'_>) -> Option<u16> {
            let (mut code, mut first, mut index): (i32, i32, i32) = (0, 0, 0);
            for len in 1..=MAX_BITS {
                code |= bits.bit()? as i32;
                let count = i32::from(self.counts[len]);
                if code - first < count {
                    return self.symbols.get((index + code - first) as usize).copied();
                }
                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
            None
        }
    }

    const LENGTH_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227,
        258,
    ];
    const LENGTH_EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
        6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
    ];
    /// Order in which code length code lengths are sent.
    const CLEN_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

    fn fixed_codes() -> Option<(Huffman, Huffman)> {
        let mut lit = [0u8; 288];
        for (i, l) in lit.iter_mut().enumerate() {
            *l = match i {
                0..=143 => 8,
                144..=255 => 9,
                256..=279 => 7,
                _ => 8,
            };
        }
        Some((Huffman::new(&lit)?, Huffman::new(&[5u8; 30])?))
    }

    fn dynamic_codes(bits: &mut Bits<'_>) -> Option<(Huffman, Huffman)> {
        let nlit = bits.bits(5)? as usize + 257;
        let ndist = bits.bits(5)? as usize + 1;
        let nclen = bits.bits(4)? as usize + 4;
        if nlit > 286 || ndist > 30 {
            return None;
        }
        let mut clen = [0u8; 19];
        for &i in &CLEN_ORDER[..nclen] {
            clen[i] = bits.bits(3)? as u8;
        }
        let clcode = Huffman::new(&clen)?;
        let mut lengths = vec![0u8; nlit + ndist];
        let mut i = 0;
        while i < lengths.len() {
            let sym = clcode.decode(bits)?;
            let (value, repeat) = match sym {
                0..=15 => (sym as u8, 1),
                16 => (*lengths.get(i.checked_sub(1)?)?, 3 + bits.bits(2)? as usize),
                17 => (0, 3 + bits.bits(3)? as usize),
                18 => (0, 11 + bits.bits(7)? as usize),
                _ => return None,
            };
            if i + repeat > lengths.len() {
                return None;
            }
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        if lengths[256] == 0 {
            return None;
        }
        Some((Huffman::new(&lengths[..nlit])?, Huffman::new(&lengths[nlit..])?))
    }

    /// For DEFLATE data starting at bit `start_bit` of `data`, marks the bytes of the preceding
    /// `window_len`-byte window that the first [`WINDOW_SIZE`] bytes of output copy from.
    /// `None` when the data is cut short or invalid.
    pub(super) fn referenced(data: &[u8], start_bit: usize, window_len: usize) -> Option<Vec<bool>> {
        let mut marks = vec![false; window_len];
        let mut bits = Bits { data, pos: start_bit };
        let mut out: usize = 0;
        loop {
            if out >= WINDOW_SIZE {
                return Some(marks);
            }
            let last = bits.bit()?;
            match bits.bits(2)? {
                0 => {
                    bits.align();
                    let len = bits.bits(16)?;
                    if bits.bits(16)? != !len & 0xffff {
                        return None;
                    }
                    out += len as usize;
                    if out < WINDOW_SIZE {
                        bits.pos += 8 * len as usize;
                        if bits.pos > 8 * data.len() {
                            return None;
                        }
                    }
                }
                1 => {
                    let (lit, dist) = fixed_codes()?;
                    codes(&mut bits, &lit, &dist, &mut out, &mut marks)?;
                }
                2 => {
                    let (lit, dist) = dynamic_codes(&mut bits)?;
                    codes(&mut bits, &lit, &dist, &mut out, &mut marks)?;
                }
                _ => return None,
            }
            if last == 1 {
                return Some(marks);
            }
        }
    }

    /// Walks one compressed block's codes (or its first [`WINDOW_SIZE`] bytes of output).
    fn codes(bits: &mut Bits<'_>, lit: &Huffman, dist: &Huffman, out: &mut usize, marks: &mut [bool]) -> Option<()> {
        while *out < WINDOW_SIZE {
            let sym = usize::from(lit.decode(bits)?);
            if sym < 256 {
                *out += 1;
                continue;
            }
            if sym == 256 {
                return Some(());
            }
            let i = sym - 257;
            let len = usize::from(*LENGTH_BASE.get(i)?) + bits.bits(u32::from(LENGTH_EXTRA[i]))? as usize;
            let d = usize::from(dist.decode(bits)?);
            let distance = usize::from(*DIST_BASE.get(d)?) + bits.bits(u32::from(DIST_EXTRA[d]))? as usize;
            if distance > *out {
                // Copies start `back` bytes before the point, i.e. inside the window.
                let back = distance - *out;
                let from = marks.len().checked_sub(back)?;
                let n = len.min(back);
                marks[from..from + n].fill(true);
            }
            *out += len;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    /// An edit of an encoded index.
    type Edit<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;

    use super::*;
    use crate::blob::codec_io::test_util::{check_random_reads, check_read, test_data, Rng, ShortReads};
    use std::io::Write;

    const SMALL_SPACING: u64 = 64 << 10;

    /// Options of a hand-made gzip member.
    #[derive(Default)]
    struct Opts<'a> {
        level: u32,
        name: Option<&'a [u8]>,
        comment: Option<&'a [u8]>,
        extra: Option<&'a [u8]>,
        hcrc: bool,
    }

    /// One gzip member, header fields and all, built by hand.
    fn member(data: &[u8], o: &Opts<'_>) -> Vec<u8> {
        let mut flags = 0;
        for (set, bit) in [
            (o.hcrc, FHCRC),
            (o.extra.is_some(), FEXTRA),
            (o.name.is_some(), FNAME),
            (o.comment.is_some(), FCOMMENT),
        ] {
            if set {
                flags |= bit;
            }
        }
        let mut out = vec![GZIP_ID1, GZIP_ID2, GZIP_CM_DEFLATE, flags, 1, 2, 3, 4, 0, 3];
        if let Some(x) = o.extra {
            out.extend_from_slice(&(x.len() as u16).to_le_bytes());
            out.extend_from_slice(x);
        }
        for s in [o.name, o.comment].into_iter().flatten() {
            out.extend_from_slice(s);
            out.push(0);
        }
        if o.hcrc {
            let mut c = Crc::new();
            c.update(&out);
            out.extend_from_slice(&(c.sum() as u16).to_le_bytes());
        }
        let level = flate2::Compression::new(if o.level == 0 { 6 } else { o.level });
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), level);
        enc.write_all(data).unwrap();
        out.extend_from_slice(&enc.finish().unwrap());
        let mut c = Crc::new();
        c.update(data);
        out.extend_from_slice(&c.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        member(data, &Opts::default())
    }

    /// Runs an external compressor on `data`; `None` when it is not installed.
    fn tool(cmd: &str, args: &[&str], data: &[u8]) -> Option<Vec<u8>> {
        use std::process::{Command, Stdio};
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        let input = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().ok()?;
        writer.join().ok()?.ok()?;
        out.status.success().then_some(out.stdout)
    }

    fn index(comp: &[u8], spacing: u64) -> Result<(GzipIndex, Vec<u8>)> {
        let mut plain = Vec::new();
        let idx = build_index(comp, spacing, &mut |b: &[u8]| {
            plain.extend_from_slice(b);
            Ok(())
        })?;
        Ok((idx, plain))
    }

    /// Builds the index, checks it against `plain`, round-trips it and reads it at random
    /// through a short-reading blob. Returns the index.
    fn roundtrip(comp: &[u8], plain: &[u8], spacing: u64, reads: usize) -> GzipIndex {
        let (idx, got) = index(comp, spacing).unwrap();
        assert!(got == plain, "build_index output differs");
        assert_eq!(idx.uncompressed_len(), plain.len() as u64);
        assert_eq!(idx.compressed_len(), comp.len() as u64);
        let sha: [u8; 32] = sha2::Sha256::digest(comp).into();
        assert_eq!(idx.compressed_sha256(), sha);
        let decoded = GzipIndex::from_bytes(&idx.to_bytes()).unwrap();
        assert_eq!(decoded, idx);
        let config = CacheConfig {
            chunk_size: 64 << 10,
            cache_bytes: 512 << 10,
            max_decoders: 3,
        };
        let r = GzipReader::with_config(ShortReads::new(comp.to_vec()), Arc::new(idx.clone()), config).unwrap();
        check_random_reads(&r, plain, reads, plain.len() as u64 + 7);
        idx
    }

    use sha2::Digest;

    #[test]
    fn roundtrip_sizes_and_levels() {
        for (i, &size) in [0usize, 1, 32767, 32768, 32769, 200_000, 3 << 20].iter().enumerate() {
            let plain = test_data(size, i as u64);
            for level in [1, 6, 9] {
                let idx = roundtrip(
                    &member(
                        &plain,
                        &Opts {
                            level,
                            ..Opts::default()
                        },
                    ),
                    &plain,
                    SMALL_SPACING,
                    150,
                );
                // (zlib-rs level 1 writes ~1 MiB blocks, so points can only be that dense.)
                if size >= 1 << 20 && level > 1 {
                    let n = idx.points().len() as u64;
                    assert!(n >= size as u64 / SMALL_SPACING / 2, "{n} points for {size} bytes");
                    assert!(idx.points().iter().any(|p| p.bits != 0));
                    assert!(idx.points().iter().any(|p| p.window_len() > 0));
                }
            }
        }
    }

    #[test]
    fn random_incompressible_data_uses_stored_blocks() {
        let mut rng = Rng(99);
        let plain: Vec<u8> = (0..(1 << 20)).map(|_| rng.next() as u8).collect();
        let idx = roundtrip(&gz(&plain), &plain, SMALL_SPACING, 100);
        assert!(idx.points().len() > 4);
    }

    #[test]
    fn header_fields_are_parsed() {
        let plain = test_data(100_000, 5);
        let extra = [b'A', b'B', 4, 0, 1, 2, 3, 4];
        let o = Opts {
            level: 6,
            name: Some(b"file.tar"),
            comment: Some(b"a comment"),
            extra: Some(&extra),
            hcrc: true,
        };
        let comp = member(&plain, &o);
        roundtrip(&comp, &plain, SMALL_SPACING, 50);
        // A wrong header CRC is caught, with its offset.
        let hcrc_at = 10 + 2 + extra.len() + 9 + 10;
        let mut bad = comp.clone();
        bad[hcrc_at] ^= 1;
        match index(&bad, SMALL_SPACING) {
            Err(Error::Corrupt { offset, msg }) => {
                assert_eq!(offset, hcrc_at as u64);
                assert!(msg.contains("header CRC"), "{msg}");
            }
            other => panic!("expected a header CRC error, got {other:?}"),
        }
        // Reserved flags, unknown method.
        for (at, v) in [(3, 0x20u8), (2, 7)] {
            let mut bad = comp.clone();
            bad[at] = v;
            assert!(matches!(index(&bad, SMALL_SPACING), Err(Error::Corrupt { .. })));
        }
    }

    #[test]
    fn multi_member_with_empty_members_and_padding() {
        let parts: Vec<Vec<u8>> = [0usize, 70_000, 0, 1, 300_000, 32768, 0, 150_000]
            .iter()
            .enumerate()
            .map(|(i, &n)| test_data(n, 100 + i as u64))
            .collect();
        let mut comp = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let o = Opts {
                level: 1 + (i as u32 % 9),
                name: (i % 2 == 0).then_some(b"n".as_slice()),
                hcrc: i % 3 == 0,
                ..Opts::default()
            };
            comp.extend(member(p, &o));
        }
        let plain = parts.concat();
        let idx = roundtrip(&comp, &plain, SMALL_SPACING, 300);
        assert!(idx.points().iter().filter(|p| p.member_start).count() > 1);
        // Zero padding after the last member is fine.
        let mut padded = comp.clone();
        padded.extend(std::iter::repeat_n(0u8, 5000));
        roundtrip(&padded, &plain, SMALL_SPACING, 100);
        // Anything else after it is not, and the error says where.
        for tail in [&[0u8, 0, 7][..], b"x", &[GZIP_ID1][..], &[GZIP_ID1, GZIP_ID2][..]] {
            let mut bad = comp.clone();
            bad.extend_from_slice(tail);
            match index(&bad, SMALL_SPACING) {
                Err(Error::Corrupt { offset, .. }) => {
                    assert!(offset >= comp.len() as u64 && offset <= bad.len() as u64)
                }
                other => panic!("tail {tail:?}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_spacing_gives_the_same_bytes() {
        let plain = test_data(700_000, 8);
        let comp = [gz(&plain[..300_000]), gz(&plain[300_000..])].concat();
        for spacing in [1, 1000, 32 << 10, 100_000, 1 << 20, u64::MAX] {
            roundtrip(&comp, &plain, spacing, 60);
        }
    }

    #[test]
    fn external_tools_output() {
        // Every producer is required (scripts/install-deps.sh installs them): a missing tool
        // fails the test instead of leaving it to check nothing.
        let plain = test_data(2_500_000, 21);
        let mut outputs = Vec::new();
        for (cmd, args) in [
            ("gzip", &["-c", "-6"][..]),
            ("gzip", &["-c", "-1", "--rsyncable"][..]),
            ("pigz", &["-c", "-p", "2", "-b", "128"][..]),
            ("pigz", &["-c", "-i", "-9"][..]),
        ] {
            let c = tool(cmd, args, &plain).unwrap_or_else(|| panic!("{cmd} {args:?} failed or is not installed"));
            outputs.push(c);
        }
        for c in &outputs {
            roundtrip(c, &plain, SMALL_SPACING, 100);
        }
        // `cat a.gz b.gz`
        let cat = [outputs[0].clone(), outputs[2].clone()].concat();
        roundtrip(&cat, &[plain.clone(), plain.clone()].concat(), SMALL_SPACING, 100);
        // python3's gzip module writes FNAME and an mtime.
        let py = "import gzip,sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), 5))";
        let c = tool("python3", &["-c", py], &plain).expect("python3 failed or is not installed");
        roundtrip(&c, &plain, SMALL_SPACING, 50);
    }

    #[test]
    fn truncations_are_errors_with_offsets() {
        let plain = test_data(60_000, 3);
        let comp = [gz(&plain[..20_000]), gz(&plain[20_000..])].concat();
        let boundary = gz(&plain[..20_000]).len();
        // Every cut near the header, the member boundary and the end; a sample elsewhere.
        let near = |c: usize| c < 64 || c.abs_diff(boundary) < 64 || comp.len() - c < 64;
        for cut in (0..comp.len()).filter(|&c| near(c) || c % 41 == 0) {
            match index(&comp[..cut], 16 << 10) {
                Err(Error::Corrupt { offset, .. }) => assert!(offset <= cut as u64, "cut {cut}"),
                Ok(_) if cut == boundary => {}
                other => panic!("cut {cut}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn corruption_is_an_error() {
        let plain = test_data(200_000, 4);
        let comp = gz(&plain);
        let mut rng = Rng(77);
        for _ in 0..300 {
            let at = 10 + rng.below(comp.len() as u64 - 10) as usize;
            let mut bad = comp.clone();
            bad[at] ^= 1 << rng.below(8);
            match index(&bad, SMALL_SPACING) {
                Err(Error::Corrupt { offset, .. }) => assert!(offset < comp.len() as u64),
                other => panic!("flip at {at}: expected an error, got {:?}", other.map(|_| ())),
            }
        }
        for junk in [&b""[..], b"\0\0\0", b"hello world", &[0x1f, 0x8b, 8, 0][..]] {
            assert!(matches!(index(junk, SMALL_SPACING), Err(Error::Corrupt { .. })));
        }
    }

    #[test]
    fn sink_errors_abort() {
        let plain = test_data(1 << 20, 6);
        let mut seen = 0;
        let r = build_index(&gz(&plain)[..], SMALL_SPACING, &mut |b: &[u8]| {
            seen += b.len();
            match seen > 300_000 {
                true => Err(io::Error::other("stop")),
                false => Ok(()),
            }
        });
        assert!(matches!(r, Err(Error::Sink(_))));
    }

    #[test]
    fn read_errors_on_damaged_blob() {
        let plain = test_data(2 << 20, 9);
        let comp = gz(&plain);
        let (idx, _) = index(&comp, SMALL_SPACING).unwrap();
        let idx = Arc::new(idx);
        // Wrong length is refused up front.
        let short: Arc<dyn ReadAt> = Arc::new(comp[..comp.len() - 1].to_vec());
        assert!(GzipReader::new(short, Arc::clone(&idx)).is_err());
        // Garbage in the middle: reads through it fail cleanly, other reads still work.
        let mut bad = comp.clone();
        let mid = comp.len() / 2;
        bad[mid..mid + 4000].fill(0xff);
        let r = GzipReader::new(Arc::new(bad), Arc::clone(&idx)).unwrap();
        let mut errors = 0;
        let mut buf = vec![0u8; 128 << 10];
        for off in (0..plain.len()).step_by(buf.len()) {
            match r.read_at(&mut buf, off as u64) {
                Ok(n) => assert!(n > 0),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                    assert!(e.to_string().contains("compressed offset"), "{e}");
                    errors += 1;
                }
            }
        }
        assert!(errors > 0);
        check_read(&r, &plain, 0, 1000);
        // A truncated tail (same length, zeroed) fails at the end instead of returning short.
        let mut tail = comp.clone();
        let n = tail.len();
        tail[n - 3000..].fill(0);
        let r = GzipReader::new(Arc::new(tail), idx).unwrap();
        let mut buf = vec![0u8; 1000];
        assert!(r.read_at(&mut buf, plain.len() as u64 - 1000).is_err());
    }

    #[test]
    fn sequential_reads_are_linear() {
        let plain = test_data(12 << 20, 10);
        let comp = gz(&plain);
        let (idx, _) = index(&comp, DEFAULT_SPACING).unwrap();
        let idx = Arc::new(idx);
        let configs = [
            CacheConfig::default(),
            CacheConfig {
                chunk_size: 128 << 10,
                cache_bytes: 0,
                max_decoders: 2,
            },
        ];
        for config in configs {
            let r = GzipReader::with_config(Arc::new(comp.clone()), Arc::clone(&idx), config).unwrap();
            let mut buf = vec![0u8; 128 << 10];
            let mut off = 0;
            while off < plain.len() {
                let n = r.read_at(&mut buf, off as u64).unwrap();
                assert!(buf[..n] == plain[off..off + n]);
                off += n;
            }
            let s = r.stats();
            assert_eq!(s.decompressed_bytes, plain.len() as u64, "{config:?}: {s:?}");
            assert_eq!(s.decoders_opened, 1, "{s:?}");
        }
    }

    #[test]
    fn random_reads_cost_at_most_one_spacing() {
        let plain = test_data(8 << 20, 12);
        let comp = gz(&plain);
        let (idx, _) = index(&comp, DEFAULT_SPACING).unwrap();
        let config = CacheConfig {
            cache_bytes: 0,
            max_decoders: 0,
            ..CacheConfig::default()
        };
        let r = GzipReader::with_config(Arc::new(comp), Arc::new(idx), config).unwrap();
        let mut rng = Rng(5);
        for _ in 0..50 {
            let before = r.stats().decompressed_bytes;
            let off = rng.below(plain.len() as u64);
            check_read(&r, &plain, off, 1);
            let cost = r.stats().decompressed_bytes - before;
            // Blocks are at most ~64 KiB of output at these levels, so a point lies within.
            assert!(
                cost <= DEFAULT_SPACING + (256 << 10) + config.chunk_size as u64,
                "{cost}"
            );
        }
    }

    #[test]
    fn concurrent_readers() {
        let plain = Arc::new(test_data(6 << 20, 13));
        let comp = gz(&plain);
        let (idx, _) = index(&comp, SMALL_SPACING).unwrap();
        let config = CacheConfig {
            chunk_size: 64 << 10,
            cache_bytes: 1 << 20,
            max_decoders: 4,
        };
        let r = Arc::new(GzipReader::with_config(ShortReads::new(comp), Arc::new(idx), config).unwrap());
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (r, plain) = (Arc::clone(&r), Arc::clone(&plain));
                std::thread::spawn(move || match t % 2 {
                    0 => check_random_reads(r.as_ref(), &plain, 200, t + 1),
                    _ => {
                        let mut off = (t as usize) * 10_000;
                        while off < plain.as_slice().len() {
                            check_read(r.as_ref(), &plain, off as u64, 128 << 10);
                            off += 128 << 10;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    /// Re-signs an edited encoding so only the structural checks can reject it.
    fn resign(mut enc: Vec<u8>) -> Vec<u8> {
        let n = enc.len() - 32;
        let sum: [u8; 32] = sha2::Sha256::digest(&enc[..n]).into();
        enc[n..].copy_from_slice(&sum);
        enc
    }

    #[test]
    fn encoding_rejects_damage_and_inconsistency() {
        let plain = test_data(400_000, 14);
        let comp = [gz(&plain[..100_000]), gz(&plain[100_000..])].concat();
        let (idx, _) = index(&comp, SMALL_SPACING).unwrap();
        assert!(idx.points().len() >= 4);
        let enc = idx.to_bytes();
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 1 << (i % 8);
            assert!(GzipIndex::from_bytes(&bad).is_err(), "flip at {i}");
            assert!(GzipIndex::from_bytes(&enc[..i]).is_err(), "cut at {i}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(GzipIndex::from_bytes(&longer).is_err());

        // Structural damage behind a valid checksum.
        let header = 8 + 4 + 8 + 8 + 8 + 32;
        // Encoded offset of the first point that has a window.
        let with_window = idx.points().iter().position(|p| p.window_len() > 0).unwrap();
        let p1 = header
            + 8
            + idx.points()[..with_window]
                .iter()
                .map(|p| MIN_POINT_BYTES + p.window.len())
                .sum::<usize>();
        let edits: Vec<(&str, Edit<'_>)> = vec![
            (
                "huge count",
                Box::new(|e| e[header..header + 8].copy_from_slice(&u64::MAX.to_le_bytes())),
            ),
            ("zero count", Box::new(|e| e[header..header + 8].fill(0))),
            ("point out of order", Box::new(move |e| e[p1..p1 + 8].fill(0))),
            ("bits > 7", Box::new(move |e| e[p1 + 16] = 9)),
            ("unknown flag", Box::new(move |e| e[p1 + 17] |= 0x80)),
            ("short compressed_len", Box::new(|e| e[12..20].fill(0))),
            (
                "short uncompressed_len",
                Box::new(|e| e[20..28].copy_from_slice(&5u64.to_le_bytes())),
            ),
            ("magic", Box::new(|e| e[0] = b'X')),
            ("version", Box::new(|e| e[8] = 2)),
        ];
        for (what, edit) in edits {
            let mut bad = enc.clone();
            edit(&mut bad);
            assert!(GzipIndex::from_bytes(&resign(bad)).is_err(), "{what}");
        }
        // A damaged window is found when its point is first used (windows are not inflated
        // while loading): reads through it fail, they never return wrong bytes.
        let window_edits: Vec<(&str, Edit<'_>)> = vec![
            ("window length", Box::new(move |e| e[p1 + 18] ^= 1)),
            ("window data", Box::new(move |e| e[p1 + 26] ^= 0xff)),
        ];
        let at = idx.points()[with_window].out;
        for (what, edit) in window_edits {
            let mut bad = enc.clone();
            edit(&mut bad);
            let Ok(bad_idx) = GzipIndex::from_bytes(&resign(bad)) else {
                continue;
            };
            let blob: Arc<dyn ReadAt> = Arc::new(comp.clone());
            let reader = GzipReader::new(blob, Arc::new(bad_idx)).unwrap();
            let mut buf = vec![0u8; 4096];
            match reader.read_at(&mut buf, at) {
                Err(_) => {}
                Ok(n) => assert_eq!(&buf[..n], &plain[at as usize..at as usize + n], "{what}: wrong bytes"),
            }
        }
    }

    #[test]
    fn index_size_is_small() {
        // ~3x compressible data at 64 KiB spacing: windows are stored compressed.
        let plain = test_data(8 << 20, 15);
        let (idx, _) = index(&gz(&plain), SMALL_SPACING).unwrap();
        let per_point = idx.to_bytes().len() / idx.points().len();
        assert!(per_point < 20_000, "{per_point} bytes per point");
    }

    #[test]
    fn reference_scan_finds_every_window_reference() {
        let mut rng = Rng(31);
        let noise: Vec<u8> = (0..300_000).map(|_| rng.next() as u8).collect();
        let text = test_data(1_500_000, 32);
        let zeros = vec![0u8; 400_000];
        let plain = [text.clone(), noise, zeros, text].concat();
        let mut streams: Vec<(String, Vec<u8>)> = [2, 4, 6, 9]
            .iter()
            .map(|&level| {
                (
                    format!("zlib-rs -{level}"),
                    member(
                        &plain,
                        &Opts {
                            level,
                            ..Opts::default()
                        },
                    ),
                )
            })
            .collect();
        for level in ["-1", "-3", "-9"] {
            if let Some(c) = tool("gzip", &["-c", level], &plain) {
                streams.push((format!("gzip {level}"), c));
            }
        }
        for (level, comp) in streams {
            let (idx, _) = index(&comp, 40_000).unwrap();
            let mut scanned = 0;
            for p in idx.points().iter().filter(|p| !p.member_start) {
                let out = p.out as usize;
                let window = &plain[out.saturating_sub(WINDOW_SIZE)..out];
                let (data, start_bit) = match p.bits {
                    0 => (&comp[p.inp as usize..], 0),
                    b => (&comp[p.inp as usize - 1..], usize::from(8 - b)),
                };
                let marks = refscan::referenced(data, start_bit, window.len())
                    .unwrap_or_else(|| panic!("level {level}: scan failed at {out}"));
                let pending = PendingPoint {
                    out: p.out,
                    inp: p.inp,
                    bits: p.bits,
                    window: window.to_vec(),
                    comp: data.to_vec(),
                    after: plain[out..(out + WINDOW_SIZE).min(plain.len())].to_vec(),
                };
                let sparse = sparse_window(window, &marks);
                assert!(pending.reproduces(&sparse), "level {level}: sparse window at {out}");
                // The stored window is that sparse one.
                assert_eq!(p.window().unwrap(), sparse);
                // Dropping one referenced byte breaks it, so the marks are not overly generous.
                if let Some(i) = sparse.iter().rposition(|&b| b != 0) {
                    let mut broken = sparse.clone();
                    broken[i] ^= 0x55;
                    assert!(!pending.reproduces(&broken), "level {level}: byte {i} at {out}");
                }
                scanned += 1;
            }
            assert!(scanned > 10, "level {level}: {scanned} points");
        }
    }

    #[test]
    fn sparse_windows_shrink_the_index() {
        let plain = test_data(4 << 20, 33);
        let (idx, _) = index(&gz(&plain), SMALL_SPACING).unwrap();
        let full = idx.points().iter().filter(|p| p.window_len() == WINDOW_SIZE).count();
        let stored: usize = idx.points().iter().map(|p| p.compressed_window_len()).sum();
        let n = idx.points().len();
        assert!(stored / n < 8 << 10, "{} bytes per window", stored / n);
        assert!(full < n, "{full} of {n} windows are full");
    }

    #[test]
    fn reader_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<GzipReader>();
        let _as_blob = |r: GzipReader| -> Arc<dyn ReadAt> { Arc::new(r) };
    }
}
