//! Layers: one streaming pass turns a layer blob into a [`LayerIndex`] (its tar members with
//! offsets in the uncompressed stream, plus gzip access points or zstd frames), verifying the
//! compressed digest and the diff_id on the way. A file's bytes are later decompressed only
//! when read, from the nearest access point.
//!
//! Indexes are cached on disk by layer digest, and a [`LayerStore`] builds each layer of a
//! mount at most once, however many images share it, on up to all cores in parallel.

mod build;
pub mod entries;
pub mod file;
pub mod format;
mod hash_thread;

use crate::blob::chunk_cache::{CacheConfig, ChunkCache};
use crate::blob::verified::{ChunkDigests, VerifiedBlob};
use crate::blob::{gzip, zstd, ReadAt};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::image::ImageSet;
use crate::progress::{LayerState, Progress};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub use build::build_index;

/// Output spacing of gzip access points in layers (~1 MiB: a random read inflates 0.5 MiB on
/// average; the index holds one compressed 32 KiB window per point).
pub const GZIP_SPACING: u64 = 1 << 20;

/// Decompressed chunks kept for re-reads, shared by every layer of a mount (one budget, however
/// many layers the image has).
pub const CHUNK_CACHE_BYTES: usize = 64 << 20;

/// Why a layer cannot be served. Logged once; reads of files in it then fail with EIO.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The compressed bytes do not hash to the layer's digest.
    #[error("layer {digest}: bytes hash to {actual}, not to the layer's digest")]
    DigestMismatch { digest: Digest, actual: Digest },
    /// The uncompressed bytes do not hash to the config's diff_id.
    #[error("layer {digest}: uncompressed bytes hash to {actual}, the config's diff_id is {expected}")]
    DiffIdMismatch {
        digest: Digest,
        expected: String,
        actual: Digest,
    },
    /// The compressed stream is broken.
    #[error("layer {digest}: cannot decompress: {reason}")]
    Decompress { digest: Digest, reason: String },
    /// The tar stream is broken.
    #[error("layer {digest}: not a readable tar stream: {reason}")]
    Tar { digest: Digest, reason: String },
    /// Reading the blob failed (the registry went away, the source file changed, ...).
    #[error("layer {digest}: read error: {source}")]
    Io {
        digest: Digest,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The layer is not in the source (foreign layer).
    #[error("layer {digest} is not in the source")]
    Absent { digest: Digest },
}

impl LayerError {
    /// True when building the layer again later may succeed: its blob could not be read for a
    /// transient reason (`blob::is_transient`). Wrong bytes and broken streams are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            LayerError::Io { source, .. } => crate::blob::is_transient(source),
            _ => false,
        }
    }
}

/// How a layer's bytes are compressed, detected from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar, read in place.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

/// Where decompression may restart.
pub enum SeekIndex {
    /// Uncompressed: offsets are blob offsets.
    None,
    /// gzip access points.
    Gzip(Arc<gzip::GzipIndex>),
    /// zstd frames.
    Zstd(Arc<zstd::ZstdIndex>),
}

/// Everything known about a layer after its one pass.
pub struct LayerIndex {
    /// Tar members in archive order.
    pub entries: entries::Entries,
    /// How to seek in the decompressed stream.
    pub seek: SeekIndex,
    /// Uncompressed digest (the diff_id).
    pub diff_id: Digest,
    /// The layer's digest (of the blob as stored).
    pub digest: Digest,
    /// Digests of the blob's chunks, recorded by the pass that verified `digest`: every read
    /// of the blob is checked against them (`blob::verified`).
    pub chunks: Arc<ChunkDigests>,
}

/// An indexed layer, ready to read files from.
pub struct Layer {
    /// The index.
    pub index: Arc<LayerIndex>,
    /// The uncompressed tar stream, randomly readable.
    pub stream: Arc<dyn ReadAt>,
}

