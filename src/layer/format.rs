//! The on-disk encoding of a [`LayerIndex`] (inside the cache envelope of `crate::cache`, which
//! adds magic, version and a checksum). Little-endian, varints for numbers. Decoding trusts
//! nothing: every count is bounded by the bytes that remain, every member is checked once.
//!
//! Layout: `FORMAT_VERSION u32 | blob_len varint | diff_id str | layer digest str | chunk shift
//! u8 | chunk digests bytes | seal (32 bytes) | seek kind u8 | seek bytes |
//! member count varint | member starts (u32 LE each) | rare member count varint | rare member
//! numbers (varints) | members length varint | members`, the members encoded as
//! [`Entries::encoded`] keeps them in memory, so a warm mount uses them in place
//! ([`decode_mapped`]) without decoding them.

use super::entries::Entries;
use super::{LayerIndex, SeekIndex};
use crate::blob::verified::ChunkDigests;
use crate::blob::{gzip, zstd};
use crate::cache::Bytes;
use crate::digest::Digest;
use crate::varint::{Reader, Writer};
use std::ops::Range;
use std::sync::Arc;

/// Version of this encoding and of what the members mean; part of the cached rootfs trees' key
/// too (`view::persist::key`), since those name members by number. History: 1 = first format;
/// 2 = with total name bytes; 3 = members as kept in memory (used in place from the mapped
/// file), no header offsets; 4 = links, devices, directories and fifos carry no data whatever
/// their size field says (indexes built before skipped it and lost the members after), symlinks
/// have mode 0777; 5 = the layer digest and the sealed chunk digests (sha256) of the blob
/// (`blob::verified`); 6 = chunk digests in BLAKE3; 7 = zstd checkpoints; 8 = their block checks
/// cover the blocks' offsets.
pub const FORMAT_VERSION: u32 = 8;

