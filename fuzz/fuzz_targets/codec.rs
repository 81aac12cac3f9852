//! What the `gzip` and `zstd` targets share besides `common.rs` (included with `#[path]`; not a
//! target itself): the input layout and its four modes, the build of an index against the
//! reference decoder's output, the reader's configuration, and the checks of a decoded index.

use crate::common::{read_ranges, signed_index, Rng};
use imgfs::blob::chunk_cache::{CacheConfig, MIN_CHUNK_SIZE};
use imgfs::blob::indexed::{IndexedReader, StreamIndex};
use imgfs::blob::ReadAt;
use std::fmt::{Debug, Display};
use std::io;
use std::sync::Arc;

/// Decompressed bytes a target looks at, at most: a small input may inflate to gigabytes.
pub const MAX_OUT: usize = 8 << 20;

/// The sink's error past `MAX_OUT`: a build that fails with it is not a finding.
const LIMIT: &str = "fuzz target output limit";

/// A codec's index with its encoding, as the targets use it.
pub trait FuzzIndex: StreamIndex + PartialEq + Debug {
    /// The magic of its encoding (mode 3 signs payloads with it).
    const MAGIC: &'static [u8; 8];
    /// The reference decoder's name, for messages.
    const TOOL: &'static str;
    fn decode(bytes: &[u8]) -> Option<Self>;
    fn encode(&self) -> Vec<u8>;
}

impl FuzzIndex for imgfs::blob::gzip::GzipIndex {
    const MAGIC: &'static [u8; 8] = b"IMGFSGZI";
    const TOOL: &'static str = "flate2";
    fn decode(bytes: &[u8]) -> Option<Self> {
        Self::from_bytes(bytes).ok()
    }
    fn encode(&self) -> Vec<u8> {
        self.to_bytes()
    }
}

impl FuzzIndex for imgfs::blob::zstd::ZstdIndex {
    const MAGIC: &'static [u8; 8] = b"IMGFSZSI";
    const TOOL: &'static str = "zstd";
    fn decode(bytes: &[u8]) -> Option<Self> {
        Self::from_bytes(bytes).ok()
    }
    fn encode(&self) -> Vec<u8> {
        self.to_bytes()
    }
}

/// Byte 0 = mode, byte 1 = the codec's parameter, bytes 2..10 = seed of the read ranges; the rest
/// is the payload. Modes (byte 0 % 4): 0, the payload is a stream as it is; 1, plain data that
/// `compress(payload, param, seed)` makes a stream of; 2, an encoded index as it is; 3, the body
/// of an encoded index, signed (magic, version, sha256 trailer) so decoding gets past the
/// checksum. Streams go to `check_stream(stream, param, seed)`, indexes to [`check_decoded`].
pub fn dispatch<I: FuzzIndex>(
    data: &[u8],
    compress: impl FnOnce(&[u8], u8, u64) -> Vec<u8>,
    check_stream: impl FnOnce(&[u8], u8, u64),
) {
    if data.len() < 10 {
        return;
    }
    let (mode, param) = (data[0] % 4, data[1]);
    let seed = u64::from_le_bytes(data[2..10].try_into().unwrap());
    let payload = &data[10..];
    match mode {
        0 => check_stream(payload, param, seed),
        1 => check_stream(&compress(payload, param, seed), param, seed),
        2 => check_decoded::<I>(payload, seed),
        _ => check_decoded::<I>(&signed_index(I::MAGIC, payload), seed),
    }
}

/// Runs `build` with a sink that keeps at most `MAX_OUT` bytes. A failure is fine when the
/// reference decoder's output `want` is `None` or the limit stopped the build; a built index
/// must count the bytes its sink got. Returns the index and those bytes.
pub fn build<I: FuzzIndex, E: Display>(
    want: Option<&[u8]>,
    build: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> Result<I, E>,
) -> Option<(I, Vec<u8>)> {
    let mut got = Vec::new();
    let mut sink = |b: &[u8]| {
        if got.len() + b.len() > MAX_OUT {
            return Err(io::Error::other(LIMIT));
        }
        got.extend_from_slice(b);
        Ok(())
    };
    let index = match build(&mut sink) {
        Ok(index) => index,
        Err(e) => {
            let limited = e.to_string().contains(LIMIT);
            assert!(
                want.is_none() || limited,
                "{} decodes {} bytes but the index builder fails: {e}",
                I::TOOL,
                want.map_or(0, |w| w.len())
            );
            return None;
        }
    };
    assert_eq!(index.uncompressed_len(), got.len() as u64, "index size vs sink output");
    Some((index, got))
}

/// The checks every built index passes: its encoding round-trips, the builder's output is the
/// reference decoder's, and 1..16 pseudo-random reads through a reader over `blob` equal the
/// same slices of it.
pub fn check_built<I: FuzzIndex>(index: I, blob: &[u8], got: &[u8], want: Option<&[u8]>, param: u8, seed: u64) {
    let again = I::decode(&index.encode()).expect("an index's own encoding decodes");
    assert_eq!(again, index);
    if let Some(want) = want {
        assert!(
            got == want,
            "builder output differs from {} ({} vs {} bytes)",
            I::TOOL,
            got.len(),
            want.len()
        );
    }
    let reader = reader(Arc::new(blob.to_vec()), index, param, seed);
    read_ranges(&reader, Some(got), seed);
}

/// A reader with chunk size, cache and decoder pool chosen by the input.
fn reader<I: FuzzIndex>(blob: Arc<dyn ReadAt>, index: I, param: u8, seed: u64) -> IndexedReader<I> {
    let config = CacheConfig {
        chunk_size: MIN_CHUNK_SIZE << (param % 3),
        cache_bytes: if seed & 1 == 0 { 0 } else { 64 << 10 },
        max_decoders: (seed >> 1) as usize % 3,
    };
    IndexedReader::with_config(blob, Arc::new(index), config).expect("blob has the index's length")
}

/// A decoded index is an error or re-encodes to its bytes, and reads through it over bytes it
/// was not built from may fail but never panic or hang.
pub fn check_decoded<I: FuzzIndex>(bytes: &[u8], seed: u64) {
    let Some(index) = I::decode(bytes) else {
        return;
    };
    assert_eq!(index.encode(), bytes, "decoded index does not re-encode to its bytes");
    if index.uncompressed_len() > MAX_OUT as u64 * 4 || index.compressed_len() > MAX_OUT as u64 {
        return;
    }
    let mut rng = Rng(seed | 1);
    let blob: Vec<u8> = (0..index.compressed_len()).map(|_| rng.next() as u8).collect();
    let reader = reader(Arc::new(blob), index, seed as u8, seed);
    read_ranges(&reader, None, seed);
}
