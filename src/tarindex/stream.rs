//! Indexing a stream pushed in arbitrary chunks (a layer being decompressed and hashed in the
//! same pass): header blocks are assembled in a 512-byte buffer, member data is skipped by
//! counting, never copied.

use super::entry::{Entry, Result, TarError};
use super::header::{Decoder, Step, BLOCK};

/// A push parser over a tar stream; see the module docs.
#[derive(Debug)]
pub struct StreamIndexer {
    dec: Decoder,
    entries: Vec<Entry>,
    /// Stream offset of the next byte `feed` will see.
    pos: u64,
    /// A header block being assembled across chunks.
    buf: [u8; BLOCK],
    filled: usize,
    /// Member data (with padding) still to skip, and the member's start for errors.
    skip: u64,
    skip_unit: u64,
    /// End-of-archive marker seen: everything after it is ignored.
    ended: bool,
    failed: bool,
}

impl Default for StreamIndexer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamIndexer {
    /// An indexer positioned at the start of the stream.
    pub fn new() -> Self {
        Self {
            dec: Decoder::new(),
            entries: Vec::new(),
            pos: 0,
            buf: [0; BLOCK],
            filled: 0,
            skip: 0,
            skip_unit: 0,
            ended: false,
            failed: false,
        }
    }

    /// Takes the entries indexed so far (the caller keeps them in a more compact form, so a
    /// large layer never holds all its `Entry` values at once).
    pub fn take_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }

    /// Number of entries indexed so far.
    pub fn entries_so_far(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of the stream fed so far.
    pub fn position(&self) -> u64 {
        self.pos + self.filled as u64
    }

    /// Consumes the next piece of the stream. After an error the indexer is unusable and
    /// every later call returns [`TarError::Poisoned`].
    pub fn feed(&mut self, data: &[u8]) -> Result<()> {
        if self.failed {
            return Err(TarError::Poisoned);
        }
        let r = self.feed_inner(data);
        self.failed = r.is_err();
        r
    }

    fn feed_inner(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            if self.ended {
                self.pos = self.pos.saturating_add(data.len() as u64);
                return Ok(());
            }
            if self.skip > 0 {
                // The hot path for big layers: one subtraction per chunk, no per-byte work.
                let n = self.skip.min(data.len() as u64) as usize;
                self.skip -= n as u64;
                self.pos += n as u64;
                data = &data[n..];
                continue;
            }
            if self.filled == 0 {
                if let Some((block, rest)) = data.split_first_chunk::<BLOCK>() {
                    // A whole block in the caller's buffer: decode it in place.
                    self.block(block)?;
                    data = rest;
                    continue;
                }
            }
            let n = (BLOCK - self.filled).min(data.len());
            self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == BLOCK {
                self.filled = 0;
                let copy = self.buf;
                self.block(&copy)?;
            }
        }
        Ok(())
    }

    /// Hands one complete block (which started at `pos`) to the decoder.
    fn block(&mut self, block: &[u8; BLOCK]) -> Result<()> {
        let here = self.pos;
        self.pos += BLOCK as u64;
        match self.dec.block(block, here, &mut self.entries)? {
            Step::More => {}
            Step::End => self.ended = true,
            Step::Skip { bytes, unit_start } => {
                self.skip = bytes;
                self.skip_unit = unit_start;
            }
        }
        Ok(())
    }

    /// Ends the stream: errors if it stopped inside a header or inside member data. An
    /// archive may end with two zero blocks, one, or none (right after a member).
    pub fn finish(mut self) -> Result<Vec<Entry>> {
        if self.failed {
            return Err(TarError::Poisoned);
        }
        if self.ended {
            return Ok(self.entries);
        }
        if self.skip > 0 {
            return Err(TarError::Truncated { offset: self.skip_unit });
        }
        if self.filled > 0 {
            let block_start = self.pos;
            return Err(TarError::Truncated {
                offset: self.dec.unit_start().unwrap_or(block_start),
            });
        }
        self.dec.at_eof(&mut self.entries)?;
        Ok(self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::super::index_seekable;
    use super::super::testutil::*;
    use super::*;

    /// Feeds `archive` in pieces whose sizes cycle through `sizes`.
    fn feed_pattern(archive: &[u8], sizes: &[usize]) -> Result<Vec<Entry>> {
        let mut s = StreamIndexer::new();
        let mut rest = archive;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            s.feed(piece)?;
            s.feed(&[])?; // empty feeds are harmless anywhere
            rest = tail;
        }
        s.finish()
    }

    fn real_archives() -> Vec<(&'static str, Vec<u8>)> {
        require_gnu_tar();
        let all = TreeOpts {
            special: true,
            prefix: true,
            long: true,
            odd_times: true,
            sparse: true,
            huge_sparse: false,
            xattrs: true,
        };
        let tree = make_tree(all);
        let mut out = Vec::new();
        for (name, args) in [
            ("gnu", &["--format=gnu", "--sparse"][..]),
            ("posix", &["--format=posix", "--xattrs"]),
            (
                "pax-sparse-1.0",
                &["--format=posix", "--sparse", "--sparse-version=1.0"],
            ),
            (
                "pax-sparse-0.0",
                &["--format=posix", "--sparse", "--sparse-version=0.0"],
            ),
        ] {
            out.push((name, tar_create(tree.dir.path(), args)));
        }
        out
    }

    #[test]
    fn chunk_sizes_agree_with_seek_driver() {
        let mut archives = real_archives();
        let mut a = Ar::new();
        a.pax(b'g', &[(b"uid", b"5")]);
        a.gnu_long(b'L', &[b'n'; 700]);
        a.file(Fmt::Gnu, b"x", &[3; 5000]);
        a.end();
        archives.push(("synthetic", a.0));
        for (name, archive) in archives {
            let want = index_seekable(&archive).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!want.is_empty(), "{name}");
            for &chunk in CHUNKS {
                let got = index_stream(&archive, chunk).unwrap_or_else(|e| panic!("{name}/{chunk}: {e}"));
                assert_eq!(got, want, "{name}: chunk {chunk}");
            }
            for pattern in [&[1, 511, 2, 1024, 3, 4096][..], &[100_000, 1], &[512, 1, 511]] {
                assert_eq!(feed_pattern(&archive, pattern).unwrap(), want, "{name}: {pattern:?}");
            }
        }
    }

    #[test]
    fn progress_and_trailing_data() {
        let mut a = Ar::new();
        a.file(Fmt::Ustar, b"a", b"1").file(Fmt::Ustar, b"b", &[2; 600]);
        let mut s = StreamIndexer::new();
        s.feed(&a.0[..512]).unwrap();
        assert_eq!((s.entries_so_far(), s.position()), (1, 512));
        s.feed(&a.0[512..1030]).unwrap();
        assert_eq!(
            (s.entries_so_far(), s.position()),
            (1, 1030),
            "second header incomplete"
        );
        s.feed(&a.0[1030..]).unwrap();
        s.feed(&[0; 1024]).unwrap();
        // After the end marker anything goes, even bytes that would not parse.
        s.feed(b"not a tar header, and not a multiple of 512 bytes").unwrap();
        let v = s.finish().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(StreamIndexer::new().finish().unwrap(), vec![]);
        assert_eq!(StreamIndexer::default().entries_so_far(), 0);
    }

    #[test]
    fn errors_poison_the_indexer() {
        let mut bad = Hdr::new(Fmt::Ustar, b"a", b'0', 0).bytes();
        bad[0] ^= 1;
        let mut s = StreamIndexer::new();
        s.feed(&bad[..300]).unwrap(); // not a whole block yet
        assert!(matches!(s.feed(&bad[300..]), Err(TarError::BadChecksum { offset: 0 })));
        assert!(matches!(s.feed(&[0; 512]), Err(TarError::Poisoned)));
        assert!(matches!(s.finish(), Err(TarError::Poisoned)));
    }

    #[test]
    fn truncation_is_reported_by_finish() {
        let mut a = Ar::new();
        a.file(Fmt::Ustar, b"a", b"1");
        a.pax(b'x', &[(b"path", b"p")]);
        a.file(Fmt::Ustar, b"b", &[2; 600]);
        let full = a.0;
        // (cut, expected offset): inside data of the first member, inside the PAX data, inside
        // the member header after PAX, inside the second member's data.
        for (cut, offset) in [(600, 0), (1030, 1024), (2100, 1024), (2600, 1024), (3000, 1024)] {
            let mut s = StreamIndexer::new();
            s.feed(&full[..cut]).unwrap();
            let r = s.finish();
            assert!(
                matches!(r, Err(TarError::Truncated { offset: o }) if o == offset),
                "cut {cut}: {r:?}"
            );
        }
    }

    /// Rough throughput check of the skip path (run with --release --ignored): a 1 GiB stream
    /// with 71k members fed in 64 KiB chunks.
    #[test]
    #[ignore]
    fn bench_skip_path() {
        let member = 15_000usize;
        let mut one = Ar::new();
        one.file(Fmt::Ustar, b"some/file/name", &vec![0x5a; member]);
        let unit = one.0;
        let count = (1usize << 30) / unit.len();
        let mut s = StreamIndexer::new();
        let started = std::time::Instant::now();
        let big: Vec<u8> = unit.iter().copied().cycle().take(unit.len() * 1000).collect();
        for _ in 0..count / 1000 {
            for piece in big.chunks(65536) {
                s.feed(piece).unwrap();
            }
        }
        let n = s.entries_so_far();
        let v = s.finish().unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{n} entries, {} MiB in {secs:.3}s",
            (unit.len() * (count / 1000) * 1000) >> 20
        );
        assert_eq!(v.len(), n);
    }
}
