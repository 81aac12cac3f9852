//! PAX extended headers ('x' per file, 'g' global): record syntax and value decoding.
//!
//! A PAX header's data is a list of `"LEN KEY=VALUE\n"` records where LEN counts the whole
//! record, so values may contain '\n' and '='. We only decode the keys imgfs needs; everything
//! else (atime, ctime, uname, comments...) is ignored.

use super::entry::SparseChunk;

/// Why a PAX header's data is refused: its record syntax, a value, or (for global headers) its
/// size. The message is the reason only; [`super::TarError::BadPax`] says where.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaxError {
    /// The length prefix is not followed by a space within 20 bytes.
    #[error("record length not followed by a space")]
    NoSpace,
    /// The length prefix is not a decimal number.
    #[error("bad record length")]
    BadLength,
    /// The length does not fit in memory's address space.
    #[error("record length out of range")]
    LengthOutOfRange,
    /// The record claims more bytes than the header data has left.
    #[error("record length {len} runs past the header data ({left} bytes left)")]
    PastEnd { len: usize, left: usize },
    /// The record is too short to hold "k=\n".
    #[error("record length {len} too short")]
    TooShort { len: usize },
    /// The record's last byte is not '\n'.
    #[error("record does not end with a newline")]
    NoNewline,
    /// The record has no '='.
    #[error("record has no '='")]
    NoEquals,
    /// The key is empty or holds a NUL.
    #[error("empty or NUL-containing key")]
    BadKey,
    /// A path or linkpath value holds a NUL.
    #[error("NUL byte in path value")]
    NulInPath,
    /// A numeric value (`size`, `uid`, `gid`) is not a decimal number.
    #[error("bad {key} value")]
    BadNumber { key: &'static str },
    /// `mtime` is not a PAX time.
    #[error("bad mtime value")]
    BadMtime,
    /// A `LIBARCHIVE.xattr.*` value is not base64.
    #[error("bad base64 in LIBARCHIVE.xattr value")]
    BadBase64,
    /// A numeric `GNU.sparse.*` value is not a decimal number.
    #[error("bad GNU.sparse.{key}")]
    BadSparseNumber { key: &'static str },
    /// A second `GNU.sparse.offset` before the first one's numbytes.
    #[error("GNU.sparse.offset without numbytes")]
    OffsetWithoutNumbytes,
    /// `GNU.sparse.numbytes` with no offset before it.
    #[error("GNU.sparse.numbytes without offset")]
    NumbytesWithoutOffset,
    /// `GNU.sparse.map` holds something other than decimal numbers.
    #[error("bad number in GNU.sparse.map")]
    MapBadNumber,
    /// `GNU.sparse.map` ends with an offset without its length.
    #[error("odd count in GNU.sparse.map")]
    MapOddCount,
    /// Global headers together hold more path and xattr bytes than every entry may carry.
    #[error("global headers hold {stored} bytes of paths/xattrs, limit {limit}")]
    GlobalTooLarge { stored: usize, limit: usize },
}

/// A value mentioned in a PAX header. An empty value is not a value: POSIX says it deletes the
/// field, so a local `path=` hides a global `path` and falls back to the ustar header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val<T> {
    Set(T),
    Deleted,
}

/// Keys of one PAX header (or the accumulated global state). `None` means "not mentioned".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PaxValues {
    pub path: Option<Val<Vec<u8>>>,
    pub linkpath: Option<Val<Vec<u8>>>,
    pub size: Option<Val<u64>>,
    pub uid: Option<Val<u64>>,
    pub gid: Option<Val<u64>>,
    pub mtime: Option<Val<(i64, u32)>>,
    /// In record order, duplicates included; deduplicated when an entry is built.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `GNU.sparse.*` keys; only collected from per-file headers.
    pub sparse: Option<SparseKeys>,
}

