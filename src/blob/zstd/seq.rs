//! The parts of a zstd frame that decide what a decoder needs at a block boundary (RFC 8878,
//! sections 3.1.1.1 to 3.1.1.5): frame and block headers, the literals section's size and
//! Huffman tree description, and the sequences, decoded down to (literal length, offset, match
//! length) with the repeat-offset rules. Literal bytes are never decoded: libzstd does the real
//! decoding alongside; this only follows the entropy tables, the three repeat offsets and which
//! earlier bytes each match copies.
//!
//! Any error here only means "no checkpoints for this frame": libzstd decides whether the frame
//! is valid.

use super::fse::{self, Table};

/// Largest block content (and largest block output), RFC 8878 3.1.1.2.3.
pub(super) const MAX_BLOCK: usize = 128 << 10;

/// Predefined literal-length distribution (accuracy log 6).
pub(super) const LL_DEFAULT: [i16; 36] = [
    4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1, -1, -1, -1, -1,
];
/// Predefined match-length distribution (accuracy log 6).
pub(super) const ML_DEFAULT: [i16; 53] = [
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
];
/// Predefined offset-code distribution (accuracy log 5).
pub(super) const OF_DEFAULT: [i16; 29] = [
    1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1,
];

const LL_BASE: [u32; 36] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024,
    2048, 4096, 8192, 16384, 32768, 65536,
];
const LL_BITS: [u8; 36] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];
const ML_BASE: [u32; 53] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    33, 34, 35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027, 2051, 4099, 8195, 16387, 32771, 65539,
];
const ML_BITS: [u8; 53] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2,
    3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];

/// Magic number of a zstd dictionary (RFC 8878 section 5).
pub(super) const DICT_MAGIC: u32 = 0xEC30_A437;
/// The dictionary ID written into checkpoint dictionaries (any non-zero value: the block API
/// never compares it with a frame's).
const DICT_ID: u32 = 0x4947_4d49;
/// A valid Huffman tree description for a checkpoint taken before any literals were
/// Huffman-coded (a later Treeless block would be invalid, so it is never used): one explicit
/// weight of 1, the implied last weight 1 (two symbols of one bit).
const HUF_PLACEHOLDER: [u8; 2] = [128, 0x10];

/// What a frame header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrameHeader {
    /// Header length, magic included.
    pub len: usize,
    /// Window size: how far back a match may reach.
    pub window: u64,
    /// A 4-byte content checksum follows the last block.
    pub checksum: bool,
    /// Dictionary ID (0: none).
    pub dict_id: u32,
    /// Decompressed size, when the header gives it.
    pub content_size: Option<u64>,
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |v, &x| (v << 8) | u64::from(x))
}

/// Parses a frame header at the start of `b` (magic included); `Ok(None)` when more bytes are
/// needed.
pub(super) fn frame_header(b: &[u8]) -> Result<Option<FrameHeader>, &'static str> {
    if b.len() < 5 {
        return Ok(None);
    }
    if le(&b[..4]) != u64::from(super::ZSTD_MAGIC) {
        return Err("not a zstd frame");
    }
    let fhd = b[4];
    let single = fhd & 0x20 != 0;
    if fhd & 0x08 != 0 {
        return Err("reserved frame header bit set");
    }
    let did_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let len = 5 + usize::from(!single) + did_len + fcs_len;
    if b.len() < len {
        return Ok(None);
    }
    let mut at = 5;
    let mut window = 0;
    if !single {
        let wd = b[at];
        at += 1;
        let log = 10 + u32::from(wd >> 3);
        if log > 41 {
            return Err("window too large");
        }
        let base = 1u64 << log;
        window = base + (base / 8) * u64::from(wd & 7);
    }
    let dict_id = le(&b[at..at + did_len]) as u32;
    at += did_len;
    let content_size = match fcs_len {
        0 => None,
        2 => Some(le(&b[at..at + 2]) + 256),
        n => Some(le(&b[at..at + n])),
    };
    if single {
        window = content_size.unwrap_or(0);
    }
    Ok(Some(FrameHeader {
        len,
        window,
        checksum: fhd & 0x04 != 0,
        dict_id,
        content_size,
    }))
}

