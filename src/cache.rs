//! The on-disk cache: layer indexes, merged rootfs trees, seek indexes of compressed outer
//! archives, digests of unnamed docker-archive layers, downloaded registry blobs.
//!
//! Entries are keyed by content (a digest) or, for a local compressed archive whose digest we
//! cannot know without reading it all, by its identity (path, size, mtime, inode). Each file is
//! `magic | version | payload length | crc32(payload) | payload`, written to a temporary file
//! and renamed into place, so a reader sees the old entry or the new one, never a torn one. A
//! file that fails any check is ignored and rebuilt: the cache is never trusted. A writer killed
//! before its rename leaves its temporary file behind; the next store removes it.
//!
//! Every use of an entry sets its access time to now explicitly (whatever `noatime`/`relatime`
//! say), so the access time is the entry's last use: `imgfs cache prune` evicts by it
//! (`cache_admin.rs`). Each `Cache` also remembers the names it used, which a mount daemon lists
//! in its status file so prune leaves them alone.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Identifies imgfs cache files.
const MAGIC: &[u8; 8] = b"IMGFSIDX";
/// Bump when any payload encoding changes; older entries are then rebuilt.
/// History: 1 = first format (sha256 checksum); 2 = crc32 checksum.
pub const CACHE_VERSION: u32 = 2;
/// The checksum guards against torn and damaged files, not against someone who can write the
/// cache directory (they could write any valid file): CRC-32 does that at memory speed, where
/// sha256 cost several milliseconds per MB of index on every warm mount.
const HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// Where indexes are kept; `None` disables caching (`--no-cache`).
/// Clones share the set of names used.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
    used: Arc<Mutex<BTreeSet<String>>>,
}

/// Parses a size: bytes, or a number with K, M, G, T (powers of 1024; also KiB, MiB, ...) or
/// KB, MB, GB, TB (powers of 1000), e.g. `500M`, `1.5GiB`, `0`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim();
    let factor: f64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KIB" => 1024.0,
        "M" | "MIB" => 1024f64.powi(2),
        "G" | "GIB" => 1024f64.powi(3),
        "T" | "TIB" => 1024f64.powi(4),
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    let bytes = number * factor;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return None;
    }
    Some(bytes.round() as u64)
}

/// A cache file a mount uses, as its status file lists it (`imgfs cache prune` keeps these).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct CacheUse {
    /// The file's name in the cache directory.
    pub name: String,
    /// What it holds, for `imgfs cache du` ("index of layer sha256:...").
    pub what: String,
}

/// The name of the cache file of (kind, key).
pub fn file_name(kind: &str, key: &str) -> String {
    format!("{kind}-{key}")
}

/// Sets the access time of `file` to now (its last use; the modification time stays). Best
/// effort: a cache directory of another owner only loses its LRU order.
pub fn mark_used(file: &fs::File) {
    let _ = file.set_times(fs::FileTimes::new().set_accessed(std::time::SystemTime::now()));
}

impl Cache {
    /// A cache in `dir`, or no cache.
    pub fn new(dir: Option<PathBuf>) -> Cache {
        Cache {
            dir,
            used: Arc::default(),
        }
    }