/// `GNU.sparse.*` keys of the three PAX sparse formats (0.0, 0.1, 1.0).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SparseKeys {
    pub major: Option<u64>,
    pub minor: Option<u64>,
    pub name: Option<Vec<u8>>,
    /// `GNU.sparse.size` (0.x) or `GNU.sparse.realsize` (1.0).
    pub realsize: Option<u64>,
    pub numblocks: Option<u64>,
    /// 0.1: `GNU.sparse.map` as offset/length pairs.
    pub map: Option<Vec<SparseChunk>>,
    /// 0.0: repeated `GNU.sparse.offset` / `GNU.sparse.numbytes` pairs, in order.
    pub pairs: Vec<SparseChunk>,
    /// 0.0: an offset still waiting for its numbytes.
    pub pending_offset: Option<u64>,
}

impl PaxValues {
    /// Path/linkpath/xattr bytes held; bounds what a global header may make every entry carry.
    pub fn stored_bytes(&self) -> usize {
        let v = |x: &Option<Val<Vec<u8>>>| match x {
            Some(Val::Set(b)) => b.len(),
            _ => 0,
        };
        let x: usize = self.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
        v(&self.path) + v(&self.linkpath) + x
    }

    /// Applies every record of a PAX header's data. `global` headers replace earlier global
    /// values (an empty value removes one) and may not carry sparse keys.
    pub fn apply(&mut self, data: &[u8], global: bool) -> Result<(), PaxError> {
        for_each_record(data, |key, value| self.apply_record(key, value, global))
    }

    fn apply_record(&mut self, key: &[u8], value: &[u8], global: bool) -> Result<(), PaxError> {
        // A record key cannot contain '=', so both GNU tar and libarchive escape xattr names.
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            self.xattrs.push((unescape_schily(name), value.to_vec()));
            return Ok(());
        }
        if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
            let value = base64_decode(value).ok_or(PaxError::BadBase64)?;
            self.xattrs.push((percent_decode(name), value));
            return Ok(());
        }
        if let Some(sub) = key.strip_prefix(b"GNU.sparse.") {
            if global {
                log::debug!("ignoring GNU.sparse key in a global PAX header");
                return Ok(());
            }
            return self.sparse.get_or_insert_with(Default::default).apply(sub, value);
        }
        let del = value.is_empty();
        match key {
            b"path" => self.path = Some(bytes_val(value, del)?),
            b"linkpath" => self.linkpath = Some(bytes_val(value, del)?),
            b"size" => self.size = Some(num_val(value, del, "size")?),
            b"uid" => self.uid = Some(num_val(value, del, "uid")?),
            b"gid" => self.gid = Some(num_val(value, del, "gid")?),
            b"mtime" => {
                self.mtime = Some(match del {
                    true => Val::Deleted,
                    false => Val::Set(parse_time(value).ok_or(PaxError::BadMtime)?),
                })
            }
            _ => log::trace!("ignoring PAX key {}", String::from_utf8_lossy(key)),
        }
        Ok(())
    }

    /// Folds a global header into the accumulated global state: mentioned keys replace,
    /// deletions remove.
    pub fn merge_global(&mut self, new: PaxValues) {
        fn fold<T>(old: &mut Option<Val<T>>, new: Option<Val<T>>) {
            match new {
                Some(Val::Set(v)) => *old = Some(Val::Set(v)),
                Some(Val::Deleted) => *old = None,
                None => {}
            }
        }
        fold(&mut self.path, new.path);
        fold(&mut self.linkpath, new.linkpath);
        fold(&mut self.size, new.size);
        fold(&mut self.uid, new.uid);
        fold(&mut self.gid, new.gid);
        fold(&mut self.mtime, new.mtime);
        self.xattrs.extend(new.xattrs);
        self.xattrs = dedup_xattrs(std::mem::take(&mut self.xattrs));
    }
}

