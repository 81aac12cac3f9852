//! gzip access points (`imgfs::blob::gzip`): the index builder, the random-access reader and the
//! index decoder.
//!
//! Input: byte 0 = mode, byte 1 = spacing/chunking parameter, bytes 2..10 = seed of the read
//! ranges; the rest is the payload. Modes (byte 0 % 4):
//! - 0: the payload is taken as a gzip stream as it is (hostile bytes);
//! - 1: the payload is plain data that the target compresses with flate2 into 1..4 members, with
//!   sync/full flushes at payload-chosen places, so the reader is exercised on valid streams with
//!   many blocks and members (and zero padding after the last member, sometimes);
//! - 2: the payload is an encoded index (`GzipIndex::from_bytes`), as it is;
//! - 3: the payload is the body of an encoded index: the target adds magic and version and the
//!   sha256 trailer so decoding gets past the checksum; a decoded index then serves reads over
//!   bytes it was not built from.
//!
//! Invariants: building gives an error or an index (never a panic, hang or unbounded allocation);
//! an index's sizes match the stream; its encoding round-trips; when flate2's `MultiGzDecoder`
//! decodes the stream fully, our builder accepts it and reading 1..16 pseudo-random ranges
//! through `GzipReader` equals the same slice of flate2's output. A decoded index is either an
//! error or round-trips, and reads through it never panic.

#![no_main]

use flate2::write::GzEncoder;
use flate2::Compression;
use imgfs::blob::gzip::{build_index, GzipIndex};
#[path = "codec.rs"]
mod codec;
#[path = "common.rs"]
mod common;

use codec::{build, check_built, dispatch, MAX_OUT};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

fuzz_target!(|data: &[u8]| {
    dispatch::<GzipIndex>(data, |plain, param, _| compress(plain, param), check_stream);
});

/// Compresses `plain` into gzip members with flushes placed by the bytes of `plain` itself.
fn compress(plain: &[u8], param: u8) -> Vec<u8> {
    let members = 1 + (param as usize >> 6);
    let level = Compression::new(u32::from(param % 10));
    let per = plain.len() / members + 1;
    let mut out = Vec::new();
    for part in plain.chunks(per.max(1)).take(members) {
        let mut enc = GzEncoder::new(Vec::new(), level);
        // A flush after every 251 bytes whose first byte is odd: blocks of varied sizes.
        for piece in part.chunks(251) {
            enc.write_all(piece).unwrap();
            if piece[0] & 1 == 1 {
                enc.flush().unwrap(); // sync flush: an empty stored block ends the deflate block
            }
        }
        out.extend_from_slice(&enc.finish().unwrap());
    }
    if plain.is_empty() {
        out = GzEncoder::new(Vec::new(), level).finish().unwrap();
    }
    if param & 0x20 != 0 {
        out.extend_from_slice(&[0; 7]); // padding some tools add after the last member
    }
    out
}

/// flate2's reading of the stream, if it decodes fully within `MAX_OUT` bytes. flate2 refuses
/// the zero padding imgfs accepts after the last member, so on failure the stream is tried again
/// without its trailing zeros (plus up to 8 of them back: a trailer may end in zero bytes).
fn reference(stream: &[u8]) -> Option<Vec<u8>> {
    let decode = |s: &[u8]| {
        let mut out = Vec::new();
        let mut d = flate2::read::MultiGzDecoder::new(s).take(MAX_OUT as u64 + 1);
        d.read_to_end(&mut out).ok()?;
        (out.len() <= MAX_OUT).then_some(out)
    };
    if let Some(out) = decode(stream) {
        return Some(out);
    }
    let end = stream.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (end..stream.len().min(end + 9)).find_map(|e| decode(&stream[..e]))
}

fn check_stream(stream: &[u8], param: u8, seed: u64) {
    let spacing = 1 + (u64::from(param) << 6);
    let want = reference(stream);
    let Some((index, got)) = build(want.as_deref(), |sink| build_index(stream, spacing, sink)) else {
        return;
    };
    assert!(index.compressed_len() <= stream.len() as u64);
    let blob = &stream[..index.compressed_len() as usize];
    assert_eq!(index.compressed_sha256(), <[u8; 32]>::from(Sha256::digest(blob)));
    let points = index.points();
    assert!(points.first().is_some_and(|p| p.out == 0 && p.member_start));
    assert!(points.windows(2).all(|w| w[0].out < w[1].out && w[0].inp <= w[1].inp));
    check_built(index, blob, &got, want.as_deref(), param, seed);
}
