//! A registry blob as a [`ReadAt`]: random reads become HTTP Range requests, a whole-blob
//! reader gets one streaming download into the cache, and no read that reaches the end
//! returns bytes unless the whole blob hashes to its digest.
//!
//! Three ways bytes arrive:
//! - **Blocks** (reads through `blobs/`, or a layer whose index is cached but whose bytes are
//!   not): the read's [`BLOCK`]-aligned block is fetched with one Range request and kept in a
//!   per-mount LRU, so 4 KiB FUSE reads do not each become a request. Blocks fetched in order
//!   from offset 0 are hashed as they come (`cat` of a blob verifies it without a second
//!   transfer).
//! - **Download** (after [`ReadAt::advise_sequential`], which the layer indexer sends, or when
//!   verification needs bytes that were not read in order): one stream into a temporary file
//!   in the cache directory, hashed as it arrives. Reads at or a little ahead of the downloaded
//!   part wait for it (that is how the indexer consumes the layer while it downloads); on
//!   success the file is renamed to `blob-<alg>-<hex>`, where every later read and mount finds
//!   it. Without a cache directory the file is unnamed and lives as long as the mount.
//! - **Cache file**: a complete `blob-<alg>-<hex>` of the right size, used as it is. It was
//!   hashed before it got that name; see docs/registry.md, "Caching".
//!
//! Reads of the last block wait until the whole blob is known good: by the in-order hash of
//! the blocks when it reached the end, else by a download. A mismatch fails every later read
//! (EIO) and is logged once; a failed download only fails the reads waiting for it.

use super::client::Client;
use super::RegistryError;
use crate::blob::{ClassifiedFailure, ReadAt};
use crate::digest::{Digest, Hasher};
use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Size of one Range request for random reads (aligned blocks).
pub const BLOCK: u64 = 1 << 20;
/// Blocks kept per mount, all blobs together (32 MiB).
pub const CACHED_BLOCKS: usize = 32;
/// A read this far ahead of a running download waits for it instead of asking for a range.
const FOLLOW_WINDOW: u64 = 16 << 20;

/// Blocks by (blob, block index).
type Blocks = lru::LruCache<(Digest, u64), Arc<Vec<u8>>>;

/// Recently fetched blocks of every remote blob of a mount.
pub struct BlockCache(Mutex<Blocks>);

impl BlockCache {
    /// An empty cache of [`CACHED_BLOCKS`] blocks.
    pub fn new() -> Arc<BlockCache> {
        let cap = NonZeroUsize::new(CACHED_BLOCKS).unwrap_or(NonZeroUsize::MIN);
        Arc::new(BlockCache(Mutex::new(lru::LruCache::new(cap))))
    }

    fn lock(&self) -> MutexGuard<'_, Blocks> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the whole blob stands.
enum Whole {
    /// Not downloaded as a whole.
    Absent,
    /// Downloading: bytes `[0, have)` are in `file`.
    Running { file: Arc<File>, have: u64 },
    /// All bytes local and verified.
    Complete(Arc<File>),
    /// The last download failed (the registry may come back: a later need starts another).
    Failed(Arc<RegistryError>),
    /// The bytes do not hash to the digest: every read fails.
    Bad(String),
}

/// In-order hashing of fetched blocks.
struct Sequential {
    hasher: Option<Hasher>,
    /// Bytes `[0, upto)` are hashed.
    upto: u64,
    verified: bool,
}

/// One blob of a registry repository.
pub struct RemoteBlob {
    client: Arc<Client>,
    digest: Digest,
    len: u64,
    /// `blob-<alg>-<hex>` in the cache directory, when caching is on.
    cache_path: Option<PathBuf>,
    whole: Mutex<Whole>,
    changed: Condvar,
    seq: Mutex<Sequential>,
    blocks: Arc<BlockCache>,
}

impl RemoteBlob {
    /// A blob of `len` bytes; uses the cached copy when `cache_dir` has a complete one.
    pub fn new(
        client: Arc<Client>,
        digest: Digest,
        len: u64,
        cache_dir: Option<&std::path::Path>,
        blocks: Arc<BlockCache>,
    ) -> Arc<RemoteBlob> {
        let cache_path = cache_dir.map(|d| d.join(cache_file_name(&digest)));
        let whole = match cache_path.as_deref().map(File::open) {
            Some(Ok(f)) if f.metadata().is_ok_and(|m| m.len() == len) => {
                log::debug!("blob {digest}: using the cached copy");
                // Its last use, for `imgfs cache prune`'s LRU order.
                crate::cache::mark_used(&f);
                Whole::Complete(Arc::new(f))
            }
            _ => Whole::Absent,
        };
        let hasher = Some(digest.hasher());
        Arc::new(RemoteBlob {
            client,
            digest,
            len,
            cache_path,
            whole: Mutex::new(whole),
            changed: Condvar::new(),
            seq: Mutex::new(Sequential {
                hasher,
                upto: 0,
                verified: false,
            }),
            blocks,
        })
    }

