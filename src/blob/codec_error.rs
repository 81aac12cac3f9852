//! The one error type of the indexed codecs (`gzip/`, `zstd.rs`): reading, a corrupt stream,
//! a failed consumer, and an encoded index (from the cache) that does not decode. Both codecs
//! fail in the same ways, so they share the type and say which codec in the message.

use std::fmt;
use std::io;

/// Which codec an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip (DEFLATE members).
    Gzip,
    /// zstd (frames).
    Zstd,
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        })
    }
}

/// Errors of indexing a compressed stream and of decoding an index.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Reading the compressed stream failed.
    #[error("reading compressed data: {0}")]
    Io(#[from] io::Error),
    /// The compressed stream is not valid; `offset` is where it was noticed.
    #[error("corrupt {codec} stream at compressed offset {offset}: {msg}")]
    Corrupt { codec: Codec, offset: u64, msg: String },
    /// The sink given to `build_index` failed.
    #[error("consumer of decompressed data failed: {0}")]
    Sink(#[source] io::Error),
    /// An encoded index is malformed.
    #[error("invalid {codec} index: {source}")]
    BadIndex { codec: Codec, source: IndexFormatError },
}

impl CodecError {
    /// A corrupt stream of `codec`, noticed at compressed `offset`.
    pub(crate) fn corrupt(codec: Codec, offset: u64, msg: impl Into<String>) -> CodecError {
        CodecError::Corrupt {
            codec,
            offset,
            msg: msg.into(),
        }
    }
}

impl From<CodecError> for io::Error {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Io(e) | CodecError::Sink(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// Why an encoded index (`IndexReader`, codec_io.rs) does not decode.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexFormatError {
    /// Shorter than its header and trailer.
    #[error("{0} bytes is too short for an index")]
    TooShort(usize),
    /// The sha256 trailer does not match.
    #[error("checksum mismatch (corrupt or truncated index)")]
    Checksum,
    /// Not this codec's index.
    #[error("bad magic")]
    Magic,
    /// Written by another version of imgfs.
    #[error("unsupported index version {found} (expected {expected})")]
    Version { found: u32, expected: u32 },
    /// A field runs past the end.
    #[error("truncated at byte {at} (wanted {wanted} more)")]
    Truncated { at: usize, wanted: usize },
    /// Bytes left after the last field.
    #[error("{0} unexpected bytes after the last field")]
    Trailing(usize),
    /// A field's value the codec refuses (a count, flags, an offset out of order), described.
    #[error("{0}")]
    Field(String),
}