    /// The names of the cache files this cache (and its clones) loaded, mapped or stored.
    pub fn used(&self) -> BTreeSet<String> {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records that the file `name` is used (by this process), e.g. a downloaded registry blob.
    pub fn note_used(&self, name: String) {
        if self.dir.is_some() {
            self.used.lock().unwrap_or_else(|p| p.into_inner()).insert(name);
        }
    }

    /// `$XDG_CACHE_HOME/imgfs`, else `~/.cache/imgfs`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("imgfs"))
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path(&self, kind: &str, key: &str) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(file_name(kind, key)))
    }

    /// Opens the file of (kind, key) for reading, marking its use.
    fn open(&self, kind: &str, key: &str) -> Option<(fs::File, PathBuf)> {
        let path = self.path(kind, key)?;
        let file = fs::File::open(&path).ok()?;
        mark_used(&file);
        self.note_used(file_name(kind, key));
        Some((file, path))
    }

    /// True when a file is stored under (kind, key); says nothing of its contents.
    pub fn contains(&self, kind: &str, key: &str) -> bool {
        self.path(kind, key).is_some_and(|p| p.is_file())
    }

    /// The payload stored under (kind, key), if present and intact.
    pub fn load(&self, kind: &str, key: &str) -> Option<Vec<u8>> {
        let (mut file, path) = self.open(kind, key)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
        if decode(&bytes).is_none() {
            log::warn!(
                "cache file {} is corrupt or from another version; rebuilding",
                path.display()
            );
            return None;
        }
        // The payload in place: indexes can be megabytes, so no second copy.
        bytes.drain(..HEADER_LEN);
        Some(bytes)
    }

    /// The file stored under (kind, key), mapped, with the range of its payload, if the envelope
    /// and checksum are intact. For payloads used in place: nothing is copied, and the pages
    /// are the page cache's (clean, reclaimable), not the process's own memory.
    pub fn map(&self, kind: &str, key: &str) -> Option<(Arc<memmap2::Mmap>, std::ops::Range<usize>)> {
        let (file, path) = self.open(kind, key)?;
        // SAFETY: a mapping is only sound while nobody changes the file. imgfs never writes a
        // cache file in place (`write_atomic` writes a new file and renames it over the old
        // one, which leaves existing mappings on the old inode), and the directory is the
        // user's own; changing a cache file in place would be tampering with our own memory.
        #[allow(unsafe_code)]
        let map = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(m) => m,
            Err(e) => {
                log::warn!("cannot map cache file {}: {e}; rebuilding", path.display());
                return None;
            }
        };
        // One readahead of the whole file now, rather than a synchronous read per page fault
        // while the checksum walks it (tens of milliseconds when the page cache is cold).
        let _ = map.advise(memmap2::Advice::WillNeed);
        if !check_mapped(&map) {
            log::warn!(
                "cache file {} is corrupt or from another version; rebuilding",
                path.display()
            );
            return None;
        }
        let len = map.len();
        Some((Arc::new(map), HEADER_LEN..len))
    }

    /// Stores a payload atomically. Failure (read-only or full disk) only costs a rebuild
    /// next time, so it is a warning, not an error.
    pub fn store(&self, kind: &str, key: &str, payload: &[u8]) {
        self.store_with(kind, key, |w| w.write_all(payload));
    }

    /// [`Self::store`] of the payload `write` writes, sent to the file as it comes: a payload of
    /// tens of MB (a zstd index with checkpoints) is never copied whole into memory.
    pub fn store_with(&self, kind: &str, key: &str, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
        let Some(path) = self.path(kind, key) else { return };
        if let Some(dir) = &self.dir {
            remove_stale_temporaries(dir);
        }
        let result = write_atomic(&path, |f| {
            // The header comes first but holds the payload's length and CRC: a placeholder,
            // then the payload, then the header written over the placeholder.
            f.write_all(&[0u8; HEADER_LEN])?;
            let mut out = Enveloping {
                inner: std::io::BufWriter::with_capacity(1 << 20, f.try_clone()?),
                crc: crc32fast::Hasher::new(),
                len: 0,
            };
            write(&mut out)?;
            let Enveloping { inner, crc, len } = out;
            inner.into_inner().map_err(std::io::IntoInnerError::into_error)?;
            f.seek(std::io::SeekFrom::Start(0))?;
            f.write_all(&header_of(len, crc.finalize()))
        });
        match result {
            Ok(()) => self.note_used(file_name(kind, key)),
            Err(e) => log::warn!("cannot write cache file {}: {e}; continuing without it", path.display()),
        }
    }

    /// A place to put bytes aside while an index is built: an unnamed file in the cache
    /// directory (`O_TMPFILE`: gone with its last handle, nothing to clean up after a crash);
    /// `None` without a cache directory or when it cannot be made.
    pub fn spill(&self) -> Option<Spill> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.dir.as_ref()?;
        fs::create_dir_all(dir).ok()?;
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
            .map_err(|e| log::debug!("no spill file in {}: {e}", dir.display()))
            .ok()?;
        Some(Spill { file, len: 0 })
    }
}