/// Kind of a block (RFC 8878 3.1.1.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BlockKind {
    Raw,
    Rle,
    Compressed,
}

/// A block header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BlockHeader {
    pub last: bool,
    pub kind: BlockKind,
    /// Block_Size: the content length for raw and compressed blocks, the output length for RLE.
    pub size: usize,
}

impl BlockHeader {
    /// Bytes of content after the 3-byte header.
    pub(super) fn content_len(&self) -> usize {
        match self.kind {
            BlockKind::Rle => 1,
            _ => self.size,
        }
    }
}

/// Parses a 3-byte block header.
pub(super) fn block_header(b: [u8; 3]) -> Result<BlockHeader, &'static str> {
    let v = le(&b) as u32;
    let kind = match (v >> 1) & 3 {
        0 => BlockKind::Raw,
        1 => BlockKind::Rle,
        2 => BlockKind::Compressed,
        _ => return Err("reserved block type"),
    };
    let size = (v >> 3) as usize;
    if size > MAX_BLOCK {
        return Err("block larger than 128 KiB");
    }
    Ok(BlockHeader {
        last: v & 1 != 0,
        kind,
        size,
    })
}

/// How one of the three sequence tables was last set.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// Never set in this frame.
    Undefined,
    Predefined,
    /// RLE: not expressible in a dictionary (its table reads 0 bits per state, a described
    /// table at least 5), so no checkpoint is taken while a table is in this mode.
    Rle,
    /// Set by this description (bytes as they appear in the block).
    Described(Vec<u8>),
}

/// A state of a sequence table with the value of its symbol (libzstd's layout): decoding a
/// field is one lookup and one read, with no per-symbol tables and checks in the loop.
#[derive(Clone, Copy, Debug, Default)]
struct SeqCell {
    /// Base of the next state (plus `bits` bits read).
    next: u16,
    bits: u8,
    /// Extra bits of the value, read after the state's.
    extra: u8,
    /// The value without its extra bits.
    value: u32,
}

/// A sequence table ready for decoding: `1 << log` cells.
#[derive(Clone, Debug)]
struct SeqCells {
    log: u32,
    cells: Vec<SeqCell>,
}

/// Baseline and extra bits of a symbol of one field (RFC 8878 3.1.1.3.2.1.1); `None` when the
/// symbol has no meaning there.
type SymbolValue = fn(u8) -> Option<(u32, u8)>;

fn ll_value(s: u8) -> Option<(u32, u8)> {
    Some((*LL_BASE.get(usize::from(s))?, *LL_BITS.get(usize::from(s))?))
}

fn ml_value(s: u8) -> Option<(u32, u8)> {
    Some((*ML_BASE.get(usize::from(s))?, *ML_BITS.get(usize::from(s))?))
}

/// Offset codes: the value is `1 << code` plus `code` bits (the repeat-offset rules apply to
/// values 1 to 3).
fn of_value(s: u8) -> Option<(u32, u8)> {
    (s <= 31).then(|| (1u32 << s, s))
}

impl SeqCells {
    fn new(t: &Table, value: SymbolValue) -> Result<Self, &'static str> {
        let cells = t
            .cells
            .iter()
            .map(|c| {
                let (v, extra) = value(c.symbol).ok_or("sequence symbol out of range")?;
                Ok(SeqCell {
                    next: c.base,
                    bits: c.bits,
                    extra,
                    value: v,
                })
            })
            .collect::<Result<Vec<_>, &'static str>>()?;
        Ok(Self { log: t.log, cells })
    }
}

/// One of the three sequence tables: how it was set and its decoding table.
struct SeqTable {
    mode: Mode,
    table: SeqCells,
    /// The predefined table, built once.
    predefined: SeqCells,
    value: SymbolValue,
    default: &'static [i16],
    default_log: u32,
    max_symbol: usize,
    max_log: u32,
}