impl Layer {
    /// `bound`: the blob is the very file the index was built from, unchanged since (its
    /// [`ReadAt::identity`] is the one recorded then), so the index pass's digest check covers
    /// its bytes. Any other blob is checked against the index's chunk digests the first time
    /// each byte is read (the cache vouches only for bytes it checked).
    fn open(
        blob: Arc<dyn ReadAt>,
        index: Arc<LayerIndex>,
        chunks: &Arc<ChunkCache>,
        bound: bool,
    ) -> std::io::Result<Layer> {
        let blob: Arc<dyn ReadAt> = if bound {
            blob
        } else {
            Arc::new(VerifiedBlob::new(blob, index.chunks.clone(), index.digest.clone())?)
        };
        let config = CacheConfig::default();
        let stream: Arc<dyn ReadAt> = match &index.seek {
            SeekIndex::None => blob,
            SeekIndex::Gzip(g) => Arc::new(gzip::GzipReader::with_shared_cache(
                blob,
                g.clone(),
                config,
                chunks.clone(),
            )?),
            SeekIndex::Zstd(z) => {
                let config = CacheConfig {
                    max_decoders: zstd::DEFAULT_MAX_DECODERS,
                    ..config
                };
                Arc::new(zstd::ZstdReader::with_shared_cache(
                    blob,
                    z.clone(),
                    config,
                    chunks.clone(),
                )?)
            }
        };
        Ok(Layer { index, stream })
    }
}

/// The name of a layer's index in the cache (`layer-<key>`).
fn cache_key(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().name(), digest.hex())
}

/// The cache file of layer `digest`'s index.
pub fn cache_file(digest: &Digest) -> String {
    crate::cache::file_name("layer", &cache_key(digest))
}

/// The chunk digests of the cached index of layer `digest`, a blob of `blob_len` bytes, if the
/// cache has an intact one (`blobs/` reads check the layer's chunks with them).
pub fn cached_chunk_digests(cache: &Cache, digest: &Digest, blob_len: u64) -> Option<ChunkDigests> {
    let (map, payload) = cache.map("layer", &cache_key(digest))?;
    format::decode_chunks(map.get(payload)?, blob_len, digest).ok()
}

/// True when the cache holds an intact index of layer `digest` (a blob of `blob_len` bytes).
pub fn has_cached_index(cache: &Cache, digest: &Digest, blob_len: u64) -> bool {
    cached_chunk_digests(cache, digest, blob_len).is_some()
}

/// The uncompressed length of layer `digest` (a blob of `blob_len` bytes) from its cached index,
/// if the cache has one: exact for every compression, without reading the layer.
pub fn cached_stream_len(cache: &Cache, digest: &Digest, blob_len: u64) -> Option<u64> {
    let (map, payload) = cache.map("layer", &cache_key(digest))?;
    format::decode_stream_len(map.get(payload)?, blob_len, digest).ok()
}

/// Installs `payload`, an encoded index of layer `digest` that the caller decoded and checked
/// ([`format::decode`]), as the layer's cache file: atomically, the file the index pass would
/// have written (`crate::published`).
pub fn store_index(cache: &Cache, digest: &Digest, payload: &[u8]) {
    cache.store("layer", &cache_key(digest), payload);
}

/// True when `index` is a zstd index with a frame large enough for checkpoints but none
/// ([`crate::blob::zstd::ZstdIndex::lacks_checkpoints`]).
pub fn lacks_checkpoints(index: &LayerIndex) -> bool {
    matches!(&index.seek, SeekIndex::Zstd(z) if z.lacks_checkpoints())
}

type Slot = Arc<OnceLock<Result<Arc<Layer>, LayerError>>>;

/// The layers of one mount, each indexed at most once.
pub struct LayerStore {
    set: Arc<ImageSet>,
    cache: Cache,
    slots: Mutex<HashMap<Digest, Slot>>,
    chunks: Arc<ChunkCache>,
    on_verified: Box<dyn Fn(&Digest) + Send + Sync>,
    progress: Arc<Progress>,
    /// Record checkpoints inside large zstd frames (`-o zstd_checkpoints`; set before the first
    /// layer is asked for).
    zstd_checkpoints: std::sync::atomic::AtomicBool,
    /// `--published-index`: never download a registry layer only to add checkpoints to an index
    /// the cache has (set before the first layer is asked for).
    keep_remote_indexes: std::sync::atomic::AtomicBool,
}

