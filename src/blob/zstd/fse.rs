//! The FSE pieces of the zstd format (RFC 8878, section 4.1) that checkpoints need: reading a
//! table description (to know its length and decode sequences with it), building the decoding
//! table, and writing a description (to turn a predefined table into an explicit one that a
//! dictionary can carry).
//!
//! Written from the RFC; the reading side follows libzstd's `FSE_readNCount` wherever the RFC
//! leaves room (it is what decodes the frame during indexing, so both must agree on every
//! stream libzstd accepts). Errors are `&'static str`: the caller only needs to know that this
//! frame gets no checkpoints.

/// Smallest accuracy log a description can carry.
const MIN_LOG: u32 = 5;

/// One state of a decoding table.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct Cell {
    /// The symbol this state decodes to.
    pub symbol: u8,
    /// Bits read to reach the next state.
    pub bits: u8,
    /// Added to those bits to give the next state.
    pub base: u16,
}

/// A decoding table: `1 << log` cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Table {
    pub log: u32,
    pub cells: Vec<Cell>,
}

impl Table {
    /// The table of an RLE mode: one state, always `symbol`, reading no bits.
    pub(super) fn rle(symbol: u8) -> Table {
        Table {
            log: 0,
            cells: vec![Cell {
                symbol,
                bits: 0,
                base: 0,
            }],
        }
    }

    /// Builds the decoding table of a normalized distribution (RFC 8878 4.1.1).
    pub(super) fn build(norm: &[i16], log: u32) -> Result<Table, &'static str> {
        if !(MIN_LOG..=15).contains(&log) || norm.len() > 256 {
            return Err("bad FSE table");
        }
        let size = 1usize << log;
        let sum: usize = norm.iter().map(|&c| c.unsigned_abs() as usize).sum();
        if sum != size || norm.iter().any(|&c| c < -1) {
            return Err("FSE distribution does not fill its table");
        }
        let mut cells = vec![Cell::default(); size];
        let mut next = vec![0u32; norm.len()];
        let mut high = size as isize - 1;
        for (s, &c) in norm.iter().enumerate() {
            if c == -1 {
                cells[high as usize].symbol = s as u8;
                high -= 1;
                next[s] = 1;
            } else {
                next[s] = c as u32;
            }
        }
        let step = (size >> 1) + (size >> 3) + 3;
        let mask = size - 1;
        let mut pos = 0usize;
        if high >= 0 {
            for (s, &c) in norm.iter().enumerate() {
                for _ in 0..c.max(0) {
                    cells[pos].symbol = s as u8;
                    pos = (pos + step) & mask;
                    while pos as isize > high {
                        pos = (pos + step) & mask;
                    }
                }
            }
        }
        for cell in cells.iter_mut() {
            let s = cell.symbol as usize;
            let state = next[s];
            next[s] += 1;
            let bits = log - (31 - state.leading_zeros());
            cell.bits = bits as u8;
            cell.base = ((state << bits) as usize - size) as u16;
        }
        Ok(Table { log, cells })
    }
}

/// A normalized distribution read from a description: counts (-1 = "less than one"), accuracy
/// log, and how many bytes the description took.
pub(super) struct Description {
    pub norm: Vec<i16>,
    pub log: u32,
    pub len: usize,
}

/// Little-endian bit reader over a byte slice; reads past the end see zeros (the caller
/// checks the final length against the slice).
struct Bits<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn peek(&self, n: u32) -> u32 {
        let byte = self.pos / 8;
        let mut v = 0u64;
        for i in 0..5 {
            v |= u64::from(self.src.get(byte + i).copied().unwrap_or(0)) << (8 * i);
        }
        ((v >> (self.pos % 8)) & ((1u64 << n) - 1)) as u32
    }
}