/// Bytes put aside in an unnamed file of the cache directory and read back mapped: page cache
/// the kernel may write out or drop, instead of the builder's own memory (the sparse windows of
/// a zstd checkpoint index: tens of MB).
pub struct Spill {
    file: fs::File,
    len: u64,
}

impl Spill {
    /// Appends `bytes`; returns where they are.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<std::ops::Range<usize>> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(bytes, self.len)?;
        let start = self.len as usize;
        self.len += bytes.len() as u64;
        Ok(start..start + bytes.len())
    }

    /// Everything appended, mapped.
    pub fn map(self) -> std::io::Result<Arc<memmap2::Mmap>> {
        // SAFETY: the file has no name and only this handle (dropped after mapping): nothing
        // else can change it while the mapping lives.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&self.file) }?;
        Ok(Arc::new(map))
    }
}

/// Passes a payload on while taking its length and CRC.
struct Enveloping<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Enveloping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes of a cache payload: owned (built in memory, or copied for tests) or a range of a
/// mapped cache file used in place (page-cache memory the kernel may reclaim).
#[derive(Clone)]
pub struct Bytes {
    owned: Vec<u8>,
    /// When set, the bytes are this range of the map, and `owned` is empty.
    mapped: Option<(Arc<memmap2::Mmap>, std::ops::Range<usize>)>,
}

impl Bytes {
    /// Bytes of our own.
    pub fn owned(owned: Vec<u8>) -> Bytes {
        Bytes { owned, mapped: None }
    }

    /// `range` of `map`, used in place; `None` if the range is outside the map.
    pub fn mapped(map: Arc<memmap2::Mmap>, range: std::ops::Range<usize>) -> Option<Bytes> {
        map.get(range.clone())?;
        Some(Bytes {
            owned: Vec::new(),
            mapped: Some((map, range)),
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.mapped {
            None => &self.owned,
            // Checked in `mapped`; a mapping never shrinks.
            Some((m, r)) => m.get(r.clone()).unwrap_or(&[]),
        }
    }

    /// The bytes, to append to or change (mapped bytes are copied first).
    pub fn to_mut(&mut self) -> &mut Vec<u8> {
        if self.mapped.is_some() {
            self.owned = self.as_slice().to_vec();
            self.mapped = None;
        }
        &mut self.owned
    }

    /// True for bytes used in place in a mapped file.
    pub fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }

    /// Gives back the spare capacity of owned bytes.
    pub fn shrink_to_fit(&mut self) {
        self.owned.shrink_to_fit();
    }

    /// Drops mapped bytes from this process's memory ([`release`]) once they have been read;
    /// a later access reads them again from the page cache. Owned bytes stay.
    pub fn release(&self) {
        if let Some((m, r)) = &self.mapped {
            release(m, r.clone());
        }
    }
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::owned(Vec::new())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Bytes {}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// Drops the pages of `range` of a mapping from this process's memory (rounded inward to whole
/// pages); reading them again faults them back in from the page cache. Used on parts of cache
/// files that have been decoded, so they do not count against the mount's memory.
pub fn release(map: &memmap2::Mmap, range: std::ops::Range<usize>) {
    const PAGE: usize = 4096;
    let start = range.start.div_ceil(PAGE) * PAGE;
    let end = range.end.min(map.len()) / PAGE * PAGE;
    if end > start {
        // SAFETY: a read-only shared file mapping; MADV_DONTNEED only unmaps its pages, whose
        // contents stay the file's (re-read from the page cache on the next access). Nothing
        // here writes through the mapping.
        #[allow(unsafe_code)]
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
    }
}

/// Envelope and CRC of a mapped cache file, checked 1 MiB at a time; each piece is released once
/// hashed, so checking a file does not make all of it resident.
fn check_mapped(map: &memmap2::Mmap) -> bool {
    const PIECE: usize = 1 << 20;
    let Some(header) = map
        .get(..HEADER_LEN)
        .and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok())
    else {
        return false;
    };
    let Some((len, sum)) = check_header(header) else {
        return false;
    };
    if len != (map.len() - HEADER_LEN) as u64 {
        return false;
    }
    let mut crc = crc32fast::Hasher::new();
    let mut at = HEADER_LEN;
    while at < map.len() {
        let end = (at + PIECE).min(map.len());
        crc.update(&map[at..end]);
        release(map, at..end);
        at = end;
    }
    crc.finalize() == sum
}

/// `payload` in the envelope of a cache file, as [`Cache::store`] writes it (`imgfs index push`
/// publishes layer indexes in it, so a consumer checks them exactly as a cache file).
pub fn envelope(payload: &[u8]) -> Vec<u8> {
    encode(payload)
}

/// The payload of the bytes of a cache file, if its envelope is intact: magic, this version,
/// length and CRC-32.
pub fn open_envelope(bytes: &[u8]) -> Option<&[u8]> {
    decode(bytes)
}

fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header_of(payload.len() as u64, crc32fast::hash(payload)));
    out.extend_from_slice(payload);
    out
}