impl LayerStore {
    /// A store reading blobs of `set`; `on_verified` hears of every layer whose whole blob was
    /// hashed (and checked out) by an index pass of this mount.
    pub fn new(set: Arc<ImageSet>, cache: Cache, on_verified: Box<dyn Fn(&Digest) + Send + Sync>) -> LayerStore {
        LayerStore {
            set,
            cache,
            slots: Mutex::new(HashMap::new()),
            chunks: ChunkCache::new(CHUNK_CACHE_BYTES),
            on_verified,
            progress: Arc::default(),
            zstd_checkpoints: Default::default(),
            keep_remote_indexes: Default::default(),
        }
    }

    /// Index zstd layers with checkpoints inside their large frames (fast random reads in
    /// single-frame layers, at the price of a much slower index pass: docs/status.md, issue 20).
    /// A cached index without them is built again.
    pub fn set_zstd_checkpoints(&self, on: bool) {
        self.zstd_checkpoints.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Use the cached index of a registry layer as is when it lacks the checkpoints
    /// [`Self::set_zstd_checkpoints`] asks for (`--published-index`, whose point is not to
    /// download layers: adding checkpoints means downloading and decoding the whole layer).
    /// Layers read from local files are still indexed again.
    pub fn set_keep_remote_indexes(&self, on: bool) {
        self.keep_remote_indexes.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// What each layer is doing (`imgfs status`). Every layer of the source is listed, those
    /// not asked for yet as "not needed".
    pub fn progress(&self) -> Arc<Progress> {
        for (d, b) in &self.set.blobs {
            if b.role == crate::image::BlobRole::Layer {
                self.progress.layer(d, b.data.len());
            }
        }
        self.progress.clone()
    }

    /// Forgets the failure of layer `digest` if it was transient (its blob could not be read:
    /// the registry was down), so the next [`Self::get`] builds it again. Permanent failures
    /// stay. The caller paces the retries.
    pub fn forget_transient_failure(&self, digest: &Digest) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(digest) {
            if matches!(slot.get(), Some(Err(e)) if e.is_transient()) {
                slots.remove(digest);
            }
        }
    }

    /// The index cache this store uses.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The layer with this digest, indexing it (or loading its cached index) on first use.
    /// Concurrent callers for the same layer wait for one build.
    pub fn get(&self, digest: &Digest, diff_id: Option<&str>) -> Result<Arc<Layer>, LayerError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(digest.clone()).or_default().clone()
        };
        slot.get_or_init(|| {
            let r = self.load(digest, diff_id);
            if let Err(e) = &r {
                log::error!("{e}");
                let total = self.set.blobs.get(digest).map_or(0, |b| b.data.len());
                self.progress.layer(digest, total).fail(e.to_string(), e.is_transient());
            }
            r
        })
        .clone()
    }

    /// Indexes all of `layers` ((digest, diff_id) pairs), several at once.
    pub fn get_all(&self, layers: &[(Digest, Option<String>)]) -> Result<Vec<Arc<Layer>>, LayerError> {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(layers.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 1..workers {
                s.spawn(|| self.work(layers, &next));
            }
            self.work(layers, &next);
        });
        layers.iter().map(|(d, id)| self.get(d, id.as_deref())).collect()
    }

    fn work(&self, layers: &[(Digest, Option<String>)], next: &std::sync::atomic::AtomicUsize) {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((d, id)) = layers.get(i) else { return };
            let _ = self.get(d, id.as_deref());
        }
    }

    fn load(&self, digest: &Digest, diff_id: Option<&str>) -> Result<Arc<Layer>, LayerError> {
        let blob = self
            .set
            .blobs
            .get(digest)
            .map(|b| b.data.clone())
            .ok_or_else(|| LayerError::Absent { digest: digest.clone() })?;
        let key = cache_key(digest);
        let started = std::time::Instant::now();
        let progress = self.progress.layer(digest, blob.len());
        let cached = self.cache.map("layer", &key).and_then(|(map, payload)| {
            match format::decode_mapped(map, payload, blob.len()) {
                Ok(index) if &index.digest == digest => Some(index),
                Ok(index) => {
                    log::warn!(
                        "cached index of layer {digest} describes layer {}; rebuilding",
                        index.digest
                    );
                    None
                }
                Err(e) => {
                    log::warn!("cached index of layer {digest} is unusable ({e}); rebuilding");
                    None
                }
            }
        });
        let checkpoints = self.zstd_checkpoints.load(std::sync::atomic::Ordering::Relaxed);
        let keep = self.keep_remote_indexes.load(std::sync::atomic::Ordering::Relaxed) && blob.verifies_itself();
        // Asked for checkpoints, the cache has an index without them: build it again, unless
        // that would download a registry layer the user asked not to download.
        let cached = cached.filter(|index| {
            if !checkpoints || !lacks_checkpoints(index) {
                return true;
            }
            if keep {
                log::info!(
                    "layer {digest}: its index has no zstd checkpoints; used as is (--published-index: \
                     adding them would download the layer), so a read decodes its frame from the start"
                );
            } else {
                log::info!("layer {digest}: its cached index has no zstd checkpoints; indexing it again with them");
            }
            keep
        });
        let (index, bound) = match cached {
            Some(index) => {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                let checkpoints = match &index.seek {
                    SeekIndex::Zstd(z) => format!(", {} zstd checkpoints", z.checkpoints().len()),
                    _ => String::new(),
                };
                log::info!(
                    "layer {digest}: index of {} entries loaded from the cache in {ms:.1} ms{checkpoints}",
                    index.entries.len()
                );
                // Bound to this very file: no chunk needs hashing again (docs/index-format.md).
                let bound = blob
                    .identity()
                    .is_some_and(|id| self.cache.load("source", &key).as_deref() == Some(id.as_bytes()));
                if bound {
                    log::info!("layer {digest}: index bound to the file it was built from (unchanged): its chunks are not hashed again");
                }
                (index, bound)
            }
            None => {
                // A registry blob is fetched as it is indexed: one pass, shown as downloading.
                progress.set(if blob.verifies_itself() {
                    LayerState::Downloading
                } else {
                    LayerState::Indexing
                });
                let identity = blob.identity();
                let index = build_index(
                    &progress.counting(blob.as_ref()),
                    digest,
                    diff_id,
                    GZIP_SPACING,
                    checkpoints,
                    checkpoints.then(|| self.cache.spill()).flatten(),
                )?;
                self.cache
                    .store_with("layer", &key, |w| format::encode_to(&index, blob.len(), w));
                // Served from the file just written, as a warm mount would be: members and
                // zstd sparse windows in the page cache instead of this process's memory
                // (tens of MB for a large zstd layer with checkpoints).
                let index = self
                    .cache
                    .map("layer", &key)
                    .and_then(|(map, payload)| format::decode_mapped(map, payload, blob.len()).ok())
                    .filter(|m| m.digest == index.digest && m.diff_id == index.diff_id)
                    .unwrap_or(index);
                // This pass hashed the whole blob; a cached index vouches for no byte of it.
                (self.on_verified)(digest);
                // Record which file the index was built from, if it was one file that did not
                // change while it was read: a later mount of that file trusts the index's check.
                let bound = identity.is_some() && blob.identity() == identity;
                if let (true, Some(id)) = (bound, identity) {
                    self.cache.store("source", &key, id.as_bytes());
                }
                (index, bound)
            }
        };
        let layer = Layer::open(blob, Arc::new(index), &self.chunks, bound).map_err(|e| LayerError::Io {
            digest: digest.clone(),
            source: Arc::new(e),
        })?;
        progress.set(LayerState::Ready);
        Ok(Arc::new(layer))
    }
}
