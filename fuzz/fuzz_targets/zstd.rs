//! zstd frame table (`imgfs::blob::zstd`): the index builder, the random-access reader and the
//! index decoder.
//!
//! Input: byte 0 = mode, byte 1 = frame/chunking parameter, bytes 2..10 = seed of the read
//! ranges; the rest is the payload. Modes (byte 0 % 4):
//! - 0: the payload is taken as a zstd stream as it is (hostile bytes);
//! - 1: the payload is plain data that the target compresses into 1..8 frames (some with a
//!   content checksum, some without a content size), with skippable frames between some of them,
//!   so the reader is exercised on valid multi-frame streams;
//! - 2: the payload is an encoded index (`ZstdIndex::from_bytes`), as it is;
//! - 3: the payload is the body of an encoded index; the target adds magic, version and the
//!   sha256 trailer so decoding gets past the checksum; a decoded index then serves reads over
//!   bytes it was not built from.
//!
//! Invariants: building gives an error or an index; the frame table covers the output exactly,
//! in order, inside the stream; the encoding round-trips; when `zstd::decode_all` decodes the
//! (non-empty) stream, our builder accepts it with the same output, and reading 1..16
//! pseudo-random ranges through `ZstdReader` equals the same slices. A decoded index is an error
//! or round-trips, and reads through it never panic.

#![no_main]

use imgfs::blob::chunk_cache::{CacheConfig, MIN_CHUNK_SIZE};
use imgfs::blob::zstd::{build_index, ZstdIndex, ZstdReader};
use imgfs::blob::ReadAt;
#[path = "common.rs"]
mod common;

use common::{read_ranges, signed_index, Rng};
use libfuzzer_sys::fuzz_target;

use std::io::{self, Read, Write};
use std::sync::Arc;

/// Decompressed bytes the target looks at, at most: a small input may decode to gigabytes.
const MAX_OUT: usize = 8 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let (mode, param) = (data[0] % 4, data[1]);
    let seed = u64::from_le_bytes(data[2..10].try_into().unwrap());
    let payload = &data[10..];
    match mode {
        0 => check_stream(payload, param, seed),
        1 => check_stream(&compress(payload, param, seed), param, seed),
        2 => check_decoded(payload, seed),
        _ => check_decoded(&signed_index(b"IMGFSZSI", payload), seed),
    }
});

/// Compresses `plain` into several frames, with skippable frames chosen by `seed`.
fn compress(plain: &[u8], param: u8, seed: u64) -> Vec<u8> {
    let frames = 1 + (param as usize >> 5);
    let per = plain.len() / frames + 1;
    let mut out = Vec::new();
    let mut rng = Rng(seed | 1);
    let parts: Vec<&[u8]> = if plain.is_empty() {
        vec![&[][..]]
    } else {
        plain.chunks(per).collect()
    };
    for part in parts {
        let bits = rng.next();
        if bits & 3 == 0 {
            let payload_len = (bits >> 8) as u32 % 40;
            out.extend_from_slice(&(0x184D_2A50u32 | (bits >> 4) as u32 & 0xf).to_le_bytes());
            out.extend_from_slice(&payload_len.to_le_bytes());
            out.extend(std::iter::repeat_n(0xab, payload_len as usize));
        }
        let level = 1 + (bits >> 16) as i32 % 5;
        let mut enc = zstd::stream::Encoder::new(Vec::new(), level).unwrap();
        enc.include_checksum(bits & 4 != 0).unwrap();
        if bits & 8 != 0 {
            enc.set_pledged_src_size(Some(part.len() as u64)).unwrap();
        }
        // Flushes end blocks early: frames with many small blocks.
        for piece in part.chunks(1 + (bits >> 24) as usize % 3000) {
            enc.write_all(piece).unwrap();
            if bits & 16 != 0 {
                enc.flush().unwrap();
            }
        }
        out.extend_from_slice(&enc.finish().unwrap());
    }
    out
}

/// zstd's own reading of the stream, if it decodes fully within `MAX_OUT` bytes.
fn reference(stream: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut d = zstd::stream::Decoder::new(stream).ok()?.take(MAX_OUT as u64 + 1);
    d.read_to_end(&mut out).ok()?;
    (out.len() <= MAX_OUT).then_some(out)
}

fn check_stream(stream: &[u8], param: u8, seed: u64) {
    let mut got = Vec::new();
    let mut sink = |b: &[u8]| {
        if got.len() + b.len() > MAX_OUT {
            return Err(io::Error::other("fuzz target output limit"));
        }
        got.extend_from_slice(b);
        Ok(())
    };
    let built = build_index(stream, &mut sink);
    let want = reference(stream).filter(|_| !stream.is_empty());
    let index = match built {
        Ok(index) => index,
        Err(e) => {
            let limited = e.to_string().contains("fuzz target output limit");
            assert!(
                want.is_none() || limited,
                "zstd decodes {} bytes but the index builder fails: {e}",
                want.as_ref().map_or(0, |w| w.len())
            );
            return;
        }
    };
    assert_eq!(index.uncompressed_len(), got.len() as u64, "index size vs sink output");
    assert_eq!(
        index.compressed_len(),
        stream.len() as u64,
        "the whole stream is frames"
    );
    let mut out_end = 0;
    let mut comp_end = 0;
    for f in index.frames() {
        assert!(f.comp_off >= comp_end && f.out_off == out_end && f.out_len > 0, "{f:?}");
        comp_end = f.comp_off + f.comp_len;
        out_end = f.out_off + f.out_len;
    }
    assert!(comp_end <= stream.len() as u64 && out_end == index.uncompressed_len());
    let again = ZstdIndex::from_bytes(&index.to_bytes()).expect("an index's own encoding decodes");
    assert_eq!(again, index);
    if let Some(want) = &want {
        assert!(
            got == *want,
            "builder output differs from zstd ({} vs {} bytes)",
            got.len(),
            want.len()
        );
    }
    let blob: Arc<dyn ReadAt> = Arc::new(stream.to_vec());
    let reader = reader(blob, index, param, seed);
    read_ranges(&reader, Some(&got), seed);
}

fn reader(blob: Arc<dyn ReadAt>, index: ZstdIndex, param: u8, seed: u64) -> ZstdReader {
    let config = CacheConfig {
        chunk_size: MIN_CHUNK_SIZE << (param % 3),
        cache_bytes: if seed & 1 == 0 { 0 } else { 64 << 10 },
        max_decoders: (seed >> 1) as usize % 3,
    };
    ZstdReader::with_config(blob, Arc::new(index), config).expect("blob has the index's length")
}

fn check_decoded(bytes: &[u8], seed: u64) {
    let Ok(index) = ZstdIndex::from_bytes(bytes) else {
        return;
    };
    assert_eq!(index.to_bytes(), bytes, "decoded index does not re-encode to its bytes");
    if index.uncompressed_len() > MAX_OUT as u64 * 4 || index.compressed_len() > MAX_OUT as u64 {
        return;
    }
    // A reader over bytes the index was not built from: errors are fine, panics and hangs not.
    let mut rng = Rng(seed | 1);
    let blob: Vec<u8> = (0..index.compressed_len()).map(|_| rng.next() as u8).collect();
    let reader = reader(Arc::new(blob), index, seed as u8, seed);
    read_ranges(&reader, None, seed);
}
