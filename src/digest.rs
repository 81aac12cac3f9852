//! Content addresses. A [`Digest`] is validated when it is parsed, so it is safe to turn into a path
//! (`blobs/<algorithm>/<hex>`) and to compare against bytes we hash.

use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;
use std::str::FromStr;

/// The hash algorithms image-spec registers; both are verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// `sha256`, 64 lowercase hex digits.
    Sha256,
    /// `sha512`, 128 lowercase hex digits.
    Sha512,
}

impl Algorithm {
    /// The name used in digests and in `blobs/<name>/`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated `algorithm:hex` content address.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    alg: Algorithm,
    hex: Box<str>,
}

/// Why a string is not a digest we can verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {text:?}: {reason}")]
pub struct DigestError {
    /// The offending text, truncated for messages.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Digest {
    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest {
            alg: Algorithm::Sha256,
            hex: hex(&Sha256::digest(bytes)).into(),
        }
    }
    /// A sha256 digest from its 32 raw bytes (as the gzip/zstd index builders compute it).
    pub fn sha256_from_raw(raw: [u8; 32]) -> Digest {
        Digest {
            alg: Algorithm::Sha256,
            hex: hex(&raw).into(),
        }
    }

    /// The digest of `bytes` under this digest's algorithm.
    pub fn same_alg_of(&self, bytes: &[u8]) -> Digest {
        self.hasher().finish_with(bytes)
    }
    /// A streaming hasher of this digest's algorithm.
    pub fn hasher(&self) -> Hasher {
        Hasher::new(self.alg)
    }
    /// Parses the hex of a file name under `blobs/sha256/` (e.g. a docker save `blobs/sha256/<hex>`).
    pub fn from_parts(alg: &str, hex: &str) -> Result<Digest, DigestError> {
        format!("{alg}:{hex}").parse()
    }
}

/// Streaming sha256/sha512.
#[derive(Clone)]
pub enum Hasher {
    /// sha256 state.
    Sha256(Sha256),
    /// sha512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher for `alg`.
    pub fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                alg: Algorithm::Sha256,
                hex: hex(&h.finalize()).into(),
            },
            Hasher::Sha512(h) => Digest {
                alg: Algorithm::Sha512,
                hex: hex(&h.finalize()).into(),
            },
        }
    }
    fn finish_with(mut self, bytes: &[u8]) -> Digest {
        self.update(bytes);
        self.finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let err = |reason| DigestError {
            text: s.chars().take(140).collect(),
            reason,
        };
        let (alg, hex) = s.split_once(':').ok_or_else(|| err("no ':'"))?;
        let alg = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(err("unsupported algorithm (sha256 and sha512 are verified)")),
        };
        if hex.len() != alg.hex_len() {
            return Err(err("wrong length"));
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(err("not lowercase hex"));
        }
        Ok(Digest { alg, hex: hex.into() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let good = format!("sha256:{}", "a".repeat(64));
        let cases: &[(&str, bool)] = &[
            (&good, true),
            ("sha256:abc", false),
            (&format!("sha256:{}", "A".repeat(64)), false),
            (&format!("sha256:{}/../x", "a".repeat(57)), false),
            (&format!("md5:{}", "a".repeat(32)), false),
            ("sha256", false),
            (&format!("sha512:{}", "0".repeat(128)), true),
        ];
        for (text, ok) in cases {
            assert_eq!(text.parse::<Digest>().is_ok(), *ok, "{text}");
        }
    }

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            Digest::sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
