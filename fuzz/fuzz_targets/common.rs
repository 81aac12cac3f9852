//! Pieces the `gzip` and `zstd` targets share (included with `#[path]`; not a target itself).

use imgfs::blob::ReadAt;
use sha2::{Digest, Sha256};

/// xorshift64*: the read ranges, reproducible from the input.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// An index encoding around `body`: `magic`, version 1 and the sha256 trailer added, so that
/// the decoder's field checks are reached.
pub fn signed_index(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(body);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Reads 1..16 pseudo-random ranges of up to 70 000 bytes; with `want`, each must equal the
/// same slice of `want`, and reads past the end must fail.
pub fn read_ranges(r: &dyn ReadAt, want: Option<&[u8]>, seed: u64) {
    let mut rng = Rng(seed | 1);
    let len = r.len();
    for _ in 0..1 + rng.below(16) {
        let off = rng.below(len + 2);
        let n = rng.below(70_000) as usize;
        let mut buf = vec![0u8; n];
        let res = imgfs::blob::read_exact_at(r, &mut buf, off);
        let Some(want) = want else { continue };
        let end = off.saturating_add(n as u64);
        if end <= len {
            res.unwrap_or_else(|e| panic!("read {off}+{n} of {len} failed: {e}"));
            assert!(buf[..] == want[off as usize..end as usize], "read {off}+{n} differs");
        } else {
            assert!(res.is_err(), "read {off}+{n} past the end ({len}) succeeded");
        }
    }
}
