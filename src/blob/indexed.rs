//! One reader for every compressed blob that has an index: gzip with its access points, zstd with
//! its frame table. A codec says how to resume decoding from its index ([`StreamIndex::source`],
//! a [`Source`] of live decoders); this file holds what every codec's reader shares: the check that
//! the blob is the one the index was built from, construction with a private or a shared chunk
//! cache, and [`ReadAt`] over the decompressed bytes.

use super::chunk_cache::{CacheConfig, ChunkCache, ChunkedReader, ReaderStats, Source};
use super::ReadAt;
use std::io;
use std::sync::Arc;

/// An index of a compressed stream that a reader can resume decoding from.
pub trait StreamIndex: Send + Sync + Sized + 'static {
    /// The codec's name, for messages ("gzip", "zstd").
    const CODEC: &'static str;
    /// Decoders resumed from this index over the compressed blob.
    type Source: Source;
    /// Length of the compressed stream the index was built from.
    fn compressed_len(&self) -> u64;
    /// Length of the decompressed data.
    fn uncompressed_len(&self) -> u64;
    /// The decoder source over `blob`.
    fn source(blob: Arc<dyn ReadAt>, index: Arc<Self>) -> Self::Source;
    /// The cache and pool sizes of [`IndexedReader::new`].
    fn default_config() -> CacheConfig {
        CacheConfig::default()
    }
}

/// Random access to the decompressed bytes of a blob through its index, with a chunk LRU and a
/// pool of live decoders (`chunk_cache.rs`).
pub struct IndexedReader<I: StreamIndex> {
    inner: Arc<ChunkedReader<I::Source>>,
    index: Arc<I>,
}

impl<I: StreamIndex> IndexedReader<I> {
    /// A reader with the codec's default [`CacheConfig`].
    pub fn new(compressed: Arc<dyn ReadAt>, index: Arc<I>) -> io::Result<Self> {
        Self::build(compressed, index, I::default_config(), None)
    }

    /// A reader with explicit cache and pool sizes. Fails if `compressed` is not the length the
    /// index was built from.
    pub fn with_config(compressed: Arc<dyn ReadAt>, index: Arc<I>, config: CacheConfig) -> io::Result<Self> {
        Self::build(compressed, index, config, None)
    }

    /// A reader whose chunks live in `cache`, shared with other readers (one budget for a whole
    /// mount); `config.cache_bytes` is ignored.
    pub fn with_shared_cache(
        compressed: Arc<dyn ReadAt>,
        index: Arc<I>,
        config: CacheConfig,
        cache: Arc<ChunkCache>,
    ) -> io::Result<Self> {
        Self::build(compressed, index, config, Some(cache))
    }

    fn build(
        compressed: Arc<dyn ReadAt>,
        index: Arc<I>,
        config: CacheConfig,
        cache: Option<Arc<ChunkCache>>,
    ) -> io::Result<Self> {
        if compressed.len() != index.compressed_len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} blob is {} bytes but its index was built from {} bytes",
                    I::CODEC,
                    compressed.len(),
                    index.compressed_len()
                ),
            ));
        }
        let source = I::source(compressed, Arc::clone(&index));
        Ok(Self {
            inner: Arc::new(ChunkedReader::new(source, config, cache)),
            index,
        })
    }

    /// The index this reader uses.
    pub fn index(&self) -> &Arc<I> {
        &self.index
    }

    /// The cache configuration in force.
    pub fn config(&self) -> CacheConfig {
        self.inner.config()
    }

    /// Work done so far.
    pub fn stats(&self) -> ReaderStats {
        self.inner.stats()
    }
}

impl<I: StreamIndex> ReadAt for IndexedReader<I> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn read_ahead(&self, from: u64, to: u64) {
        self.inner.read_ahead(from, to)
    }
    fn len(&self) -> u64 {
        self.index.uncompressed_len()
    }
}