/// The effective value of a key: the per-file header wins (an empty value there deletes),
/// else the global value.
pub(crate) fn pick<T: Clone>(local: &Option<Val<T>>, global: &Option<Val<T>>) -> Option<T> {
    match (local, global) {
        (Some(Val::Set(v)), _) => Some(v.clone()),
        (Some(Val::Deleted), _) => None,
        (None, Some(Val::Set(v))) => Some(v.clone()),
        (None, _) => None,
    }
}

/// Keeps each name once, at its first position, with its last value.
pub(crate) fn dedup_xattrs(list: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    use std::collections::HashMap;
    let mut index: HashMap<Vec<u8>, usize> = HashMap::with_capacity(list.len());
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(list.len());
    for (name, value) in list {
        match index.get(&name) {
            Some(&i) => out[i].1 = value,
            None => {
                index.insert(name.clone(), out.len());
                out.push((name, value));
            }
        }
    }
    out
}

impl SparseKeys {
    fn apply(&mut self, sub: &[u8], value: &[u8]) -> Result<(), PaxError> {
        let num = |key: &'static str| parse_decimal(value).ok_or(PaxError::BadSparseNumber { key });
        match sub {
            b"major" => self.major = Some(num("major")?),
            b"minor" => self.minor = Some(num("minor")?),
            b"name" => self.name = Some(value.to_vec()),
            b"size" | b"realsize" => self.realsize = Some(num("realsize")?),
            b"numblocks" => self.numblocks = Some(num("numblocks")?),
            b"offset" => {
                if self.pending_offset.is_some() {
                    return Err(PaxError::OffsetWithoutNumbytes);
                }
                self.pending_offset = Some(num("offset")?);
            }
            b"numbytes" => {
                let offset = self.pending_offset.take().ok_or(PaxError::NumbytesWithoutOffset)?;
                self.pairs.push(SparseChunk {
                    offset,
                    len: num("numbytes")?,
                });
            }
            b"map" => self.map = Some(parse_map_list(value)?),
            _ => log::trace!("ignoring GNU.sparse.{}", String::from_utf8_lossy(sub)),
        }
        Ok(())
    }
}

/// Parses the 0.1 `GNU.sparse.map` value "off,len,off,len,...". An empty value is an empty map.
fn parse_map_list(value: &[u8]) -> Result<Vec<SparseChunk>, PaxError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let mut nums = value.split(|&b| b == b',').map(parse_decimal);
    let mut out = Vec::new();
    while let Some(offset) = nums.next() {
        let offset = offset.ok_or(PaxError::MapBadNumber)?;
        let len = nums.next().ok_or(PaxError::MapOddCount)?;
        let len = len.ok_or(PaxError::MapBadNumber)?;
        out.push(SparseChunk { offset, len });
    }
    Ok(out)
}

fn bytes_val(value: &[u8], del: bool) -> Result<Val<Vec<u8>>, PaxError> {
    if del {
        return Ok(Val::Deleted);
    }
    // A NUL cannot be part of a path; a value containing one is corrupt, not truncatable.
    if value.contains(&0) {
        return Err(PaxError::NulInPath);
    }
    Ok(Val::Set(value.to_vec()))
}

fn num_val(value: &[u8], del: bool, key: &'static str) -> Result<Val<u64>, PaxError> {
    match del {
        true => Ok(Val::Deleted),
        false => parse_decimal(value).map(Val::Set).ok_or(PaxError::BadNumber { key }),
    }
}

/// Calls `f(key, value)` for each record, validating the length prefix strictly. Trailing NUL
/// bytes after the last record are tolerated (some writers pad the data).
pub(crate) fn for_each_record(
    mut data: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), PaxError>,
) -> Result<(), PaxError> {
    while !data.is_empty() {
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let (key, value, rest) = split_record(data)?;
        f(key, value)?;
        data = rest;
    }
    Ok(())
}