    /// A local failure to start a download (a full disk, no threads): may pass, so transient.
    fn local_failure(&self, what: &str, e: &dyn std::fmt::Display) -> RegistryError {
        RegistryError::Local {
            reference: self.client.name().to_owned(),
            what: format!("blob {}", self.digest),
            reason: format!("{what}: {e}"),
        }
    }

    fn state(&self) -> MutexGuard<'_, Whole> {
        self.whole.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a reader waits for a download that makes no progress before giving up (the
    /// download itself gives up after the client's budget; this is the backstop).
    fn wait_limit(&self) -> Duration {
        self.client.timeout() + Duration::from_secs(5)
    }

    /// Starts the download unless it runs or is done. Returns with the lock held.
    fn start_download<'a>(self: &'a Arc<Self>, mut w: MutexGuard<'a, Whole>) -> MutexGuard<'a, Whole> {
        if matches!(*w, Whole::Absent | Whole::Failed(_)) {
            match self.temp_file() {
                Ok((file, path)) => {
                    let file = Arc::new(file);
                    *w = Whole::Running {
                        file: file.clone(),
                        have: 0,
                    };
                    let this = self.clone();
                    let spawned = std::thread::Builder::new()
                        .name("imgfs-download".into())
                        .spawn(move || this.download(file, path));
                    if let Err(e) = spawned {
                        *w = Whole::Failed(Arc::new(self.local_failure("cannot start a download thread", &e)));
                    }
                }
                Err(e) => *w = Whole::Failed(Arc::new(self.local_failure("cannot create a download file", &e))),
            }
        }
        w
    }

    /// A file to download into: named in the cache directory (renamed when complete), or
    /// unnamed in the temporary directory without a cache.
    fn temp_file(&self) -> io::Result<(File, Option<PathBuf>)> {
        let unique = format!(".tmp-blob-{}-{}", std::process::id(), self.digest.hex());
        match &self.cache_path {
            Some(p) => {
                let dir = p.parent().unwrap_or(std::path::Path::new("."));
                std::fs::create_dir_all(dir)?;
                let tmp = dir.join(unique);
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)?;
                Ok((f, Some(tmp)))
            }
            None => {
                let tmp = std::env::temp_dir().join(unique);
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&tmp)?;
                std::fs::remove_file(&tmp)?;
                Ok((f, None))
            }
        }
    }

    /// The download thread: stream, hash, publish progress, verify, rename.
    fn download(self: Arc<Self>, file: Arc<File>, tmp: Option<PathBuf>) {
        let started = Instant::now();
        let mut hasher = self.digest.hasher();
        let mut pos = 0u64;
        let mut sink = |chunk: &[u8]| -> io::Result<()> {
            file.write_all_at(chunk, pos)?;
            hasher.update(chunk);
            pos += chunk.len() as u64;
            if let Whole::Running { have, .. } = &mut *self.state() {
                *have = pos;
            }
            self.changed.notify_all();
            Ok(())
        };
        let result = self
            .client
            .block_on(self.client.stream(&self.digest, self.len, 0, &mut sink));
        let outcome = match result {
            Err(e) => Whole::Failed(Arc::new(e)),
            Ok(()) => {
                let actual = hasher.finish();
                if actual == self.digest {
                    log::info!(
                        "blob {}: downloaded {} MiB in {:.2}s",
                        self.digest,
                        self.len >> 20,
                        started.elapsed().as_secs_f64()
                    );
                    self.mark_verified();
                    self.publish(&file, tmp.as_deref())
                } else {
                    Whole::Bad(format!(
                        "{}: blob {} does not match its digest: the registry sent bytes that hash to {actual}",
                        self.client.name(),
                        self.digest
                    ))
                }
            }
        };
        if !matches!(outcome, Whole::Complete(_)) {
            if let Some(t) = &tmp {
                let _ = std::fs::remove_file(t);
            }
        }
        match &outcome {
            Whole::Failed(e) => log::error!("{e}"),
            Whole::Bad(e) => log::error!("{e}"),
            _ => {}
        }
        *self.state() = outcome;
        self.changed.notify_all();
    }

