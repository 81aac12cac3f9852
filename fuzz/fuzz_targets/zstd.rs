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

use imgfs::blob::zstd::{build_index, ZstdIndex};
#[path = "codec.rs"]
mod codec;
#[path = "common.rs"]
mod common;

use codec::{build, check_built, dispatch, MAX_OUT};
use common::Rng;
use libfuzzer_sys::fuzz_target;

use std::io::{Read, Write};

fuzz_target!(|data: &[u8]| {
    dispatch::<ZstdIndex>(data, compress, check_stream);
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
    let want = reference(stream).filter(|_| !stream.is_empty());
    let Some((index, got)) = build(want.as_deref(), |sink| build_index(stream, sink)) else {
        return;
    };
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
    check_built(index, stream, &got, want.as_deref(), param, seed);
}
