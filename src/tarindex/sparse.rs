//! GNU sparse maps: validation shared by all four formats, and the PAX 1.0 in-data map parser.
//!
//! FUSE reads later trust these maps to translate file offsets into archive offsets, so a map
//! is accepted only if its runs are sorted, disjoint, inside the real size, and their lengths
//! add up exactly to the stored data. GNU tar pads each run to a block boundary when writing
//! and reading, so runs are only contiguous ("back-to-back") if every run but the last is a
//! whole number of blocks; GNU tar's maps always are, and we reject the ambiguous others.

use super::entry::SparseChunk;

/// Why a sparse map is refused: its syntax (the PAX 1.0 in-data map), its PAX keys, or its runs
/// against the entry's sizes. The message is the reason only; [`super::TarError::BadSparse`]
/// says which entry.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SparseError {
    /// A run's offset plus length overflows 64 bits.
    #[error("sparse run end overflows")]
    RunEndOverflows,
    /// A run ends past the file's real size.
    #[error("sparse run {offset}+{len} past real size {realsize}")]
    PastRealSize { offset: u64, len: u64, realsize: u64 },
    /// Runs are not sorted and disjoint.
    #[error("sparse run at {offset} overlaps or is out of order")]
    OutOfOrder { offset: u64 },
    /// A run that is not the last one is not a whole number of blocks: where the next one's
    /// data starts would be ambiguous.
    #[error("sparse run before {offset} is not a whole number of blocks")]
    Unaligned { offset: u64 },
    /// The runs' lengths add up past 64 bits.
    #[error("sparse data size overflows")]
    SizeOverflows,
    /// The runs' lengths do not add up to the stored data.
    #[error("sparse runs hold {total} bytes but {stored} are stored")]
    StoredMismatch { total: u64, stored: u64 },
    /// A number of the in-data map overflows 64 bits.
    #[error("sparse map number overflows")]
    NumberOverflows,
    /// The in-data map has an empty line.
    #[error("empty line in sparse map")]
    EmptyLine,
    /// The in-data map has a byte that is neither a digit nor '\n'.
    #[error("unexpected byte {0:#04x} in sparse map")]
    UnexpectedByte(u8),
    /// The in-data map has not ended where the member's data ends.
    #[error("sparse map runs past the member data")]
    MapPastData,
    /// Neither `GNU.sparse.size` nor `GNU.sparse.realsize`.
    #[error("no GNU.sparse.size/realsize")]
    NoRealSize,
    /// A PAX 1.0 sparse member with less than a block of data: no room for its map.
    #[error("no room for the in-data sparse map")]
    NoRoomForMap,
    /// A `GNU.sparse.major/minor` other than 0.0, 0.1 and 1.0.
    #[error("unsupported GNU.sparse.major/minor version")]
    UnsupportedVersion,
    /// A last `GNU.sparse.offset` without its numbytes.
    #[error("GNU.sparse.offset without numbytes")]
    OffsetWithoutNumbytes,
    /// Both formats 0.0 and 0.1 of the map.
    #[error("both GNU.sparse.map and offset/numbytes pairs")]
    MapAndPairs,
    /// `GNU.sparse.numblocks` is not the number of runs.
    #[error("GNU.sparse.numblocks disagrees with the map")]
    NumblocksDisagrees,
}

/// Checks a map against the entry's real size and its stored data size; drops empty runs
/// (GNU tar ends maps with a zero-length run at the end of the file).
pub(crate) fn check_map(chunks: Vec<SparseChunk>, realsize: u64, stored: u64) -> Result<Vec<SparseChunk>, SparseError> {
    let mut end_prev = 0u64;
    let mut total = 0u64;
    let mut prev_len = 0u64;
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let end = c.offset.checked_add(c.len).ok_or(SparseError::RunEndOverflows)?;
        if end > realsize {
            return Err(SparseError::PastRealSize {
                offset: c.offset,
                len: c.len,
                realsize,
            });
        }
        if c.len == 0 {
            continue;
        }
        if c.offset < end_prev {
            return Err(SparseError::OutOfOrder { offset: c.offset });
        }
        if prev_len % 512 != 0 {
            return Err(SparseError::Unaligned { offset: c.offset });
        }
        prev_len = c.len;
        end_prev = end;
        total = total.checked_add(c.len).ok_or(SparseError::SizeOverflows)?;
        out.push(c);
    }
    if total != stored {
        return Err(SparseError::StoredMismatch { total, stored });
    }
    Ok(out)
}

