//! Plumbing shared by the seekable decompressors ([`super::gzip`], [`super::zstd`]).
//!
//! - [`Input`]: a buffered compressed input that always knows the compressed offset of its next
//!   byte, so every error and every access point can name an exact position.
//! - [`ReadAtSource`]: a `std::io::Read` over a byte range of a [`ReadAt`], for decoders that
//!   restart in the middle of a blob.
//! - [`HashingReader`]: sha256 of the compressed bytes as they stream past, so one indexing pass
//!   also yields the blob digest.
//! - [`IndexWriter`] / [`IndexReader`]: the little-endian encoding both on-disk indexes use. Every
//!   encoded index ends with the sha256 of everything before it, so any flipped or missing byte is
//!   rejected before a single field is trusted, and every read is bounds-checked.

use std::io::{self, Read, Write};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::codec_error::IndexFormatError;
use super::ReadAt;

/// Length of the sha256 trailer that closes every encoded index.
pub(crate) const CHECKSUM_LEN: usize = 32;

/// Buffered compressed input that tracks the compressed offset of its next unread byte.
pub(crate) struct Input<R> {
    src: R,
    buf: Box<[u8]>,
    /// First unread byte in `buf`.
    start: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    /// Compressed offset of `buf[0]`.
    base: u64,
    /// The source returned 0 once; it is not asked again.
    eof: bool,
    /// The most recently consumed byte.
    last: Option<u8>,
}

impl<R: Read> Input<R> {
    /// `base` is the compressed offset of the first byte `src` returns.
    pub(crate) fn new(src: R, capacity: usize, base: u64) -> Self {
        Self {
            src,
            buf: vec![0; capacity.max(16)].into_boxed_slice(),
            start: 0,
            end: 0,
            base,
            eof: false,
            last: None,
        }
    }

    /// Compressed offset of the next unread byte.
    pub(crate) fn pos(&self) -> u64 {
        self.base + self.start as u64
    }

    /// The buffered, unread bytes (possibly empty: call [`Self::fill`]).
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as read.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        let n = n.min(self.end - self.start);
        if n > 0 {
            self.last = Some(self.buf[self.start + n - 1]);
        }
        self.start += n;
    }

    /// The byte just before [`Self::pos`], if it was consumed through this buffer.
    pub(crate) fn last_byte(&self) -> Option<u8> {
        self.last
    }

    /// Makes sure some unread bytes are buffered; false means the source is exhausted.
    pub(crate) fn fill(&mut self) -> io::Result<bool> {
        if self.start < self.end {
            return Ok(true);
        }
        self.base += self.end as u64;
        self.start = 0;
        self.end = 0;
        let n = self.read_more()?;
        Ok(n > 0)
    }

    /// Reads once from the source into the free tail of `buf`; 0 at EOF.
    fn read_more(&mut self) -> io::Result<usize> {
        if self.eof || self.end == self.buf.len() {
            return Ok(0);
        }
        // Reads end on multiples of the buffer size in the compressed stream, so a reader that
        // starts at an access point reads each verified chunk of the blob once
        // (`verified.rs` checks whole chunks: an unaligned read would fetch and check two).
        let cap = self.buf.len() as u64;
        let pos = self.base + self.end as u64;
        let want = (self.buf.len() - self.end).min((cap - pos % cap) as usize);
        let end = self.end + want;
        loop {
            match self.src.read(&mut self.buf[self.end..end]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next byte, or `None` at the end of the source.
    pub(crate) fn byte(&mut self) -> io::Result<Option<u8>> {
        if !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.start];
        self.consume(1);
        Ok(Some(b))
    }

    /// Up to `n` unread bytes without consuming them; fewer only at the end of the source.
    /// `n` must not exceed the buffer capacity.
    pub(crate) fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.end - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
            while self.end < n && self.read_more()? > 0 {}
        }
        let have = (self.end - self.start).min(n);
        Ok(&self.buf[self.start..self.start + have])
    }

    /// Skips up to `n` bytes; returns how many were skipped (fewer only at the end).
    pub(crate) fn skip(&mut self, mut n: u64) -> io::Result<u64> {
        let wanted = n;
        while n > 0 && self.fill()? {
            let k = ((self.end - self.start) as u64).min(n) as usize;
            self.consume(k);
            n -= k as u64;
        }
        Ok(wanted - n)
    }

    /// The underlying source.
    pub(crate) fn source(&self) -> &R {
        &self.src
    }
}