/// Why a cached index was refused.
#[derive(Debug, thiserror::Error)]
#[error("layer index: {0}")]
pub struct FormatError(&'static str);

impl From<crate::varint::Truncated> for FormatError {
    fn from(e: crate::varint::Truncated) -> Self {
        FormatError(e.0)
    }
}

impl From<super::entries::EntriesError> for FormatError {
    fn from(_: super::entries::EntriesError) -> Self {
        FormatError("bad members")
    }
}

type Result<T> = std::result::Result<T, FormatError>;

/// Writes the encoding of an index of a blob of `blob_len` bytes to `out`, piece by piece: a
/// zstd index with checkpoints is tens of MB, and building the whole encoding in memory held it
/// a second time (the peak RSS of a cold index).
pub fn encode_to(index: &LayerIndex, blob_len: u64, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut w = Writer(Vec::with_capacity(256 + index.chunks.hashes().len()));
    w.0.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    w.num(blob_len);
    w.bytes(index.diff_id.to_string().as_bytes());
    w.bytes(index.digest.to_string().as_bytes());
    w.0.push(index.chunks.shift());
    w.bytes(index.chunks.hashes());
    w.0.extend_from_slice(&index.chunks.seal(&index.digest));
    match &index.seek {
        SeekIndex::None => w.0.push(0),
        SeekIndex::Gzip(g) => {
            w.0.push(1);
            w.bytes(&g.to_bytes());
        }
        SeekIndex::Zstd(z) => {
            w.0.push(2);
            // `Writer::bytes`'s length, then the index straight to `out`.
            w.num(z.encoded_len() as u64);
            out.write_all(&w.0)?;
            w.0.clear();
            z.write_to(out)?;
        }
    }
    w.num(index.entries.len() as u64);
    for s in index.entries.starts() {
        w.0.extend_from_slice(&s.to_le_bytes());
    }
    let rare: Vec<u32> = index.entries.rare_members().collect();
    w.num(rare.len() as u64);
    for i in rare {
        w.num(u64::from(i));
    }
    let members = index.entries.encoded();
    w.num(members.len() as u64);
    out.write_all(&w.0)?;
    out.write_all(members)
}

/// Encodes an index of a blob of `blob_len` bytes in one buffer.
pub fn encode(index: &LayerIndex, blob_len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec does not fail.
    let _ = encode_to(index, blob_len, &mut out);
    out
}

/// Decodes an index, checking it belongs to a blob of `blob_len` bytes (members copied).
pub fn decode(data: &[u8], blob_len: u64) -> Result<LayerIndex> {
    let (head, index, members) = decode_head(data, blob_len, Origin::Unchecked)?;
    let entries = Entries::from_encoded(data.get(members).unwrap_or(&[]), index.starts, &index.rare)?;
    let chunks = ChunkDigests::new(head.shift, blob_len, Bytes::owned(data[head.hashes.clone()].to_vec()))?;
    head.finish(entries, chunks)
}

/// Decodes the index in `payload` of a mapped cache file; the members stay in the mapping.
pub fn decode_mapped(map: Arc<memmap2::Mmap>, payload: Range<usize>, blob_len: u64) -> Result<LayerIndex> {
    let data = map
        .get(payload.clone())
        .ok_or(FormatError("payload outside the file"))?;
    // The cache file's CRC covers the seek index: its own sha256 need not be hashed again.
    let (head, index, members) = decode_head(data, blob_len, Origin::Mapped(&map))?;
    let range = payload.start + members.start..payload.start + members.end;
    // The chunk digests stay in the mapping (page cache), like the members.
    let hashes = payload.start + head.hashes.start..payload.start + head.hashes.end;
    let hashes = Bytes::mapped(map.clone(), hashes).ok_or(FormatError("chunk digests outside the file"))?;
    let chunks = ChunkDigests::new(head.shift, blob_len, hashes)?;
    // The head was decoded (seek index, member starts): its pages need not stay resident.
    crate::cache::release(&map, payload.start..range.start);
    let entries = Entries::from_mapped(map.clone(), range, index.starts, &index.rare)?;
    head.finish(entries, chunks)
}

impl From<crate::blob::verified::ChunkListError> for FormatError {
    fn from(_: crate::blob::verified::ChunkListError) -> Self {
        FormatError("bad chunk digests")
    }
}

/// Everything before the members.
struct Head {
    diff_id: Digest,
    digest: Digest,
    shift: u8,
    /// Where the chunk digests are in the payload.
    hashes: Range<usize>,
    seal: [u8; 32],
    seek: SeekIndex,
}

impl Head {
    /// The index, once the chunk digests are shown to be the ones sealed for this layer.
    fn finish(self, entries: Entries, chunks: ChunkDigests) -> Result<LayerIndex> {
        if chunks.seal(&self.digest) != self.seal {
            return Err(FormatError("chunk digests do not match their seal"));
        }
        Ok(LayerIndex {
            entries,
            seek: self.seek,
            diff_id: self.diff_id,
            digest: self.digest,
            chunks: Arc::new(chunks),
        })
    }
}

/// Where the members start and which have rare fields.
struct MemberIndex {
    starts: Vec<u32>,
    rare: Vec<u32>,
}

/// Where encoded bytes come from.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// Anywhere: every checksum is checked.
    Unchecked,
    /// A cache file whose CRC was checked.
    Checksummed,
    /// Inside this mapped cache file, whose CRC was checked.
    Mapped(&'a Arc<memmap2::Mmap>),
}

/// Everything before the members, their index, and where they are in `data`.
fn decode_head(data: &[u8], blob_len: u64, origin: Origin<'_>) -> Result<(Head, MemberIndex, Range<usize>)> {
    let (mut r, chunks) = decode_chunk_part(data, blob_len)?;
    let seek = r.seek(origin)?;
    let count = r.count(4)?;
    let starts = r.take(count * 4)?.chunks_exact(4);
    let starts = starts.map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let n = r.count(1)?;
    let rare = (0..n).map(|_| r.u32()).collect::<std::result::Result<_, _>>()?;
    let members = r.bytes()?;
    if !r.0.is_empty() {
        return Err(FormatError("trailing bytes"));
    }
    let start = data.len() - members.len();
    let head = Head {
        diff_id: chunks.diff_id,
        digest: chunks.digest,
        shift: chunks.shift,
        hashes: chunks.hashes,
        seal: chunks.seal,
        seek,
    };
    Ok((head, MemberIndex { starts, rare }, start..data.len()))
}

/// The fields up to the seal.
struct ChunkPart {
    diff_id: Digest,
    digest: Digest,
    shift: u8,
    hashes: Range<usize>,
    seal: [u8; 32],
}

/// Decodes the fields up to the seal; returns the reader positioned after them.
fn decode_chunk_part(data: &[u8], blob_len: u64) -> Result<(Reader<'_>, ChunkPart)> {
    let mut r = Reader(data);
    if r.take(4)? != FORMAT_VERSION.to_le_bytes() {
        return Err(FormatError("other format version"));
    }
    if r.num()? != blob_len {
        return Err(FormatError("blob length differs"));
    }
    let digest = |b: &[u8], what| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(FormatError(what))
    };
    let diff_id = digest(r.bytes()?, "bad diff_id")?;
    let layer = digest(r.bytes()?, "bad layer digest")?;
    let shift = r.byte()?;
    let hashes = r.bytes()?;
    let hashes_at = hashes.as_ptr() as usize - data.as_ptr() as usize;
    let hashes = hashes_at..hashes_at + hashes.len();
    let seal = r.take(32)?.try_into().map_err(|_| FormatError("bad seal"))?;
    let part = ChunkPart {
        diff_id,
        digest: layer,
        shift,
        hashes,
        seal,
    };
    Ok((r, part))
}

