//! Little helpers to write and read the cache encodings: LEB128 varints and length-prefixed
//! byte strings. Reading trusts nothing: every length and count is bounded by the bytes left.

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Truncated(pub &'static str);

/// Result alias.
pub type Result<T> = std::result::Result<T, Truncated>;

/// An output buffer.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Appends a varint.
    #[inline]
    pub fn num(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// Appends a length-prefixed byte string.
    #[inline]
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
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(Truncated("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// One byte.
    #[inline]
    pub fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A varint. (Indexing the slice directly: cache loads decode millions of these.)
    #[inline]
    pub fn num(&mut self) -> Result<u64> {
        let bytes = self.0;
        let mut v = 0u64;
        for (i, &b) in bytes.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &bytes[i + 1..];
                return Ok(v);
            }
        }
        Err(Truncated(if bytes.len() < 10 { "truncated" } else { "bad varint" }))
    }

    /// A varint that must fit a u32.
    #[inline]
    pub fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.num()?).map_err(|_| Truncated("number too large"))
    }

    /// A count of items each at least `min_bytes` long: never more than the bytes left allow.
    #[inline]
    pub fn count(&mut self, min_bytes: usize) -> Result<usize> {
        let n = self.num()?;
        if n > (self.0.len() / min_bytes.max(1)) as u64 {
            return Err(Truncated("count exceeds data"));
        }
        Ok(n as usize)
    }

    /// A length-prefixed byte string.
    #[inline]
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.num()?).map_err(|_| Truncated("length too large"))?;
        self.take(n)
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
}