/// A record's key and value, and the data after the record.
type Split<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits off the first record.
fn split_record(data: &[u8]) -> Result<Split<'_>, PaxError> {
    let space = data.iter().take(20).position(|&b| b == b' ').ok_or(PaxError::NoSpace)?;
    let len = parse_decimal(&data[..space]).ok_or(PaxError::BadLength)?;
    let len = usize::try_from(len).map_err(|_| PaxError::LengthOutOfRange)?;
    if len > data.len() {
        let left = data.len();
        return Err(PaxError::PastEnd { len, left });
    }
    // Shortest meaningful record after "LEN ": "k=\n".
    if len < space + 4 {
        return Err(PaxError::TooShort { len });
    }
    let (record, rest) = data.split_at(len);
    let body = record[space + 1..].strip_suffix(b"\n").ok_or(PaxError::NoNewline)?;
    let eq = body.iter().position(|&b| b == b'=').ok_or(PaxError::NoEquals)?;
    let (key, value) = (&body[..eq], &body[eq + 1..]);
    if key.is_empty() || key.contains(&0) {
        return Err(PaxError::BadKey);
    }
    Ok((key, value, rest))
}

/// Strict unsigned decimal: at least one digit, digits only, no overflow.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = u64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        acc.checked_mul(10)?.checked_add(d)
    })
}

/// PAX time "[-]SECS[.FRACTION]" as (seconds rounded down, nanoseconds). Fraction digits past
/// nanoseconds are truncated.
pub(crate) fn parse_time(s: &[u8]) -> Option<(i64, u32)> {
    let (neg, s) = match s.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &b""[..]),
    };
    let secs = i64::try_from(parse_decimal(secs)?).ok()?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nsec: u32 = 0;
    for i in 0..9 {
        let d = frac.get(i).map_or(0, |b| u32::from(b - b'0'));
        nsec = nsec * 10 + d;
    }
    match (neg, nsec) {
        (false, _) => Some((secs, nsec)),
        (true, 0) => Some((secs.checked_neg()?, 0)),
        (true, n) => Some((secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - n)),
    }
}

