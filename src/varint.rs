//! Little helpers to write and read the cache encodings: LEB128 varints and length-prefixed
//! byte strings. Reading trusts nothing: every length and count is bounded by the bytes left.

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated(pub &'static str);

/// Result alias.
pub type Result<T> = std::result::Result<T, Truncated>;

/// An output buffer.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Appends a varint.
    pub fn num(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        self.num(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// A cursor over encoded bytes.
#[derive(Debug)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(Truncated("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// One byte.
    pub fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A varint.
    pub fn num(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Truncated("bad varint"))
    }

    /// A varint that must fit a u32.
    pub fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.num()?).map_err(|_| Truncated("number too large"))
    }

    /// A count of items each at least `min_bytes` long: never more than the bytes left allow.
    pub fn count(&mut self, min_bytes: usize) -> Result<usize> {
        let n = self.num()?;
        if n > (self.0.len() / min_bytes.max(1)) as u64 {
            return Err(Truncated("count exceeds data"));
        }
        Ok(n as usize)
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.num()?).map_err(|_| Truncated("length too large"))?;
        self.take(n)
    }
}

/// Decodes a long encoding from a reader piece by piece, so that only the decoded value and a
/// small window of its encoding are in memory at once: cache files are megabytes, and holding
/// one whole while its decoded form grows beside it was most of a warm mount's peak memory.
///
/// Decoders call [`Chunked::next`] once per item with a closure over a [`Reader`] of the
/// buffered bytes. When the closure fails and the source has more bytes, the window grows
/// (at least doubling) and the closure runs again, so an item may span any number of reads;
/// closures must therefore have no effect before they succeed. Every byte read is added to a
/// CRC-32 the caller can check afterwards.
pub struct Chunked<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes the source still holds.
    unread: u64,
    crc: crc32fast::Hasher,
    failed: Option<std::io::ErrorKind>,
}

/// The smallest read from the source.
const CHUNK: usize = 256 * 1024;

impl<R: std::io::Read> Chunked<R> {
    /// Decodes the `len` bytes `src` holds.
    pub fn new(src: R, len: u64) -> Chunked<R> {
        Chunked {
            src,
            buf: Vec::new(),
            pos: 0,
            unread: len,
            crc: crc32fast::Hasher::new(),
            failed: None,
        }
    }

    /// Bytes not yet decoded.
    pub fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64 + self.unread
    }

    /// A count of items each at least `min_bytes` long, bounded by the bytes that remain (so a
    /// damaged count cannot make the caller reserve absurd memory).
    pub fn count(&mut self, min_bytes: u64) -> Result<usize> {
        let n: u64 = self.next(|r| r.num())?;
        if n > self.remaining() / min_bytes.max(1) {
            return Err(Truncated("count exceeds data"));
        }
        usize::try_from(n).map_err(|_| Truncated("count exceeds data"))
    }

    /// Runs `f` on the buffered bytes, reading more and running it again while it fails and
    /// the source has more; on success drops the bytes `f` consumed.
    pub fn next<T, E: From<Truncated>>(
        &mut self,
        mut f: impl FnMut(&mut Reader<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        loop {
            let window = &self.buf[self.pos..];
            let mut r = Reader(window);
            match f(&mut r) {
                Ok(v) => {
                    self.pos += window.len() - r.0.len();
                    return Ok(v);
                }
                Err(e) if self.unread == 0 || self.failed.is_some() => return Err(e),
                Err(_) => self.fill()?,
            }
        }
    }

    /// Moves the undecoded bytes to the front and reads at least as many again (and at least
    /// `CHUNK`) from the source.
    fn fill(&mut self) -> Result<()> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        let want = self.buf.len().max(CHUNK) as u64;
        let n = want.min(self.unread) as usize;
        let start = self.buf.len();
        self.buf.resize(start + n, 0);
        if let Err(e) = self.src.read_exact(&mut self.buf[start..]) {
            self.failed = Some(e.kind());
            self.buf.truncate(start);
            return Err(Truncated("read error"));
        }
        self.crc.update(&self.buf[start..]);
        self.unread -= n as u64;
        // After one huge item, do not keep its window for the rest of the decode.
        if self.buf.capacity() > 4 * CHUNK && self.buf.len() < CHUNK {
            self.buf.shrink_to(CHUNK);
        }
        Ok(())
    }

    /// Ends the decode: every byte must have been consumed. Returns the CRC-32 of them all.
    pub fn finish(self) -> Result<u32> {
        if self.remaining() != 0 {
            return Err(Truncated("trailing bytes"));
        }
        Ok(self.crc.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut w = Writer::default();
        for v in [0, 1, 127, 128, u64::from(u32::MAX), u64::MAX] {
            w.num(v);
        }
        w.bytes(b"abc");
        let mut r = Reader(&w.0);
        for v in [0, 1, 127, 128, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(r.num().unwrap(), v);
        }
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert!(r.byte().is_err());
        assert!(Reader(&[0xff; 11]).num().is_err());
        assert!(Reader(&[5, 1]).bytes().is_err());
        assert!(Reader(&[200, 1]).count(1).is_err());
    }

    #[test]
    fn chunked_items_span_reads_and_crc_covers_all() {
        let mut w = Writer::default();
        let big = vec![7u8; 3 * CHUNK + 5];
        for i in 0..1000u64 {
            w.num(i);
            w.bytes(if i == 500 { &big } else { b"abc" });
        }
        let mut c = Chunked::new(&w.0[..], w.0.len() as u64);
        for i in 0..1000u64 {
            let (n, b) = c.next(|r| Ok::<_, Truncated>((r.num()?, r.bytes()?.len()))).unwrap();
            assert_eq!((n, b), (i, if i == 500 { big.len() } else { 3 }));
        }
        assert_eq!(c.finish().unwrap(), crc32fast::hash(&w.0));
        // A truncated source fails, it does not loop; unconsumed bytes fail `finish`.
        let mut c = Chunked::new(&w.0[..10], 20);
        assert!(c.next(|r| Ok::<_, Truncated>(r.take(15)?.len())).is_err());
        let mut c = Chunked::new(&w.0[..], w.0.len() as u64);
        c.next(|r| r.num()).unwrap();
        assert!(c.finish().is_err());
        // Counts are bounded by what remains of the whole source, not of the window.
        let mut w = Writer::default();
        w.num(10);
        let mut c = Chunked::new(&w.0[..], w.0.len() as u64);
        assert!(c.count(1).is_err());
    }
}