/// The envelope's header for a payload of `len` bytes with CRC-32 `crc`: magic, version,
/// length, CRC.
fn header_of(len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&CACHE_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&len.to_le_bytes());
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode(bytes: &[u8]) -> Option<&[u8]> {
    let (header, payload) = bytes.split_at_checked(HEADER_LEN)?;
    let (len, sum) = check_header(header.try_into().ok()?)?;
    (len == payload.len() as u64 && crc32fast::hash(payload) == sum).then_some(payload)
}

/// Magic and version checked; returns the payload length and checksum the header claims.
fn check_header(header: &[u8; HEADER_LEN]) -> Option<(u64, u32)> {
    let (magic, rest) = header.split_at(8);
    let (version, rest) = rest.split_at(4);
    let (len, sum) = rest.split_at(8);
    if magic != MAGIC || version != CACHE_VERSION.to_le_bytes() {
        return None;
    }
    Some((
        u64::from_le_bytes(len.try_into().ok()?),
        u32::from_le_bytes(sum.try_into().ok()?),
    ))
}

/// The PID of the process writing the temporary file `name`: `.tmp-<pid>-<name>` (cache
/// entries) or `.tmp-blob-<pid>-<hex>` (registry downloads, `registry/blob.rs`). `None` for
/// other names.
pub fn temporary_writer(name: &str) -> Option<rustix::process::Pid> {
    let rest = name.strip_prefix(".tmp-")?;
    let rest = rest.strip_prefix("blob-").unwrap_or(rest);
    let pid = rest.split('-').next()?.parse::<i32>().ok()?;
    rustix::process::Pid::from_raw(pid)
}

/// True when no process `pid` exists (its temporary files are garbage). A live pid (ours,
/// another mount's, or an unrelated process that reused the number) counts as a writer.
pub fn writer_gone(pid: rustix::process::Pid) -> bool {
    // Signal 0 only asks whether the process exists.
    rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

/// Removes the temporary files of writers that died before renaming them (killed imgfs
/// processes).
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_str().and_then(temporary_writer).is_some_and(writer_gone) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// True when `bytes` (the start of a cache file) is the envelope of this version of imgfs;
/// false for files of other versions, which are rebuilt on use and so are garbage.
pub fn is_current(bytes: &[u8]) -> bool {
    bytes
        .get(..HEADER_LEN)
        .and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok())
        .and_then(check_header)
        .is_some()
}

