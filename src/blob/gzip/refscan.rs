//! Finds which bytes of a point's window the following DEFLATE data actually references.
//!
//! Only output within [`WINDOW_SIZE`] bytes after a point can reach back into its window, and
//! typically it references a fraction of it. Bytes nobody references can be stored as zeros
//! (which compress to almost nothing) and the window can start at the first referenced byte.
//! This module decodes just the DEFLATE code structure (Huffman codes, lengths, distances)
//! without producing output. Its result is an optimisation only: the builder checks every
//! sparse window by inflating with it and comparing, and falls back to the full window.

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
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
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