impl SeqTable {
    fn new(default: &'static [i16], default_log: u32, max_symbol: usize, max_log: u32, value: SymbolValue) -> Self {
        let rle = SeqCells {
            log: 0,
            cells: vec![SeqCell::default()],
        };
        // The predefined distributions are valid constants (tested).
        let predefined = Table::build(default, default_log)
            .and_then(|t| SeqCells::new(&t, value))
            .unwrap_or_else(|_| rle.clone());
        Self {
            mode: Mode::Undefined,
            table: rle,
            predefined,
            value,
            default,
            default_log,
            max_symbol,
            max_log,
        }
    }

    /// Applies the block's mode for this table; returns the bytes its description took.
    fn set(&mut self, mode: u8, src: &[u8]) -> Result<usize, &'static str> {
        match mode {
            0 => {
                self.table = self.predefined.clone();
                self.mode = Mode::Predefined;
                Ok(0)
            }
            1 => {
                let s = *src.first().ok_or("truncated RLE table")?;
                if usize::from(s) > self.max_symbol {
                    return Err("RLE symbol out of range");
                }
                self.table = SeqCells::new(&Table::rle(s), self.value)?;
                self.mode = Mode::Rle;
                Ok(1)
            }
            2 => {
                let d = fse::read_description(src, self.max_symbol, self.max_log)?;
                self.table = SeqCells::new(&Table::build(&d.norm, d.log)?, self.value)?;
                self.mode = Mode::Described(src[..d.len].to_vec());
                Ok(d.len)
            }
            _ => match self.mode {
                Mode::Undefined => Err("repeat mode without a previous table"),
                _ => Ok(0),
            },
        }
    }

    /// The description a dictionary carries for this table; `None` for RLE.
    fn description(&self) -> Option<Vec<u8>> {
        match &self.mode {
            // Never used before being set again (a Repeat would have been an error): any valid
            // table will do.
            Mode::Undefined | Mode::Predefined => Some(fse::write_description(self.default, self.default_log)),
            Mode::Rle => None,
            Mode::Described(d) => Some(d.clone()),
        }
    }
}

/// Zero bytes in front of a bitstream (see [`RevBits`]).
const PAD: usize = 16;
/// Most bits [`RevBits::get`] may take in all after a [`RevBits::refill`]; a sequence reads
/// its offset (<= 31 bits) and match length (<= 16) after one, its literal length (<= 16) and
/// the three state updates (<= 9 + 9 + 8) after another.
const REFILL_BITS: u32 = 56;
const _: () = assert!(31 + 16 <= REFILL_BITS && 16 + 9 + 9 + 8 <= REFILL_BITS);

/// Reads a sequence bitstream backwards (RFC 8878 4.1: the last byte holds a 1 marking the
/// start, everything is read from the end towards the beginning).
///
/// Bits come from a 64-bit container loaded once per [`Self::refill`] (at least 56 unread bits
/// in it), not from memory per field: following the sequences of the index pass took more CPU
/// than libzstd's whole decoding when each field was read with its own bounds-checked load.
/// Positions are those of the stream with [`PAD`] zero bytes in front, so a refill near the
/// start never reads outside it: a stream that asks for more bits than it has reads zeros
/// there, and [`Self::overrun`] tells (checked once per sequence, which reads at most 89 bits).
struct RevBits<'a> {
    src: &'a [u8],
    /// The padding, then the stream's first 8 bytes (zero-filled when shorter).
    head: [u8; PAD + 8],
    /// Unread bits, padding included.
    left: usize,
    container: u64,
    /// Position of the container's bit 0.
    base: usize,
}

