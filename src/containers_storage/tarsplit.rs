//! tar-split data of a layer (`overlay-layers/<id>.tar-split.gz`), synthesized from its index.
//!
//! containers/storage rebuilds a layer's original tar (for `podman save` and `push`) from this
//! file and the files of the layer's `diff/` directory: it is gzip'd JSON lines of *segments*
//! (raw bytes of the tar: headers, padding, the end blocks) and *file entries* (a name, a size
//! and the CRC-64/ISO of the content, which is read back from `diff/<name>`), in archive order;
//! concatenated they are the tar, byte for byte, so its digest is the diff_id again. Here every
//! byte of the uncompressed layer that is not the content of a regular file shown under its own
//! name goes into segments, so members the index does not show (or shows under another name)
//! still come back exactly. A sparse member is refused: its stored bytes are not the file's.

use crate::blob::ReadAt;
use crate::layer::entries::Entries;
use crate::tarindex::EntryKind;
use base64::Engine;
use std::collections::HashMap;
use std::io::Write;

/// Why a layer's tar-split cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarSplitError {
    /// The uncompressed layer cannot be read.
    #[error("reading the layer: {0}")]
    Read(#[from] std::io::Error),
    /// The members are not in archive order, or run past the end of the layer.
    #[error("member {0} is out of order or past the end of the layer")]
    Order(String),
    /// A sparse member: its stored bytes are not the file's bytes.
    #[error("sparse member {0}: containers/storage cannot rebuild it from the file")]
    Sparse(String),
}

/// Bytes read from the layer at once.
const CHUNK: usize = 1 << 20;

/// The gzip'd tar-split JSON of the layer whose members are `entries` and whose uncompressed tar
/// is `tar`.
pub fn generate(entries: &Entries, tar: &dyn ReadAt) -> Result<Vec<u8>, TarSplitError> {
    let mut out = Packer {
        gz: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
        position: 0,
    };
    // A path the layer holds twice shows its last member's bytes in diff/.
    let key = |p: &[u8]| p.strip_suffix(b"/").unwrap_or(p).to_vec();
    let mut last: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..entries.len() {
        if let Some(m) = entries.meta(i) {
            last.insert(key(m.path), i);
        }
    }
    let mut at = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for i in 0..entries.len() {
        let Some(m) = entries.meta(i) else { continue };
        let name = || String::from_utf8_lossy(m.path).into_owned();
        if m.sparse.is_some() {
            return Err(TarSplitError::Sparse(name()));
        }
        let end = m.data_offset.checked_add(m.stored_size).filter(|e| *e <= tar.len());
        let Some(end) = end.filter(|_| m.data_offset >= at) else {
            return Err(TarSplitError::Order(name()));
        };
        let regular = m.kind == EntryKind::File || m.stored_size == 0;
        if !regular || last.get(&key(m.path)) != Some(&i) {
            // Left to the segments: its data is copied as raw bytes.
            continue;
        }
        out.segment(tar, at, m.data_offset, &mut buf)?;
        let mut crc = Crc64::new();
        let mut pos = m.data_offset;
        while pos < end {
            let n = ((end - pos) as usize).min(CHUNK);
            crate::blob::read_exact_at(tar, &mut buf[..n], pos)?;
            crc.update(&buf[..n]);
            pos += n as u64;
        }
        out.file(m.path, m.stored_size, (m.stored_size > 0).then(|| crc.sum()))?;
        at = end;
    }
    out.segment(tar, at, tar.len(), &mut buf)?;
    Ok(out.gz.finish()?)
}

/// Writes entries as tar-split's JSON packer does (one object per line, positions counted).
struct Packer {
    gz: flate2::write::GzEncoder<Vec<u8>>,
    position: u64,
}

impl Packer {
    /// `[from, to)` of the tar as segments of at most [`CHUNK`] bytes.
    fn segment(&mut self, tar: &dyn ReadAt, mut from: u64, to: u64, buf: &mut [u8]) -> std::io::Result<()> {
        while from < to {
            let n = ((to - from) as usize).min(buf.len());
            crate::blob::read_exact_at(tar, &mut buf[..n], from)?;
            let payload = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
            writeln!(
                self.gz,
                r#"{{"type":2,"payload":"{payload}","position":{}}}"#,
                self.position
            )?;
            self.position += 1;
            from += n as u64;
        }
        Ok(())
    }

    fn file(&mut self, path: &[u8], size: u64, crc: Option<[u8; 8]>) -> std::io::Result<()> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let name = match std::str::from_utf8(path) {
            // A JSON string of a str cannot fail to serialize.
            Ok(s) => format!(r#""name":{}"#, serde_json::to_string(s).unwrap_or_default()),
            Err(_) => format!(r#""name_raw":"{}""#, b64(path)),
        };
        let size = if size > 0 {
            format!(r#","size":{size}"#)
        } else {
            String::new()
        };
        let payload = match crc {
            Some(c) => format!("\"{}\"", b64(&c)),
            None => "null".to_owned(),
        };
        writeln!(
            self.gz,
            r#"{{"type":1,{name}{size},"payload":{payload},"position":{}}}"#,
            self.position
        )?;
        self.position += 1;
        Ok(())
    }
}

/// CRC-64 with the ISO polynomial, as Go's `hash/crc64` computes it (what tar-split stores).
struct Crc64(u64);

impl Crc64 {
    const POLY: u64 = 0xD800_0000_0000_0000;

    fn new() -> Self {
        Crc64(0)
    }

    fn table() -> &'static [u64; 256] {
        static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let mut t = [0u64; 256];
            for (i, slot) in t.iter_mut().enumerate() {
                let mut c = i as u64;
                for _ in 0..8 {
                    c = if c & 1 == 1 { (c >> 1) ^ Self::POLY } else { c >> 1 };
                }
                *slot = c;
            }
            t
        })
    }

    fn update(&mut self, data: &[u8]) {
        let t = Self::table();
        let mut c = !self.0;
        for &b in data {
            c = t[((c as u8) ^ b) as usize] ^ (c >> 8);
        }
        self.0 = !c;
    }

    /// Big-endian, as Go's `Sum(nil)`.
    fn sum(&self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_iso_matches_go() {
        // The catalogued check value of CRC-64/GO-ISO.
        let mut c = Crc64::new();
        c.update(b"123456789");
        assert_eq!(c.0, 0xb909_56c7_75a4_1001);
    }
}