impl Input<ReadAtSource> {
    /// Drops buffered bytes and continues from compressed offset `pos`, reading up to `end`.
    pub(crate) fn reposition(&mut self, pos: u64, end: u64) {
        self.src.pos = pos;
        self.src.end = end;
        self.base = pos;
        self.start = 0;
        self.end = 0;
        self.eof = false;
        self.last = None;
    }
}

/// `std::io::Read` over `[pos, end)` of a shared blob; each call is one positional read.
pub(crate) struct ReadAtSource {
    blob: Arc<dyn ReadAt>,
    pos: u64,
    end: u64,
}

impl ReadAtSource {
    pub(crate) fn new(blob: Arc<dyn ReadAt>, pos: u64, end: u64) -> Self {
        Self { blob, pos, end }
    }
}

impl Read for ReadAtSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min((self.end - self.pos).min(usize::MAX as u64) as usize);
        let got = self.blob.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// Passes reads through while hashing every byte returned.
pub(crate) struct HashingReader<R> {
    inner: R,
    sha: Sha256,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            sha: Sha256::new(),
        }
    }

    /// sha256 of every byte read so far.
    pub(crate) fn digest(&self) -> [u8; 32] {
        self.sha.clone().finalize().into()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

/// Builds an encoded index: `magic`, `version`, fields, then the sha256 trailer; in memory, or
/// written out a MiB at a time ([`Self::streaming`]).
pub(crate) struct IndexWriter<'a> {
    buf: Vec<u8>,
    /// Where a streaming writer sends its bytes, the hash of those sent, the first error.
    sink: Option<(&'a mut dyn Write, Sha256)>,
    err: Option<io::Error>,
}

/// Bytes a streaming [`IndexWriter`] holds before it writes them out.
const SPILL: usize = 1 << 20;

impl<'a> IndexWriter<'a> {
    pub(crate) fn new(magic: &[u8; 8], version: u32) -> Self {
        Self::with_capacity(magic, version, 0)
    }
    /// [`Self::new`] for about `len` bytes of fields (the encoding is built in one buffer,
    /// never regrown and copied).
    pub(crate) fn with_capacity(magic: &[u8; 8], version: u32, len: usize) -> Self {
        Self::start(Vec::with_capacity(8 + 4 + len + 32), None, magic, version)
    }
    /// A writer that sends the encoding to `sink` as it goes ([`Self::finish_streaming`]): an
    /// index of tens of MB is never held in memory a second time.
    pub(crate) fn streaming(magic: &[u8; 8], version: u32, sink: &'a mut dyn Write) -> Self {
        Self::start(
            Vec::with_capacity(SPILL + 4096),
            Some((sink, Sha256::new())),
            magic,
            version,
        )
    }
    fn start(buf: Vec<u8>, sink: Option<(&'a mut dyn Write, Sha256)>, magic: &[u8; 8], version: u32) -> Self {
        let mut w = Self { buf, sink, err: None };
        w.bytes(magic);
        w.u32(version);
        w
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
        if self.buf.len() >= SPILL {
            self.spill();
        }
    }
    /// Sends what is buffered to the sink, if streaming.
    fn spill(&mut self) {
        if let Some((sink, sha)) = self.sink.as_mut() {
            sha.update(&self.buf);
            if self.err.is_none() {
                self.err = sink.write_all(&self.buf).err();
            }
            self.buf.clear();
        }
    }
    /// Appends the checksum trailer and returns the encoding (of an in-memory writer).
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let sum: [u8; 32] = Sha256::digest(&self.buf).into();
        self.buf.extend_from_slice(&sum);
        self.buf
    }
    /// Writes the rest and the checksum trailer (of a streaming writer).
    pub(crate) fn finish_streaming(mut self) -> io::Result<()> {
        self.spill();
        if let Some(e) = self.err {
            return Err(e);
        }
        match self.sink {
            Some((sink, sha)) => sink.write_all(&sha.finalize()),
            None => Err(io::Error::other("not a streaming index writer")),
        }
    }
}

/// Whether [`IndexReader::open`] verifies the sha256 trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer {
    Check,
    /// The bytes are covered by another checksum already.
    Skip,
}

