//! zstd checkpoints (`imgfs::blob::zstd`, issue 20): the encoder (the index build's sequence
//! tracker, which picks checkpoints and the window bytes they keep) and the decoder (a checkpoint
//! decoded from an index, loaded into libzstd and resumed).
//!
//! Input: byte 0 = mode, byte 1 = parameter (level, spacing), bytes 2..10 = seed; the rest is the
//! payload, which the target grows into 64 KiB..1 MiB of plain data with near and far repeats
//! (so segments copy from before their checkpoint), then compresses as ONE frame.
//! Modes (byte 0 % 3):
//! - 0: every checkpoint resumed and read to the end equals the plain data, and random reads
//!   through `ZstdReader` equal it;
//! - 1: one byte of the encoded index is flipped (trailer re-signed): the index is rejected, or
//!   (when the byte was not covered by a check, which the encoding should make impossible for
//!   checkpoints) every read returns the true bytes or an error;
//! - 2: one field or byte of one checkpoint is changed and its CRC recomputed (a forged or buggy
//!   checkpoint): the index is rejected, or every read returns the true bytes or an error, never
//!   other bytes;
//! - 3: the frame itself is damaged (1-8 flipped bits past its header) before it is indexed: the
//!   sequence follower sees whatever libzstd consumed, including blocks libzstd then rejects; the
//!   build fails, or every read returns the bytes libzstd decoded or an error.

#![no_main]

use imgfs::blob::chunk_cache::{CacheConfig, Decoder, Source, MIN_CHUNK_SIZE};
use imgfs::blob::indexed::StreamIndex;
use imgfs::blob::zstd::{build_index_with, ZstdIndex, ZstdReader};
use imgfs::blob::ReadAt;
#[path = "common.rs"]
#[allow(dead_code)] // signed_index is for the other targets
mod common;

use common::{read_ranges, Rng};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let (mode, param) = (data[0] % 4, data[1]);
    let seed = u64::from_le_bytes(data[2..10].try_into().unwrap());
    let plain = grow(&data[10..], seed);
    let mut comp = compress(&plain, param, seed);
    if mode == 3 {
        if comp.len() <= 16 {
            return;
        }
        let mut rng = Rng(seed | 5);
        for _ in 0..1 + rng.below(8) {
            let at = 16 + rng.below(comp.len() as u64 - 16) as usize;
            comp[at] ^= 1 << rng.below(8);
        }
    }
    let spacing = 16u64 << 10 << (param % 4);
    let mut got = Vec::new();
    let built = build_index_with(&comp[..], Some(spacing), &mut |b: &[u8]| {
        got.extend_from_slice(b);
        Ok(())
    });
    let blob: Arc<dyn ReadAt> = Arc::new(comp);
    if mode == 3 {
        if let Ok(index) = built {
            check(&blob, index, &got, seed, false);
        }
        return;
    }
    let index = built.expect("libzstd's own frame indexes");
    assert!(got == plain, "index build output differs");
    match mode {
        0 => {
            assert_eq!(ZstdIndex::from_bytes(&index.to_bytes()).unwrap(), index);
            check(&blob, index, &plain, seed, true);
        }
        1 => {
            let mut bytes = index.to_bytes();
            let n = bytes.len() - 32;
            let at = Rng(seed | 1).below(n as u64) as usize;
            bytes[at] ^= 1 << (seed >> 60) % 8;
            let sum = Sha256::digest(&bytes[..n]);
            bytes[n..].copy_from_slice(&sum);
            if let Ok(bad) = ZstdIndex::from_bytes(&bytes) {
                check(&blob, bad, &plain, seed, false);
            }
        }
        _ => {
            if index.checkpoints().is_empty() {
                return;
            }
            let mut rng = Rng(seed | 1);
            let mut forged = index.clone();
            let cps = forged.checkpoints_mut();
            let k = rng.below(cps.len() as u64) as usize;
            let c = &mut cps[k];
            let bit = 1u8 << rng.below(8);
            match rng.below(7) {
                0 => {
                    let i = rng.below(c.entropy.len() as u64) as usize;
                    c.entropy[i] ^= bit;
                }
                1 if !c.sparse.is_empty() => {
                    let i = rng.below(c.sparse.len() as u64) as usize;
                    c.sparse.to_mut()[i] ^= bit;
                }
                2 => c.out_off ^= u64::from(bit),
                3 => c.comp_off ^= u64::from(bit),
                4 => c.content_len ^= u64::from(bit),
                5 => c.sparse_len ^= u64::from(bit),
                _ => {
                    if let Some(b) = c.block_crcs.first_mut() {
                        *b ^= u32::from(bit);
                    }
                }
            }
            // to_bytes writes the CRC of the changed fields: only the other checks stand.
            if let Ok(bad) = ZstdIndex::from_bytes(&forged.to_bytes()) {
                check(&blob, bad, &plain, seed, false);
            }
        }
    }
});