impl<'a> RevBits<'a> {
    fn new(src: &'a [u8]) -> Result<Self, &'static str> {
        let last = *src.last().ok_or("empty sequence bitstream")?;
        if last == 0 {
            return Err("sequence bitstream has no end mark");
        }
        let mut head = [0u8; PAD + 8];
        let n = src.len().min(8);
        head[PAD..PAD + n].copy_from_slice(&src[..n]);
        let left = PAD * 8 + src.len() * 8 - 8 + (7 - last.leading_zeros() as usize);
        let mut r = Self {
            src,
            head,
            left,
            container: 0,
            base: 0,
        };
        r.refill();
        Ok(r)
    }

    /// Loads the 8 bytes that end with the next unread bit's byte.
    #[inline(always)]
    fn refill(&mut self) {
        // Between overrun checks `left` >= 128 - 89; below 64 the load stays at the start of
        // the padding.
        let end = self.left.div_ceil(8).max(8);
        let bytes: [u8; 8] = if end >= PAD + 8 {
            let r = end - PAD;
            // `r` <= the stream's length: reads only go back from its end.
            self.src.get(r - 8..r).and_then(|b| b.try_into().ok()).unwrap_or([0; 8])
        } else {
            self.head
                .get(end - 8..end)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 8])
        };
        self.container = u64::from_le_bytes(bytes);
        self.base = (end - 8) * 8;
    }

    /// The next `n` bits (`n` <= 56 in all since the last refill).
    #[inline(always)]
    fn get(&mut self, n: u32) -> u64 {
        self.left -= n as usize;
        // At most 64 (n = 0 then, and the mask is 0).
        let shift = (self.left - self.base) as u32;
        self.container.wrapping_shr(shift) & ((1u64 << n) - 1)
    }

    /// More bits were read than the stream has.
    #[inline(always)]
    fn overrun(&self) -> bool {
        self.left < PAD * 8
    }

    /// Every bit was read.
    fn exhausted(&self) -> bool {
        self.left == PAD * 8
    }
}

/// The decoding state a zstd decoder carries from block to block, as far as checkpoints need
/// it: the literals' Huffman tree, the three sequence tables and the repeat offsets.
pub(super) struct SeqState {
    /// The last Huffman tree description (bytes as in the block), if any.
    huf: Option<Vec<u8>>,
    ll: SeqTable,
    of: SeqTable,
    ml: SeqTable,
    reps: [u64; 3],
}

impl Default for SeqState {
    fn default() -> Self {
        Self {
            huf: None,
            ll: SeqTable::new(&LL_DEFAULT, 6, 35, 9, ll_value),
            of: SeqTable::new(&OF_DEFAULT, 5, 31, 8, of_value),
            ml: SeqTable::new(&ML_DEFAULT, 6, 52, 9, ml_value),
            reps: [1, 4, 8],
        }
    }
}

