//! Access points and the index's encoding (what the layer cache stores).

use super::*;
use crate::blob::codec_error::IndexFormatError::{self, Field};

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
    pub(super) window_len: u32,
    /// The window, raw-deflate compressed.
    pub(super) window: Vec<u8>,
}

impl AccessPoint {
    pub(super) fn member_start(out: u64, inp: u64) -> Self {
        Self {
            out,
            inp,
            bits: 0,
            member_start: true,
            window_len: 0,
            window: Vec::new(),
        }
    }

    pub(super) fn at_block(out: u64, inp: u64, bits: u8, window: &[u8]) -> Result<Self> {
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
        inflate_window(&self.window, self.window_len()).map_err(bad_index)
    }
}

/// Access points of one gzip stream, plus its sizes and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GzipIndex {
    pub(super) compressed_len: u64,
    pub(super) uncompressed_len: u64,
    pub(super) spacing: u64,
    pub(super) compressed_sha256: [u8; 32],
    pub(super) points: Vec<AccessPoint>,
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
        decode_index(data, Trailer::Check).map_err(bad_index)
    }

    /// [`Self::from_bytes`] for bytes inside a file whose own checksum was verified: the sha256
    /// trailer is not hashed again; every other check is made.
    pub fn from_checksummed_bytes(data: &[u8]) -> Result<GzipIndex> {
        decode_index(data, Trailer::Skip).map_err(bad_index)
    }
}

pub(super) fn decode_index(data: &[u8], trailer: Trailer) -> std::result::Result<GzipIndex, IndexFormatError> {
    let mut r = IndexReader::open(data, INDEX_MAGIC, INDEX_VERSION, trailer)?;
    let compressed_len = r.u64()?;
    let uncompressed_len = r.u64()?;
    let spacing = r.u64()?;
    let compressed_sha256 = r.array32()?;
    let count = r.u64()?;
    if count == 0 || count > (r.remaining() / MIN_POINT_BYTES) as u64 {
        return Err(Field(format!("point count {count} does not fit the encoding")));
    }
    let mut points: Vec<AccessPoint> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let p = decode_point(&mut r)?;
        check_point(&p, compressed_len, uncompressed_len).map_err(|e| Field(format!("access point {i}: {e}")))?;
        if let Some(prev) = points.last() {
            let (a, b) = (bit_pos(prev), bit_pos(&p));
            if p.out <= prev.out || b <= a {
                return Err(Field(format!("access point {i} does not follow point {}", i - 1)));
            }
        } else if p.out != 0 || !p.member_start {
            return Err(Field(
                "the first access point is not the start of the first member".into(),
            ));
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

pub(super) fn decode_point(r: &mut IndexReader<'_>) -> std::result::Result<AccessPoint, IndexFormatError> {
    let out = r.u64()?;
    let inp = r.u64()?;
    let bits = r.u8()?;
    let flags = r.u8()?;
    let window_len = r.u32()?;
    let comp_len = r.u32()? as usize;
    let window = r.bytes(comp_len)?.to_vec();
    if flags & !FLAG_MEMBER_START != 0 {
        return Err(Field(format!("unknown flags {flags:#x}")));
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

pub(super) fn check_point(p: &AccessPoint, comp_len: u64, out_len: u64) -> std::result::Result<(), IndexFormatError> {
    if p.bits > 7 || (p.bits > 0 && p.inp == 0) {
        return Err(Field(format!("bad bit count {}", p.bits)));
    }
    if p.inp > comp_len || p.out > out_len {
        return Err(Field("offset out of range".into()));
    }
    if p.window_len() > WINDOW_SIZE || p.window_len as u64 > p.out {
        return Err(Field(format!("bad window length {}", p.window_len)));
    }
    if p.member_start && (p.bits != 0 || p.window_len != 0) {
        return Err(Field("member start with bits or window".into()));
    }
    if p.window_len == 0 {
        return match p.window.is_empty() {
            true => Ok(()),
            false => Err(Field("data for an empty window".into())),
        };
    }
    // The window itself is inflated (and so checked) when the point is first used: inflating
    // every window here made loading a cached index cost as much as a small inflate pass, and
    // the index's checksum already rejects damaged bytes.
    Ok(())
}

/// Position of a point in bits from the start of the compressed stream.
pub(super) fn bit_pos(p: &AccessPoint) -> u128 {
    p.inp as u128 * 8 - p.bits as u128
}

pub(super) fn compress_window(window: &[u8]) -> Result<Vec<u8>> {
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
pub(super) fn inflate_window(comp: &[u8], len: usize) -> std::result::Result<Vec<u8>, IndexFormatError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(len + 1);
    let status = d
        .decompress_vec(comp, &mut out, FlushDecompress::Finish)
        .map_err(|e| Field(format!("window does not inflate: {e}")))?;
    if status != Status::StreamEnd || out.len() != len || d.total_in() != comp.len() as u64 {
        return Err(Field(format!("window does not inflate to {len} bytes")));
    }
    Ok(out)
}