/// Bounds-checked reader over an encoded index whose checksum, magic and version were verified.
pub(crate) struct IndexReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> IndexReader<'a> {
    /// Checks the trailer, magic and version; the reader then covers the fields in between.
    /// `Trailer::Skip` leaves the sha256 trailer unchecked, for an index inside a file whose own
    /// checksum was verified (a layer index in the cache): hashing it again costs a warm mount
    /// about a millisecond per 2 MB.
    pub(crate) fn open(
        data: &'a [u8],
        magic: &[u8; 8],
        version: u32,
        trailer: Trailer,
    ) -> Result<Self, IndexFormatError> {
        let head = magic.len() + 4;
        if data.len() < head + CHECKSUM_LEN {
            return Err(IndexFormatError::TooShort(data.len()));
        }
        let (body, sum) = data.split_at(data.len() - CHECKSUM_LEN);
        if trailer == Trailer::Check {
            let want: [u8; 32] = Sha256::digest(body).into();
            if want.as_slice() != sum {
                return Err(IndexFormatError::Checksum);
            }
        }
        if &body[..magic.len()] != magic {
            return Err(IndexFormatError::Magic);
        }
        let mut r = Self {
            data: body,
            pos: magic.len(),
        };
        let v = r.u32()?;
        if v != version {
            return Err(IndexFormatError::Version {
                found: v,
                expected: version,
            });
        }
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexFormatError> {
        if self.remaining() < n {
            return Err(IndexFormatError::Truncated {
                at: self.pos,
                wanted: n,
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Bytes left before the checksum trailer.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub(crate) fn u8(&mut self) -> Result<u8, IndexFormatError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, IndexFormatError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, IndexFormatError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], IndexFormatError> {
        self.take(n)
    }
    pub(crate) fn array32(&mut self) -> Result<[u8; 32], IndexFormatError> {
        let mut a = [0; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }
    /// Fails unless every field was consumed.
    pub(crate) fn finish(self) -> Result<(), IndexFormatError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(IndexFormatError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_tracks_offsets_across_short_reads() {
        struct OneByte(Vec<u8>, usize);
        impl Read for OneByte {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[self.1];
                self.1 += 1;
                Ok(1)
            }
        }
        let data: Vec<u8> = (0..100).collect();
        let mut inp = Input::new(OneByte(data, 0), 16, 1000);
        assert_eq!(inp.peek(4).unwrap(), &[0, 1, 2, 3]);
        assert_eq!(inp.pos(), 1000);
        assert_eq!(inp.byte().unwrap(), Some(0));
        assert_eq!(inp.skip(10).unwrap(), 10);
        assert_eq!(inp.pos(), 1011);
        assert_eq!(inp.peek(16).unwrap()[0], 11);
        assert_eq!(inp.skip(1000).unwrap(), 89);
        assert_eq!(inp.byte().unwrap(), None);
        assert_eq!(inp.pos(), 1100);
    }

    #[test]
    fn index_encoding_rejects_damage() {
        let mut w = IndexWriter::new(b"TESTMAGC", 3);
        w.u64(7);
        w.u32(9);
        let enc = w.finish();
        let mut r = IndexReader::open(&enc, b"TESTMAGC", 3, Trailer::Check).unwrap();
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 9);
        assert!(r.u8().is_err());
        r.finish().unwrap();
        assert!(IndexReader::open(&enc, b"TESTMAGC", 4, Trailer::Check).is_err());
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x40;
            assert!(
                IndexReader::open(&bad, b"TESTMAGC", 3, Trailer::Check).is_err(),
                "flip at {i}"
            );
            assert!(
                IndexReader::open(&enc[..i], b"TESTMAGC", 3, Trailer::Check).is_err(),
                "cut at {i}"
            );
        }
    }
}

/// Helpers shared by the gzip and zstd tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::super::ReadAt;

    /// Deterministic xorshift generator.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                self.next() % n
            }
        }
    }

    /// `len` bytes mixing random runs, repetitive text and zero runs (compresses ~3x).
    pub(crate) fn test_data(len: usize, seed: u64) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "usr",
            "lib",
            "share",
            "python3",
            "the ",
            "and ",
            "of ",
            "\n",
            "{\"key\": ",
            "0x1f8b",
            "import ",
            "return ",
            "    ",
            "#include <stdio.h>\n",
            "fn main() {}",
        ];
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut out = Vec::with_capacity(len + 64);
        while out.len() < len {
            let run = 1 + rng.below(2000) as usize;
            match rng.below(10) {
                0..=1 => out.extend((0..run).map(|_| rng.next() as u8)),
                2 => out.extend(std::iter::repeat_n(0u8, run)),
                _ => {
                    for _ in 0..run / 4 {
                        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                    }
                }
            }
        }
        out.truncate(len);
        out
    }

    /// A blob that answers every read with a random short count (1..=n), counting bytes read.
    pub(crate) struct ShortReads {
        pub data: Vec<u8>,
        seed: AtomicU64,
        pub bytes_read: AtomicU64,
    }

    impl ShortReads {
        pub(crate) fn new(data: Vec<u8>) -> Arc<Self> {
            Arc::new(Self {
                data,
                seed: AtomicU64::new(0x1234_5678),
                bytes_read: AtomicU64::new(0),
            })
        }
    }

    impl ReadAt for ShortReads {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let Ok(off) = usize::try_from(offset) else {
                return Ok(0);
            };
            if off >= self.data.len() || buf.is_empty() {
                return Ok(0);
            }
            let s = self.seed.fetch_add(0x9E37_79B9, Ordering::Relaxed);
            let max = buf.len().min(self.data.len() - off);
            let n = 1 + Rng(s | 1).next() as usize % max;
            buf[..n].copy_from_slice(&self.data[off..off + n]);
            self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
        fn len(&self) -> u64 {
            self.data.len() as u64
        }
    }

    /// Checks one `read_at` against the plain bytes.
    pub(crate) fn check_read(r: &dyn ReadAt, plain: &[u8], off: u64, n: usize) {
        let mut buf = vec![0xA5u8; n];
        let got = r
            .read_at(&mut buf, off)
            .unwrap_or_else(|e| panic!("read {off}+{n}: {e}"));
        let start = (off as usize).min(plain.len());
        let want = &plain[start..(start + n).min(plain.len())];
        assert_eq!(got, want.len(), "length of read {off}+{n}");
        assert!(buf[..got] == *want, "bytes of read {off}+{n}");
    }

    /// Random reads of every kind: 1 byte, small, large, across chunk and point boundaries, at
    /// and past the end.
    pub(crate) fn check_random_reads(r: &dyn ReadAt, plain: &[u8], count: usize, seed: u64) {
        assert_eq!(r.len(), plain.len() as u64);
        let len = plain.len() as u64;
        let mut rng = Rng(seed | 1);
        for _ in 0..count {
            let off = match rng.below(8) {
                0 => len.saturating_sub(rng.below(10)),
                1 => len + rng.below(10),
                _ => rng.below(len + 1),
            };
            let n = match rng.below(4) {
                0 => 1,
                1 => rng.below(300) as usize,
                2 => rng.below(70_000) as usize,
                _ => rng.below(600_000) as usize,
            };
            check_read(r, plain, off, n);
        }
        check_read(r, plain, 0, plain.len() + 5);
        check_read(r, plain, u64::MAX, 3);
    }
}