impl SeqState {
    /// Follows one compressed block (its content, without the 3-byte header) that starts at
    /// output position `p`. `on_match(pos, offset, len)` is called for every match (it copies
    /// `len` bytes from `pos - offset` to `pos`). Returns the block's output length.
    pub(super) fn block(
        &mut self,
        content: &[u8],
        mut p: u64,
        on_match: &mut impl FnMut(u64, u64, u64),
    ) -> Result<usize, &'static str> {
        let (lit_size, lit_len) = self.literals(content)?;
        let rest = &content[lit_len..];
        let b0 = *rest.first().ok_or("missing sequences section")?;
        let (nb_seq, hdr) = match b0 {
            0 => {
                return match rest.len() {
                    1 => Ok(lit_size),
                    _ => Err("bytes after an empty sequences section"),
                }
            }
            1..=127 => (usize::from(b0), 1),
            128..=254 => {
                let b1 = *rest.get(1).ok_or("truncated sequences header")?;
                ((usize::from(b0 - 128) << 8) + usize::from(b1), 2)
            }
            255 => {
                let b = rest.get(1..3).ok_or("truncated sequences header")?;
                (le(b) as usize + 0x7F00, 3)
            }
        };
        let modes = *rest.get(hdr).ok_or("missing compression modes")?;
        if modes & 3 != 0 {
            return Err("reserved bits in compression modes");
        }
        let mut at = hdr + 1;
        at += self.ll.set(modes >> 6, &rest[at..])?;
        at += self.of.set((modes >> 4) & 3, &rest[at..])?;
        at += self.ml.set((modes >> 2) & 3, &rest[at..])?;
        let mut bits = RevBits::new(&rest[at..])?;
        let (ll_t, of_t, ml_t) = (&self.ll.table, &self.of.table, &self.ml.table);
        // Table logs are at most 9, 8 and 9 bits.
        let mut ll_state = bits.get(ll_t.log) as usize;
        let mut of_state = bits.get(of_t.log) as usize;
        let mut ml_state = bits.get(ml_t.log) as usize;
        if bits.overrun() {
            return Err("sequence bitstream overrun");
        }
        let mut lits_used: usize = 0;
        let mut out: usize = 0;
        let reps = &mut self.reps;
        for i in 0..nb_seq {
            let ll_cell = *ll_t.cells.get(ll_state).ok_or("FSE state out of range")?;
            let of_cell = *of_t.cells.get(of_state).ok_or("FSE state out of range")?;
            let ml_cell = *ml_t.cells.get(ml_state).ok_or("FSE state out of range")?;
            // Two refills per sequence (REFILL_BITS).
            bits.refill();
            let of_value = u64::from(of_cell.value) + bits.get(u32::from(of_cell.extra));
            let ml = u64::from(ml_cell.value) + bits.get(u32::from(ml_cell.extra));
            bits.refill();
            let ll = u64::from(ll_cell.value) + bits.get(u32::from(ll_cell.extra));
            let offset = if of_value > 3 {
                let o = of_value - 3;
                *reps = [o, reps[0], reps[1]];
                o
            } else {
                match of_value - 1 + u64::from(ll == 0) {
                    0 => reps[0],
                    1 => {
                        let o = reps[1];
                        *reps = [o, reps[0], reps[2]];
                        o
                    }
                    n => {
                        let o = if n == 2 { reps[2] } else { reps[0].wrapping_sub(1) };
                        if o == 0 {
                            return Err("repeat offset 0");
                        }
                        *reps = [o, reps[0], reps[1]];
                        o
                    }
                }
            };
            // Nothing read past the stream reaches `on_match`.
            if bits.overrun() {
                return Err("sequence bitstream overrun");
            }
            lits_used += ll as usize;
            if lits_used > lit_size {
                return Err("sequences use more literals than the block has");
            }
            out += (ll + ml) as usize;
            if out > MAX_BLOCK {
                return Err("block output larger than 128 KiB");
            }
            p += ll;
            on_match(p, offset, ml);
            p += ml;
            if i + 1 < nb_seq {
                ll_state = usize::from(ll_cell.next) + bits.get(u32::from(ll_cell.bits)) as usize;
                ml_state = usize::from(ml_cell.next) + bits.get(u32::from(ml_cell.bits)) as usize;
                of_state = usize::from(of_cell.next) + bits.get(u32::from(of_cell.bits)) as usize;
            }
            if bits.overrun() {
                return Err("sequence bitstream overrun");
            }
        }
        if !bits.exhausted() {
            return Err("sequence bitstream not fully consumed");
        }
        let total = out + (lit_size - lits_used);
        if total > MAX_BLOCK {
            return Err("block output larger than 128 KiB");
        }
        Ok(total)
    }

    /// Parses the literals section header; records a new Huffman tree. Returns the literals'
    /// regenerated size and the section's length.
    fn literals(&mut self, c: &[u8]) -> Result<(usize, usize), &'static str> {
        let b0 = *c.first().ok_or("empty block")?;
        let kind = b0 & 3;
        let format = (b0 >> 2) & 3;
        let byte = |i: usize| c.get(i).copied().map(usize::from).ok_or("truncated literals header");
        if kind < 2 {
            let (hdr, size) = match format {
                0 | 2 => (1, usize::from(b0 >> 3)),
                1 => (2, (usize::from(b0) >> 4) + (byte(1)? << 4)),
                _ => (3, (usize::from(b0) >> 4) + (byte(1)? << 4) + (byte(2)? << 12)),
            };
            let len = hdr + if kind == 0 { size } else { 1 };
            if size > MAX_BLOCK || len > c.len() {
                return Err("literals section overruns its block");
            }
            return Ok((size, len));
        }
        let (hdr, bits) = match format {
            0 | 1 => (3, 10),
            2 => (4, 14),
            _ => (5, 18),
        };
        let v = le(c.get(..hdr).ok_or("truncated literals header")?);
        let mask = (1u64 << bits) - 1;
        let size = ((v >> 4) & mask) as usize;
        let comp = ((v >> (4 + bits)) & mask) as usize;
        let len = hdr + comp;
        if size > MAX_BLOCK || len > c.len() {
            return Err("literals section overruns its block");
        }
        if kind == 2 {
            let hb = byte(hdr)?;
            let tree = if hb < 128 { 1 + hb } else { 1 + (hb - 127).div_ceil(2) };
            if tree > comp {
                return Err("Huffman tree larger than its literals");
            }
            self.huf = Some(c[hdr..hdr + tree].to_vec());
        } else if self.huf.is_none() {
            return Err("treeless literals without a previous tree");
        }
        Ok((size, len))
    }

    /// The repeat offsets in force.
    pub(super) fn reps(&self) -> [u64; 3] {
        self.reps
    }

    /// The entropy part of a zstd dictionary that restores this state (RFC 8878 section 5:
    /// magic, ID, Huffman tree, offset / match-length / literal-length tables, the three repeat
    /// offsets); the window content follows it. `None` while a table is in RLE mode or a repeat
    /// offset does not fit in 32 bits.
    pub(super) fn dictionary_header(&self) -> Option<Vec<u8>> {
        let mut d = Vec::with_capacity(512);
        d.extend_from_slice(&DICT_MAGIC.to_le_bytes());
        d.extend_from_slice(&DICT_ID.to_le_bytes());
        d.extend_from_slice(self.huf.as_deref().unwrap_or(&HUF_PLACEHOLDER));
        d.extend(self.of.description()?);
        d.extend(self.ml.description()?);
        d.extend(self.ll.description()?);
        for r in self.reps {
            d.extend_from_slice(&u32::try_from(r).ok()?.to_le_bytes());
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::codec_io::test_util::Rng;

    /// The bits of a stream from its end mark down, one at a time (RFC 8878 4.1).
    fn reference(src: &[u8]) -> Vec<u8> {
        let last = *src.last().unwrap();
        let mut left = src.len() * 8 - 8 + (7 - last.leading_zeros() as usize);
        let mut out = Vec::new();
        while left > 0 {
            left -= 1;
            out.push((src[left / 8] >> (left % 8)) & 1);
        }
        out
    }

    #[test]
    fn reads_the_same_bits_as_one_at_a_time() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next();
        for len in 1..80 {
            for _ in 0..20 {
                let mut src: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                *src.last_mut().unwrap() |= 1 << (next() % 8);
                let want = reference(&src);
                let mut r = RevBits::new(&src).unwrap();
                let mut got = Vec::new();
                // Fields of 0 to 31 bits, a refill before each group of at most 56, as the
                // sequence loop does.
                while !r.overrun() && got.len() < want.len() {
                    r.refill();
                    let mut group = 0;
                    loop {
                        let n = (next() % 32) as u32;
                        if group + n > REFILL_BITS || got.len() + n as usize > want.len() {
                            break;
                        }
                        let v = r.get(n);
                        got.extend((0..n).rev().map(|i| ((v >> i) & 1) as u8));
                        group += n;
                    }
                    if group == 0 {
                        let n = (want.len() - got.len()).min(1) as u32;
                        let v = r.get(n);
                        got.extend((0..n).rev().map(|i| ((v >> i) & 1) as u8));
                    }
                }
                assert_eq!(got, want, "stream of {len} bytes");
                assert!(r.exhausted());
                // One bit more is an overrun, never a panic.
                r.refill();
                r.get(1);
                assert!(r.overrun());
            }
        }
    }
}