/// 64 KiB..1 MiB from `payload`: pieces of it, copies of earlier output (near and far), noise.
fn grow(payload: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let target = 65536 + rng.below(1 << 20) as usize;
    let mut out: Vec<u8> = Vec::with_capacity(target);
    while out.len() < target {
        match rng.below(4) {
            0 if !payload.is_empty() => {
                let a = rng.below(payload.len() as u64) as usize;
                let b = (a + 1 + rng.below(4096) as usize).min(payload.len());
                out.extend_from_slice(&payload[a..b]);
            }
            1 | 2 if out.len() > 64 => {
                let len = 4 + rng.below(5000) as usize;
                let from = rng.below(out.len() as u64) as usize;
                for i in 0..len {
                    let b = out[from + i % (out.len() - from)];
                    out.push(b);
                }
            }
            _ => {
                let n = 1 + rng.below(300) as usize;
                out.extend((0..n).map(|_| rng.next() as u8));
            }
        }
    }
    out.truncate(target);
    out
}

/// One frame, at a level and with options the parameter picks.
fn compress(plain: &[u8], param: u8, seed: u64) -> Vec<u8> {
    let level = [1, 3, 5, 9, 19][(param >> 2) as usize % 5];
    let mut enc = zstd::stream::Encoder::new(Vec::new(), level).unwrap();
    enc.include_checksum(seed & 2 != 0).unwrap();
    if seed & 4 != 0 {
        enc.long_distance_matching(true).unwrap();
        enc.window_log(20 + (seed >> 8) as u32 % 8).unwrap();
    }
    if seed & 8 != 0 {
        enc.set_pledged_src_size(Some(plain.len() as u64)).unwrap();
    }
    let mut piece = 1 + (seed >> 16) as usize % 200_000;
    if seed & 16 != 0 {
        // A flush ends a block: 1-byte pieces make a frame of a million 1-byte blocks, and
        // resuming at every checkpoint of it to the end (~10^7 block decodes) is a libFuzzer
        // timeout, not a finding. 256-byte blocks still exercise tiny blocks.
        piece = piece.max(256);
    }
    for piece in plain.chunks(piece) {
        enc.write_all(piece).unwrap();
        if seed & 16 != 0 {
            enc.flush().unwrap();
        }
    }
    enc.finish().unwrap()
}

/// Resumes at every checkpoint and reads to the end; then random reads. With `strict`, every
/// read must succeed; otherwise a read may fail but never return other bytes.
fn check(blob: &Arc<dyn ReadAt>, index: ZstdIndex, plain: &[u8], seed: u64, strict: bool) {
    let index = Arc::new(index);
    let source = ZstdIndex::source(Arc::clone(blob), Arc::clone(&index));
    let mut buf = vec![0u8; 50_000];
    for c in index.checkpoints() {
        let Ok(mut d) = source.open(c.out_off) else {
            assert!(!strict, "checkpoint at {} does not open", c.out_off);
            continue;
        };
        let mut pos = d.position() as usize;
        loop {
            match d.read(&mut buf) {
                Ok(0) => {
                    assert!(pos == plain.len() || !strict, "stopped at {pos}");
                    break;
                }
                Ok(n) => {
                    assert!(
                        pos + n <= plain.len() && buf[..n] == plain[pos..pos + n],
                        "wrong bytes at {pos}"
                    );
                    pos += n;
                }
                Err(e) => {
                    assert!(!strict, "read at {pos} failed: {e}");
                    break;
                }
            }
        }
    }
    let config = CacheConfig {
        chunk_size: MIN_CHUNK_SIZE,
        cache_bytes: if seed & 1 == 0 { 0 } else { 64 << 10 },
        max_decoders: (seed >> 1) as usize % 3,
    };
    let reader = match ZstdReader::with_config(Arc::clone(blob), index, config) {
        Ok(r) => r,
        Err(e) => {
            assert!(!strict, "{e}");
            return;
        }
    };
    if strict {
        read_ranges(&reader, Some(plain), seed);
    } else {
        // Every successful read must give the true bytes.
        let mut rng = Rng(seed | 3);
        for _ in 0..8 {
            let off = rng.below(plain.len() as u64);
            let n = 1 + rng.below(70_000) as usize;
            let mut b = vec![0u8; n];
            if let Ok(()) = imgfs::blob::read_exact_at(&reader, &mut b, off) {
                let end = off as usize + n;
                assert!(
                    end <= plain.len() && b[..] == plain[off as usize..end],
                    "forged index served other bytes at {off}"
                );
            }
        }
    }
}