/// Only the chunk digests of an index of layer `layer` (a blob of `blob_len` bytes), checked
/// against their seal: what `blobs/` reads of the layer need.
pub fn decode_chunks(data: &[u8], blob_len: u64, layer: &Digest) -> Result<ChunkDigests> {
    let (_, part) = decode_chunk_part(data, blob_len)?;
    if &part.digest != layer {
        return Err(FormatError("index of another layer"));
    }
    let chunks = ChunkDigests::new(part.shift, blob_len, Bytes::owned(data[part.hashes].to_vec()))?;
    if chunks.seal(layer) != part.seal {
        return Err(FormatError("chunk digests do not match their seal"));
    }
    Ok(chunks)
}

/// The length of the uncompressed tar stream an index of layer `layer` (a blob of `blob_len`
/// bytes) describes, reading only its head (the size `layers.json` gives containers/storage).
pub fn decode_stream_len(data: &[u8], blob_len: u64, layer: &Digest) -> Result<u64> {
    let (mut r, part) = decode_chunk_part(data, blob_len)?;
    if &part.digest != layer {
        return Err(FormatError("index of another layer"));
    }
    Ok(match r.seek(Origin::Checksummed)? {
        SeekIndex::None => blob_len,
        SeekIndex::Gzip(g) => g.uncompressed_len(),
        SeekIndex::Zstd(z) => z.uncompressed_len(),
    })
}

