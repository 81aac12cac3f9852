//! Random access into gzip streams through an index of access points (the "zran" technique).
//!
//! DEFLATE cannot be entered at an arbitrary byte: blocks start at *bit* positions, and every
//! block may copy from the previous 32 KiB of output. So an access point records all a fresh
//! raw inflater needs to resume mid-stream:
//!
//! - `out`: the uncompressed offset of the point;
//! - `inp`: the compressed offset of the first whole byte after the point, and `bits` (0..=7):
//!   how many high bits of the byte *before* `inp` still belong to the next block. Resuming
//!   primes the inflater with those bits (`inflatePrime`) and feeds it from `inp`;
//! - `window`: the output before `out` that the data after the point copies from (at most
//!   [`WINDOW_SIZE`] = 32 KiB), installed with `inflateSetDictionary`.
//!
//! Windows are kept small in two ways. They are *sparse*: only output within 32 KiB after a
//! point can reach into its window, so the builder walks the DEFLATE codes of that output
//! (module `refscan`), zeroes the window bytes nothing references and drops the unreferenced head;
//! it then inflates that stretch again with the sparse window and keeps the sparse window only
//! if the output is identical (the full window otherwise). And they are stored deflate-compressed.
//! Measured on 600 MiB of `/usr` (binaries, 2.1:1), 581 points at the default spacing
//! ([`DEFAULT_SPACING`], one point per MiB) take 1.1 MB, where full compressed windows took 9.6 MB.
//!
//! Points are taken at DEFLATE block boundaries, found by inflating with `Z_BLOCK` (inflate
//! stops after each block header/end and reports in `data_type` whether it sits at a block
//! boundary (128), whether the last block was seen (64), and the count of unused bits (0..7)).
//! The first boundary after every `spacing` bytes of output becomes a point, so points can be
//! no denser than the compressor's blocks (typically 16-100 KiB of output; zlib-ng/zlib-rs
//! level 1 writes blocks of about 1 MiB).
//!
//! Multi-member streams (pigz, bgzip, `cat a.gz b.gz`) are one uncompressed stream: members'
//! outputs are concatenated. A point at the start of a member's DEFLATE data needs no window
//! and no bits (`member_start`); point 0 is always such a point. Decoding crosses member
//! boundaries (trailer, next header, `inflateReset`). After the last member, zero bytes (padding
//! some tools add) are accepted; anything else is an error. [`build_index`] verifies every
//! member's CRC-32 and ISIZE; readers verify them for members they decode from the start.
//!
//! [`GzipReader`] serves [`ReadAt`] over the index with a chunk LRU and a pool of live
//! inflaters (see [`super::chunk_cache`]): sequential reads cost one pass, random reads at most
//! `spacing` bytes of inflate from the nearest point plus one chunk.

use std::io::{self, Read};
use std::sync::Arc;

use flate2::Crc;

use super::chunk_cache::{Decoder, Source};
use super::codec_io::{HashingReader, IndexReader, IndexWriter, Input, ReadAtSource, Trailer};
use super::ReadAt;
use zlib::{Inflater, Z_BLOCK, Z_NO_FLUSH};

/// Default distance between access points, in uncompressed bytes.
pub const DEFAULT_SPACING: u64 = 1 << 20;
/// DEFLATE's history window: the most output a back-reference can reach, in bytes.
pub const WINDOW_SIZE: usize = 32 << 10;
/// Compressed input buffered while indexing, in bytes.
const BUILD_INPUT_BYTES: usize = 256 << 10;
/// Output produced per inflate call while indexing (and handed to the sink), in bytes.
const BUILD_OUTPUT_BYTES: usize = 256 << 10;
/// Compressed input buffered by each live reader inflater, in bytes.
const READ_INPUT_BYTES: usize = 64 << 10;
/// zlib level used to compress stored windows (1 fastest .. 9 smallest).
const WINDOW_LEVEL: u32 = 6;
/// Compressed bytes collected after a point to make its window sparse, at most.
const MAX_PENDING_INPUT: usize = 1 << 20;
/// Inflate calls in a row that may make no progress before the stream is declared corrupt.
const MAX_STALLS: u32 = 4;
/// First bytes of an encoded [`GzipIndex`].
const INDEX_MAGIC: &[u8; 8] = b"IMGFSGZI";
/// Version of the encoding written by [`GzipIndex::to_bytes`].
const INDEX_VERSION: u32 = 1;
/// Smallest encoded access point (no window), in bytes; bounds the point count of an encoding.
const MIN_POINT_BYTES: usize = 8 + 8 + 1 + 1 + 4 + 4;
/// Flag bit of an encoded point: it starts a member.
const FLAG_MEMBER_START: u8 = 1;

const GZIP_ID1: u8 = 0x1f;
const GZIP_ID2: u8 = 0x8b;
const GZIP_CM_DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// This module's errors: the codecs' shared [`CodecError`](super::codec_error::CodecError).
pub use super::codec_error::CodecError as Error;

/// Result of this module's fallible functions.
pub type Result<T> = std::result::Result<T, Error>;

/// The module's error under a name that is unambiguous outside it.
pub type GzipError = Error;

fn corrupt(offset: u64, msg: impl Into<String>) -> Error {
    Error::corrupt(super::codec_error::Codec::Gzip, offset, msg)
}

fn bad_index(source: super::codec_error::IndexFormatError) -> Error {
    Error::BadIndex {
        codec: super::codec_error::Codec::Gzip,
        source,
    }
}

mod build;
mod index;
mod reader;
mod refscan;
mod stream;
#[cfg(test)]
mod tests;
mod zlib;

pub use build::build_index;
pub use index::{AccessPoint, GzipIndex};
pub use reader::GzipReader;
use stream::*;