    /// Makes a verified download permanent in the cache (or keeps the unnamed file).
    fn publish(&self, file: &Arc<File>, tmp: Option<&std::path::Path>) -> Whole {
        let (Some(tmp), Some(dest)) = (tmp, &self.cache_path) else {
            return Whole::Complete(file.clone());
        };
        // Durable before it gets the name that later mounts trust without hashing it again.
        let stored = file.sync_data().and_then(|()| std::fs::rename(tmp, dest));
        if let Err(e) = stored {
            log::warn!(
                "cannot keep blob {} in the cache: {e}; this mount still has it",
                self.digest
            );
        }
        Whole::Complete(file.clone())
    }

    fn mark_verified(&self) {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        seq.verified = true;
        seq.hasher = None;
    }

    fn is_verified(&self) -> bool {
        self.seq.lock().unwrap_or_else(|p| p.into_inner()).verified
    }

    /// Waits until the whole blob is local and good (starting the download if needed).
    fn wait_whole(self: &Arc<Self>) -> io::Result<Arc<File>> {
        let mut w = self.start_download(self.state());
        let mut last_have = u64::MAX;
        let mut last_progress = Instant::now();
        loop {
            match &*w {
                Whole::Complete(f) => return Ok(f.clone()),
                Whole::Bad(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone())),
                Whole::Failed(e) => return Err(ClassifiedFailure::io(e.is_transient(), e.clone())),
                Whole::Absent => w = self.start_download(w),
                Whole::Running { have, .. } => {
                    if *have != last_have {
                        last_have = *have;
                        last_progress = Instant::now();
                    } else if last_progress.elapsed() > self.wait_limit() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, self.stalled()));
                    }
                    w = self
                        .changed
                        .wait_timeout(w, Duration::from_millis(500))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    fn stalled(&self) -> String {
        format!(
            "{}: blob {}: the download made no progress for {}s",
            self.client.name(),
            self.digest,
            self.wait_limit().as_secs()
        )
    }