/// Bytes `is_current` needs.
pub const ENVELOPE_LEN: usize = HEADER_LEN;

fn write_atomic(path: &Path, write: impl FnOnce(&mut fs::File) -> std::io::Result<()>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_written_in_pieces_is_the_pieces_joined() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()));
        cache.store_with("t", "k", |w| {
            w.write_all(b"pay")?;
            w.write_all(b"")?;
            w.write_all(b"load bytes")
        });
        assert_eq!(cache.load("t", "k").as_deref(), Some(&b"payload bytes"[..]));
        assert_eq!(fs::read(dir.path().join("t-k")).unwrap(), envelope(b"payload bytes"));
    }

    #[test]
    fn round_trip_and_every_flipped_byte_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()));
        cache.store("t", "k", b"payload bytes");
        assert_eq!(cache.load("t", "k").as_deref(), Some(&b"payload bytes"[..]));
        let file = dir.path().join("t-k");
        let good = fs::read(&file).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            fs::write(&file, &bad).unwrap();
            assert!(cache.load("t", "k").is_none(), "flip at {i} accepted");
        }
        fs::write(&file, &good[..good.len() - 1]).unwrap();
        assert!(cache.load("t", "k").is_none());
    }

    #[test]
    fn map_checks_like_load() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()));
        let payload: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        cache.store("t", "k", &payload);
        let (map, range) = cache.map("t", "k").unwrap();
        assert_eq!(&map[range], &payload[..]);
        let file = dir.path().join("t-k");
        let good = fs::read(&file).unwrap();
        for i in (0..HEADER_LEN).chain([HEADER_LEN + 7, good.len() / 2, good.len() - 1]) {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fs::write(&file, &bad).unwrap();
            assert!(cache.map("t", "k").is_none(), "flip at {i} accepted");
        }
        fs::write(&file, &good[..good.len() - 1]).unwrap();
        assert!(cache.map("t", "k").is_none());
        fs::write(&file, b"").unwrap();
        assert!(cache.map("t", "k").is_none());
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()));
        // A pid that cannot exist (above pid_max's hard limit of 2^22) and our own.
        let dead = dir.path().join(".tmp-4194305-layer-x");
        let dead_download = dir.path().join(".tmp-blob-4194305-abcd");
        let live = dir.path().join(format!(".tmp-{}-layer-y", std::process::id()));
        fs::write(&dead, b"torn").unwrap();
        fs::write(&dead_download, b"cut").unwrap();
        fs::write(&live, b"being written").unwrap();
        cache.store("t", "k", b"payload");
        assert!(!dead.exists(), "a dead writer's temporary file was left");
        assert!(!dead_download.exists(), "a dead download's temporary file was left");
        assert!(live.exists(), "a live writer's temporary file was removed");
        assert_eq!(cache.load("t", "k").as_deref(), Some(&b"payload"[..]));
    }

    #[test]
    fn uses_are_recorded_and_mark_the_access_time() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()));
        cache.store("t", "k", b"payload");
        let file = dir.path().join("t-k");
        let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(&file)
            .unwrap()
            .set_times(fs::FileTimes::new().set_accessed(long_ago))
            .unwrap();
        let fresh = Cache::new(Some(dir.path().to_path_buf()));
        assert!(fresh.used().is_empty());
        assert!(fresh.clone().map("t", "k").is_some());
        assert_eq!(fresh.used().into_iter().collect::<Vec<_>>(), ["t-k"]);
        let atime = fs::metadata(&file).unwrap().accessed().unwrap();
        assert!(
            atime.elapsed().unwrap() < std::time::Duration::from_secs(60),
            "{atime:?}"
        );
        assert!(is_current(&fs::read(&file).unwrap()));
        assert!(!is_current(b"IMGFSIDX\x01\0\0\0"));
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let cache = Cache::new(None);
        cache.store("t", "k", b"x");
        assert!(cache.load("t", "k").is_none());
    }
}