/// Incremental parser for the PAX 1.0 sparse map at the start of a member's data: decimal
/// numbers each ended by '\n' — the run count, then offset/length per run — padded with
/// anything to a block boundary.
#[derive(Debug, Default)]
pub(crate) struct MapParser {
    /// Digits of the number being read (None before its first digit).
    acc: Option<u64>,
    /// Number of runs announced by the first line.
    count: Option<u64>,
    /// Offset read, waiting for its length.
    offset: Option<u64>,
    chunks: Vec<SparseChunk>,
    done: bool,
}

impl MapParser {
    /// Consumes one block; returns true once the map is complete (the rest of that block is
    /// padding).
    pub fn feed(&mut self, block: &[u8]) -> Result<bool, SparseError> {
        for &b in block {
            if self.done {
                break;
            }
            match b {
                b'0'..=b'9' => {
                    let acc = self.acc.unwrap_or(0);
                    let acc = acc.checked_mul(10).and_then(|a| a.checked_add(u64::from(b - b'0')));
                    self.acc = Some(acc.ok_or(SparseError::NumberOverflows)?);
                }
                b'\n' => {
                    let n = self.acc.take().ok_or(SparseError::EmptyLine)?;
                    self.number(n);
                }
                _ => return Err(SparseError::UnexpectedByte(b)),
            }
        }
        Ok(self.done)
    }

    fn number(&mut self, n: u64) {
        match (self.count, self.offset.take()) {
            (None, _) => self.count = Some(n),
            (Some(_), None) => self.offset = Some(n),
            (Some(_), Some(offset)) => self.chunks.push(SparseChunk { offset, len: n }),
        }
        // The count is attacker-controlled: compare, never preallocate from it.
        self.done = self.offset.is_none() && self.count == Some(self.chunks.len() as u64);
    }

    /// The runs read so far (all of them once `feed` returned true).
    pub fn into_chunks(self) -> Vec<SparseChunk> {
        self.chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(offset: u64, len: u64) -> SparseChunk {
        SparseChunk { offset, len }
    }

    #[test]
    fn check_map_table() {
        type Map<'a> = &'a [(u64, u64)];
        let ok: &[(Map, u64, u64, Map)] = &[
            (&[], 0, 0, &[]),
            (&[(0, 10)], 10, 10, &[(0, 10)]),
            (&[(5, 5), (20, 0)], 20, 5, &[(5, 5)]),
            (&[(0, 512), (512, 4)], 1000, 516, &[(0, 512), (512, 4)]),
            (&[(0, 1024), (4096, 3), (5000, 0)], 5000, 1027, &[(0, 1024), (4096, 3)]),
            (&[(0, 0), (0, 3)], 3, 3, &[(0, 3)]),
        ];
        for (map, real, stored, want) in ok {
            let map = map.iter().map(|&(o, l)| c(o, l)).collect();
            let want: Vec<_> = want.iter().map(|&(o, l)| c(o, l)).collect();
            assert_eq!(check_map(map, *real, *stored), Ok(want));
        }
        let bad: &[(Map, u64, u64)] = &[
            (&[(0, 10)], 9, 10),             // past real size
            (&[(0, 10)], 10, 9),             // sum mismatch
            (&[(5, 5), (0, 5)], 20, 10),     // out of order
            (&[(0, 5), (4, 5)], 20, 10),     // overlap
            (&[(u64::MAX, 2)], u64::MAX, 2), // overflow
            (&[(21, 0)], 20, 0),             // empty run past the end
            (&[(0, 4), (4, 4)], 100, 8),     // unaligned middle run
        ];
        for (map, real, stored) in bad {
            let m = map.iter().map(|&(o, l)| c(o, l)).collect();
            assert!(check_map(m, *real, *stored).is_err(), "{map:?}");
        }
    }

    #[test]
    fn map_parser_split_anywhere() {
        let text = b"3\n0\n10\n100\n20\n4096\n0\n";
        for split in 0..=text.len() {
            let mut p = MapParser::default();
            let first = p.feed(&text[..split]).unwrap();
            assert_eq!(first, split == text.len());
            let mut rest = text[split..].to_vec();
            rest.extend_from_slice(b"garbage after the map is padding");
            assert!(p.feed(&rest).unwrap() || split == text.len());
            assert_eq!(p.into_chunks(), vec![c(0, 10), c(100, 20), c(4096, 0)]);
        }
    }

    #[test]
    fn map_parser_errors_and_empty() {
        let mut p = MapParser::default();
        assert_eq!(p.feed(b"0\n\0\0\0"), Ok(true));
        assert!(p.into_chunks().is_empty());
        for bad in [&b"1\n\n"[..], b"1\n2 3\n", b"99999999999999999999999\n", b"x"] {
            assert!(MapParser::default().feed(bad).is_err(), "{bad:?}");
        }
        // Incomplete map: not an error by itself, just not done.
        assert_eq!(MapParser::default().feed(b"2\n0\n1\n"), Ok(false));
    }
}