    /// Serves a read from the download when it has (or will soon have) the bytes.
    /// `None`: the download is not there or too far behind; fetch a range instead.
    fn read_downloaded(&self, buf: &mut [u8], offset: u64) -> Option<io::Result<usize>> {
        let mut w = self.state();
        let started = Instant::now();
        // The end of the blob is served only once the download has hashed all of it (and, with
        // a cache, named it: a mount whose last read returned has its download kept).
        let end = offset.saturating_add(buf.len() as u64) > self.last_block() * BLOCK;
        loop {
            match &*w {
                Whole::Complete(f) => return Some(pread(f, buf, offset)),
                Whole::Bad(e) => return Some(Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()))),
                Whole::Running { file, have } if offset < *have && !end => {
                    let n = buf.len().min((*have - offset) as usize);
                    return Some(pread(file, &mut buf[..n], offset));
                }
                Whole::Running { have, .. } if end || offset < have.saturating_add(FOLLOW_WINDOW) => {
                    if started.elapsed() > self.wait_limit() {
                        return Some(Err(io::Error::new(io::ErrorKind::TimedOut, self.stalled())));
                    }
                    w = self
                        .changed
                        .wait_timeout(w, Duration::from_millis(500))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                _ => return None,
            }
        }
    }

    /// The block at `index`, from the LRU or one Range request (hashed when in order). With
    /// `strict`, a mismatch of the in-order hash that this block completes is an error;
    /// without, the block is returned anyway (its reader verifies it chunk by chunk).
    fn block(&self, index: u64, strict: bool) -> io::Result<Arc<Vec<u8>>> {
        let key = (self.digest.clone(), index);
        if let Some(b) = self.blocks.lock().get(&key) {
            return Ok(b.clone());
        }
        let start = index * BLOCK;
        let data = self
            .client
            .range(&self.digest, self.len, start, BLOCK)
            .map_err(|e| ClassifiedFailure::io(e.is_transient(), Arc::new(e)))?;
        let expected = BLOCK.min(self.len - start);
        if data.len() as u64 != expected {
            return Err(io::Error::other(format!(
                "{}: blob {}: asked for {expected} bytes at {start}, got {}",
                self.client.name(),
                self.digest,
                data.len()
            )));
        }
        let data = Arc::new(data);
        self.blocks.lock().put(key, data.clone());
        let in_order = self.hash_in_order(index, &data);
        if strict {
            in_order?;
        }
        Ok(data)
    }

    /// Feeds blocks to the in-order hash while they continue it (also later blocks that
    /// were fetched earlier and are still cached).
    fn hash_in_order(&self, index: u64, data: &Arc<Vec<u8>>) -> io::Result<()> {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let (mut i, mut block) = (index, data.clone());
        while seq.upto == i * BLOCK && !seq.verified {
            let Some(h) = seq.hasher.as_mut() else { break };
            h.update(&block);
            seq.upto += block.as_slice().len() as u64;
            if seq.upto == self.len {
                let actual = seq.hasher.take().map(Hasher::finish);
                if actual.as_ref() == Some(&self.digest) {
                    seq.verified = true;
                    return Ok(());
                }
                let msg = format!(
                    "{}: blob {} does not match its digest: the registry sent bytes that hash to {}",
                    self.client.name(),
                    self.digest,
                    actual.map_or_else(|| "?".into(), |d| d.to_string())
                );
                log::error!("{msg}");
                *self.state() = Whole::Bad(msg.clone());
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
            i += 1;
            match self.blocks.lock().peek(&(self.digest.clone(), i)) {
                Some(b) => block = b.clone(),
                None => break,
            }
        }
        Ok(())
    }

    fn last_block(&self) -> u64 {
        self.len.saturating_sub(1) / BLOCK
    }
}

fn pread(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match f.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// `blob-<alg>-<hex>`: the cache file of a downloaded blob.
pub fn cache_file_name(d: &Digest) -> String {
    format!("blob-{}-{}", d.algorithm().name(), d.hex())
}

/// The `ReadAt` the rest of imgfs sees: a handle on the shared [`RemoteBlob`].
pub struct RemoteReader(pub Arc<RemoteBlob>);

impl ReadAt for RemoteReader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let b = &self.0;
        if offset >= b.len || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((b.len - offset).min(usize::MAX as u64) as usize);
        let buf = &mut buf[..want];
        if let Some(r) = b.read_downloaded(buf, offset) {
            return r;
        }
        let index = offset / BLOCK;
        let block = b.block(index, true)?;
        if index == b.last_block() && !b.is_verified() {
            // The end of the blob is only served once all of it is known good.
            let file = b.wait_whole()?;
            return pread(&file, buf, offset);
        }
        let at = (offset - index * BLOCK) as usize;
        let n = want.min(block.as_slice().len().saturating_sub(at));
        buf[..n].copy_from_slice(&block[at..at + n]);
        Ok(n)
    }

    fn len(&self) -> u64 {
        self.0.len
    }

    fn advise_sequential(&self) {
        let b = &self.0;
        drop(b.start_download(b.state()));
    }

    fn verifies_itself(&self) -> bool {
        true
    }

    /// For a layer read through its chunk digests (`blob::verified`): the cached or downloaded
    /// file, else Range blocks, without the whole-blob check, so that one bad chunk fails only
    /// the reads that touch it. The chunk digests check every byte served.
    fn read_raw_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let b = &self.0;
        if offset >= b.len || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((b.len - offset).min(usize::MAX as u64) as usize);
        let buf = &mut buf[..want];
        let local = match &*b.state() {
            Whole::Complete(f) => Some((f.clone(), want)),
            Whole::Running { file, have } if offset < *have => {
                Some((file.clone(), want.min((*have - offset) as usize)))
            }
            _ => None,
        };
        if let Some((file, n)) = local {
            return pread(&file, &mut buf[..n], offset);
        }
        let index = offset / BLOCK;
        let block = b.block(index, false)?;
        let at = (offset - index * BLOCK) as usize;
        let n = want.min(block.as_slice().len().saturating_sub(at));
        buf[..n].copy_from_slice(&block[at..at + n]);
        Ok(n)
    }
}