/// Reads an FSE table description of symbols `0..=max_symbol` with accuracy log at most
/// `max_log`.
pub(super) fn read_description(src: &[u8], max_symbol: usize, max_log: u32) -> Result<Description, &'static str> {
    let first = *src.first().ok_or("empty FSE description")?;
    let log = u32::from(first & 15) + MIN_LOG;
    if log > max_log {
        return Err("FSE accuracy log too large");
    }
    let mut bits = Bits { src, pos: 4 };
    let mut remaining: i32 = (1 << log) + 1;
    let mut threshold: i32 = 1 << log;
    let mut nb_bits = log + 1;
    let mut norm = vec![0i16; max_symbol + 1];
    let mut symbol = 0usize;
    let mut previous_zero = false;
    loop {
        if previous_zero {
            loop {
                let repeat = bits.peek(2) as usize;
                bits.pos += 2;
                symbol += repeat;
                if symbol > max_symbol {
                    return Err("FSE description has too many zeros");
                }
                if repeat != 3 {
                    break;
                }
            }
        }
        let max = (2 * threshold - 1) - remaining;
        let low = bits.peek(nb_bits - 1) as i32;
        let mut count = if low < max {
            bits.pos += nb_bits as usize - 1;
            low
        } else {
            let c = bits.peek(nb_bits) as i32;
            bits.pos += nb_bits as usize;
            if c >= threshold {
                c - max
            } else {
                c
            }
        };
        count -= 1;
        remaining -= count.abs();
        norm[symbol] = count as i16;
        symbol += 1;
        previous_zero = count == 0;
        if remaining < threshold {
            if remaining <= 1 {
                break;
            }
            nb_bits = 32 - (remaining as u32).leading_zeros();
            threshold = 1 << (nb_bits - 1);
        }
        if symbol > max_symbol {
            break;
        }
    }
    if remaining != 1 {
        return Err("FSE description does not add up");
    }
    let len = bits.pos.div_ceil(8);
    if len > src.len() {
        return Err("truncated FSE description");
    }
    norm.truncate(symbol);
    Ok(Description { norm, log, len })
}

/// Writes the description of a normalized distribution (the inverse of
/// [`read_description`]).
pub(super) fn write_description(norm: &[i16], log: u32) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.put(u64::from(log - MIN_LOG), 4);
    let mut remaining: i32 = (1 << log) + 1;
    let mut threshold: i32 = 1 << log;
    let mut nb_bits = log + 1;
    let mut symbol = 0usize;
    let mut previous_zero = false;
    while symbol < norm.len() && remaining > 1 {
        if previous_zero {
            let start = symbol;
            while symbol < norm.len() && norm[symbol] == 0 {
                symbol += 1;
            }
            let mut zeros = symbol - start;
            while zeros >= 3 {
                w.put(3, 2);
                zeros -= 3;
            }
            w.put(zeros as u64, 2);
            if symbol == norm.len() {
                break;
            }
        }
        let c = i32::from(norm[symbol]);
        symbol += 1;
        let max = (2 * threshold - 1) - remaining;
        remaining -= c.abs();
        let mut v = c + 1;
        if v >= threshold {
            v += max;
        }
        w.put(v as u64, if v < max { nb_bits - 1 } else { nb_bits });
        previous_zero = v == 1;
        while remaining < threshold && threshold > 1 {
            nb_bits -= 1;
            threshold >>= 1;
        }
    }
    w.finish()
}

/// Little-endian bit writer.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, v: u64, n: u32) {
        self.acc |= v << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip() {
        let cases: Vec<(Vec<i16>, u32)> = vec![
            (super::super::seq::LL_DEFAULT.to_vec(), 6),
            (super::super::seq::ML_DEFAULT.to_vec(), 6),
            (super::super::seq::OF_DEFAULT.to_vec(), 5),
            (vec![32], 5),
            (vec![0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 16], 5),
            (vec![-1, 0, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1], 5),
            (vec![200, 50, -1, -1, 2, 0, 0, 1, 0, 0, 0, 0, 0, 1], 8),
        ];
        for (norm, log) in cases {
            let bytes = write_description(&norm, log);
            let d = read_description(&bytes, 52, 9).unwrap();
            assert_eq!((d.norm.as_slice(), d.log, d.len), (norm.as_slice(), log, bytes.len()));
            let t = Table::build(&norm, log).unwrap();
            assert_eq!(t.cells.len(), 1 << log);
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            if let Ok(d) = read_description(&bytes[..(x % 9) as usize], 35, 9) {
                assert!(Table::build(&d.norm, d.log).is_ok());
            }
        }
    }
}