/// Decodes libarchive's xattr name encoding: "%XX" escapes (it escapes '%', '=' and
/// non-printable bytes). Like libarchive, a '%' not followed by two hex digits stays literal.
pub(crate) fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        let hex = match (s.get(i + 1), s.get(i + 2)) {
            (Some(&h), Some(&l)) if b == b'%' => hex_digit(h).zip(hex_digit(l)),
            _ => None,
        };
        match hex {
            Some((h, l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Decodes SCHILY.xattr names as GNU tar writes them: only "%3D" ('=') and "%25" ('%') are
/// escapes; libarchive's escaping of these two characters agrees.
pub(crate) fn unescape_schily(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match s.get(i..i + 3) {
            Some(b"%3D") => out.push(b'='),
            Some(b"%25") => out.push(b'%'),
            _ => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Standard base64 (RFC 4648 alphabet); libarchive omits the '=' padding, others keep it, so
/// padding is optional. Any other character is an error.
pub(crate) fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let body = match s.iter().position(|&b| b == b'=') {
        Some(p) if s[p..].iter().all(|&b| b == b'=') && s[p..].len() <= 2 => &s[..p],
        Some(_) => return None,
        None => s,
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for group in body.chunks(4) {
        let mut acc: u32 = 0;
        for &c in group {
            acc = acc << 6 | u32::from(base64_value(c)?);
        }
        // A group of n chars carries 6n bits, i.e. n-1 whole bytes; left-align them.
        let bytes = group.len() - 1;
        acc <<= 6 * (4 - group.len() as u32);
        let all = acc.to_be_bytes();
        out.extend_from_slice(&all[1..1 + bytes]);
    }
    Some(out)
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &str) -> Vec<u8> {
        // Length includes its own digits: grow until stable.
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}").len() + body.len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    #[test]
    fn record_helper_lengths() {
        assert_eq!(rec("a", "b"), b"6 a=b\n");
        assert_eq!(rec("path", "x".repeat(89).as_str()).len(), 98);
        assert_eq!(rec("path", "x".repeat(91).as_str()).len(), 101);
    }

    #[test]
    fn good_records() {
        type Records<'a> = &'a [(&'a [u8], &'a [u8])];
        let cases: &[(&[u8], Records)] = &[
            (b"", &[]),
            (b"6 a=b\n", &[(b"a", b"b")]),
            (b"5 a=\n", &[(b"a", b"")]),
            (b"11 k=v\nx=y\n", &[(b"k", b"v\nx=y")]),
            (b"8 k=a=b\n6 c=d\n", &[(b"k", b"a=b"), (b"c", b"d")]),
            (b"6 a=b\n\0\0\0", &[(b"a", b"b")]),
            (b"07 a=b\n", &[(b"a", b"b")]),
        ];
        for (data, want) in cases {
            let mut got = Vec::new();
            for_each_record(data, |k, v| {
                got.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{data:?}: {e}"));
            let want: Vec<_> = want.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            assert_eq!(got, want, "{data:?}");
        }
    }

    #[test]
    fn bad_records() {
        let cases: &[&[u8]] = &[
            b"7 a=b\n",                       // length past the end
            b"5 a=b\n",                       // length too short: record does not end in newline
            b"6 a=bX",                        // no newline
            b"6 ab\n\n",                      // no '='
            b"6 =bc\n",                       // empty key
            b"x a=b\n",                       // non-digit length
            b" 6 a=b\n",                      // leading space
            b"6a=b\n\n",                      // no space after length
            b"-6 a=b\n",                      // sign
            b"3 \n",                          // too short
            b"0 ",                            // zero length
            b"99999999999999999999999 a=b\n", // overflow
            b"6 a=b\nX",                      // trailing garbage
            b"6 a=b\n\x006 c=d\n",            // NUL between records
            b"6 \0=b\n",                      // NUL key
        ];
        for data in cases {
            let r = for_each_record(data, |_, _| Ok(()));
            assert!(r.is_err(), "{:?} should fail", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn values_and_deletion() {
        let mut g = PaxValues::default();
        let mut data = rec("path", "g/p");
        data.extend(rec("uid", "7"));
        data.extend(rec("SCHILY.xattr.user.a", "1"));
        g.apply(&data, true).unwrap();
        let mut gl = PaxValues::default();
        gl.merge_global(g);
        let mut l = PaxValues::default();
        let mut data = rec("path", "");
        data.extend(rec("gid", "9"));
        data.extend(rec("mtime", "-1.25"));
        data.extend(rec("SCHILY.xattr.user.a", "2"));
        data.extend(rec("LIBARCHIVE.xattr.user.b%3Dc", "aGk"));
        data.extend(rec("uname", "ignored"));
        l.apply(&data, false).unwrap();
        assert_eq!(pick(&l.path, &gl.path), None);
        assert_eq!(pick(&l.uid, &gl.uid), Some(7));
        assert_eq!(pick(&l.gid, &gl.gid), Some(9));
        assert_eq!(pick(&l.mtime, &gl.mtime), Some((-2, 750_000_000)));
        let mut x = gl.xattrs.clone();
        x.extend(l.xattrs.clone());
        let x = dedup_xattrs(x);
        assert_eq!(
            x,
            vec![
                (b"user.a".to_vec(), b"2".to_vec()),
                (b"user.b=c".to_vec(), b"hi".to_vec())
            ]
        );
        // A global deletion removes the global value.
        let mut g2 = PaxValues::default();
        g2.apply(&rec("uid", ""), true).unwrap();
        gl.merge_global(g2);
        assert_eq!(gl.uid, None);
    }

    #[test]
    fn bad_values() {
        for (k, v) in [
            ("size", "12a"),
            ("size", "-1"),
            ("size", "99999999999999999999999"),
            ("uid", "1.5"),
            ("mtime", "abc"),
            ("mtime", "1.2.3"),
            ("mtime", ".5"),
            ("path", "a\0b"),
            ("LIBARCHIVE.xattr.user.a", "a*Gk"),
            ("GNU.sparse.map", "1,2,3"),
            ("GNU.sparse.numbytes", "5"),
        ] {
            let mut p = PaxValues::default();
            assert!(p.apply(&rec(k, v), false).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn times() {
        let cases: &[(&str, Option<(i64, u32)>)] = &[
            ("0", Some((0, 0))),
            ("1700000000.123456789", Some((1_700_000_000, 123_456_789))),
            ("1700000000.1234567891234", Some((1_700_000_000, 123_456_789))),
            ("1700000000.5", Some((1_700_000_000, 500_000_000))),
            ("1700000000.", Some((1_700_000_000, 0))),
            ("-1", Some((-1, 0))),
            ("-1.5", Some((-2, 500_000_000))),
            ("-0.000000001", Some((-1, 999_999_999))),
            ("9223372036854775807", Some((i64::MAX, 0))),
            ("-9223372036854775807.5", Some((i64::MIN, 500_000_000))),
            ("-9223372036854775808", None),
            ("", None),
            ("-", None),
            ("1e5", None),
            ("+1", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_time(s.as_bytes()), *want, "{s}");
        }
    }

    #[test]
    fn base64() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("", Some(b"")),
            ("aGk", Some(b"hi")),
            ("aGk=", Some(b"hi")),
            ("aGVsbG8", Some(b"hello")),
            ("aGVsbG8=", Some(b"hello")),
            ("aGVsbA", Some(b"hell")),
            ("aGVsbA==", Some(b"hell")),
            ("/+8A", Some(&[0xff, 0xef, 0x00])),
            ("a", None),
            ("aGk==x", None),
            ("a=Gk", None),
            ("aG k", None),
        ];
        for (s, want) in cases {
            assert_eq!(base64_decode(s.as_bytes()).as_deref(), *want, "{s}");
        }
    }

    #[test]
    fn name_escapes() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            // input, libarchive decoding, GNU (SCHILY) decoding
            (b"user.a%3Db%25", b"user.a=b%", b"user.a=b%"),
            (b"x%0a%0A", b"x\n\n", b"x%0a%0A"),
            (b"x%3d", b"x=", b"x%3d"),
            (b"x%0", b"x%0", b"x%0"),
            (b"x%g0%", b"x%g0%", b"x%g0%"),
            (b"%253D", b"%3D", b"%3D"),
            (b"", b"", b""),
        ];
        for (input, lib, gnu) in cases {
            assert_eq!(percent_decode(input), *lib, "{input:?}");
            assert_eq!(unescape_schily(input), *gnu, "{input:?}");
        }
    }

    #[test]
    fn sparse_keys() {
        let mut p = PaxValues::default();
        let mut d = rec("GNU.sparse.size", "100");
        for (o, n) in [("0", "10"), ("50", "5")] {
            d.extend(rec("GNU.sparse.offset", o));
            d.extend(rec("GNU.sparse.numbytes", n));
        }
        d.extend(rec("GNU.sparse.map", "1,2,3,4"));
        p.apply(&d, false).unwrap();
        let s = p.sparse.unwrap();
        assert_eq!(s.realsize, Some(100));
        assert_eq!(
            s.pairs,
            vec![SparseChunk { offset: 0, len: 10 }, SparseChunk { offset: 50, len: 5 }]
        );
        assert_eq!(
            s.map,
            Some(vec![
                SparseChunk { offset: 1, len: 2 },
                SparseChunk { offset: 3, len: 4 }
            ])
        );
        let mut g = PaxValues::default();
        g.apply(&rec("GNU.sparse.size", "100"), true).unwrap();
        assert!(g.sparse.is_none());
    }
}