impl Reader<'_> {
    /// The seek index. From a cache file its own sha256 is not hashed again (the file's CRC
    /// covers it), and from a mapped one a zstd index's sparse windows stay in the mapping.
    fn seek(&mut self, origin: Origin<'_>) -> Result<SeekIndex> {
        let gzip = |b| match origin {
            Origin::Unchecked => gzip::GzipIndex::from_bytes(b),
            _ => gzip::GzipIndex::from_checksummed_bytes(b),
        };
        let zstd = |b: &[u8]| match origin {
            Origin::Unchecked => zstd::ZstdIndex::from_bytes(b),
            Origin::Checksummed => zstd::ZstdIndex::from_checksummed_bytes(b),
            Origin::Mapped(m) => {
                // `b` is a slice of the mapping: its place in it.
                let start = (b.as_ptr() as usize).saturating_sub(m.as_ptr() as usize);
                zstd::ZstdIndex::from_mapped(m, start..start + b.len())
            }
        };
        Ok(match self.byte()? {
            0 => SeekIndex::None,
            1 => SeekIndex::Gzip(Arc::new(
                gzip(self.bytes()?).map_err(|_| FormatError("bad gzip index"))?,
            )),
            2 => SeekIndex::Zstd(Arc::new(
                zstd(self.bytes()?).map_err(|_| FormatError("bad zstd index"))?,
            )),
            _ => return Err(FormatError("bad seek kind")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::tarindex::{Entry, EntryKind, SparseChunk};

    fn sample() -> LayerIndex {
        let e = Entry {
            path: b"usr/bin/\xff".to_vec(),
            kind: EntryKind::File,
            mode: 0o4755,
            uid: 1000,
            gid: u64::from(u32::MAX),
            mtime: -5,
            mtime_nsec: 123,
            size: 10,
            data_offset: 1536,
            stored_size: 4,
            link: Some(b"x".to_vec()),
            dev_major: 1,
            dev_minor: 3,
            xattrs: vec![(b"user.a".to_vec(), b"\0b".to_vec())],
            sparse: Some(vec![SparseChunk { offset: 6, len: 4 }]),
            header_offset: 1024,
        };
        let mut entries = Entries::new();
        entries.push(&e).unwrap();
        entries.push(&e).unwrap();
        let mut chunks = crate::blob::verified::ChunkHasher::new(10);
        chunks.update(&[7u8; 4096]);
        LayerIndex {
            entries,
            seek: SeekIndex::None,
            diff_id: Digest::sha256_of(b"x"),
            digest: Digest::sha256_of(b"y"),
            chunks: Arc::new(chunks.finish()),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample(), 4096);
        let back = decode(&bytes, 4096).unwrap();
        assert_eq!(back.entries, sample().entries);
        assert_eq!(back.diff_id, sample().diff_id);
        assert_eq!(back.digest, sample().digest);
        assert_eq!(back.chunks, sample().chunks);
        assert!(decode(&bytes, 4097).is_err());
    }

    /// Indexes of another version are refused (and so rebuilt by `LayerStore`): format 3 ones
    /// were built by a tar reader that skipped data after links and devices.
    #[test]
    fn other_versions_are_refused() {
        let mut bytes = encode(&sample(), 4096);
        for v in [FORMAT_VERSION - 1, FORMAT_VERSION + 1] {
            bytes[..4].copy_from_slice(&v.to_le_bytes());
            assert!(matches!(decode(&bytes, 4096), Err(FormatError("other format version"))));
        }
    }

    #[test]
    fn chunk_digests_are_sealed_to_the_layer() {
        let bytes = encode(&sample(), 4096);
        let alone = decode_chunks(&bytes, 4096, &sample().digest).unwrap();
        assert_eq!(alone, *sample().chunks);
        assert!(decode_chunks(&bytes, 4096, &Digest::sha256_of(b"z")).is_err());
        // A changed chunk digest (as if the CRC of the file had been fixed up) is refused.
        let at = bytes
            .windows(32)
            .position(|w| w == &sample().chunks.hashes()[32..64])
            .unwrap();
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        assert!(decode(&bad, 4096).is_err());
        assert!(decode_chunks(&bad, 4096, &sample().digest).is_err());
        // So is the list moved to another layer: the seal names the layer digest.
        let (mine, other) = (sample().digest.to_string(), Digest::sha256_of(b"z").to_string());
        let at = bytes.windows(mine.len()).position(|w| w == mine.as_bytes()).unwrap();
        let mut moved = bytes.clone();
        moved[at..at + other.len()].copy_from_slice(other.as_bytes());
        assert!(decode(&moved, 4096).is_err());
    }

    /// What `imgfs index push --zstd-checkpoints` publishes: the index of a layer served from
    /// its cache file, whose checkpoints' sparse windows are ranges of that mapping, encodes
    /// with every checkpoint and window (the same bytes as the cache file's payload), and decodes
    /// back to them from plain bytes, as a consumer decodes the fetched blob.
    #[test]
    fn mapped_checkpoint_windows_are_encoded() {
        use crate::blob::test_util::test_data;
        let plain = test_data(7 << 20, 3);
        let comp = ::zstd::encode_all(&plain[..], 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::cache::Cache::new(Some(dir.path().to_path_buf()));
        let spacing = Some(zstd::DEFAULT_CHECKPOINT_SPACING);
        let z = zstd::build_index_spilling(&comp[..], spacing, cache.spill(), &mut |_: &[u8]| Ok(())).unwrap();
        assert!(z.checkpoints().len() >= 2, "{} checkpoints", z.checkpoints().len());
        let blob_len = 4096;
        let index = LayerIndex {
            seek: SeekIndex::Zstd(Arc::new(z)),
            ..sample()
        };
        let first = encode(&index, blob_len);
        cache.store("layer", "t", &first);
        let (map, payload) = cache.map("layer", "t").unwrap();
        let mapped = decode_mapped(map, payload, blob_len).unwrap();
        let SeekIndex::Zstd(m) = &mapped.seek else {
            panic!("not zstd")
        };
        assert!(m
            .checkpoints()
            .iter()
            .all(|c| c.sparse.is_mapped() && !c.sparse.is_empty()));
        assert!(
            encode(&mapped, blob_len) == first,
            "re-encoding a mapped index changed it"
        );
        let back = decode(&first, blob_len).unwrap();
        let (SeekIndex::Zstd(a), SeekIndex::Zstd(b)) = (&back.seek, &index.seek) else {
            panic!("not zstd")
        };
        assert_eq!(a.checkpoints(), b.checkpoints());
        assert!(!super::super::lacks_checkpoints(&back));
    }

    #[test]
    fn truncations_never_panic_and_fail() {
        let bytes = encode(&sample(), 4096);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], 4096).is_err(), "prefix {n} accepted");
        }
    }
}
