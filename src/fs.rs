//! The filesystem a mount serves, independent of FUSE: one inode space over the static tree
//! (metadata, blobs, ref directories) and the lazily built views (rootfs, layer trees).
//!
//! Inode numbers (what the kernel and NFS clients see):
//! - static node `n` is `n + 1` (the root is 1, as FUSE wants);
//! - inode `i >= 1` of the view at placement `p` is `(p + 1) << 32 | i`; a view's root (i = 0)
//!   is the static node where it is placed.
//!
//! Both parts are fixed by the source alone (sorted walk of the tree, deterministic merge), so
//! remounting the same source gives the same numbers and NFS file handles stay valid. Every
//! inode stays resolvable for the life of the mount: nothing is ever forgotten.
//! The FUSE adapter (`crate::fuse`) and the CLI (`imgfs ls`/`cat`) both read through this.

use crate::cache::Cache;
use crate::layer::LayerStore;
use crate::merge::InodeKind;
use crate::tree::{Content, NodeId, NodeKind, Tree};
use crate::verify::Verifier;
use crate::view::{PlacementId, View, ViewError, Views};

pub use crate::view::OpaqueXattrs;
use std::borrow::Cow;
use std::sync::Arc;

/// Permission bits of the metadata files and directories imgfs synthesizes.
const META_FILE_MODE: u16 = 0o444;
const META_DIR_MODE: u16 = 0o555;

/// An error of a filesystem operation, mapped to an errno by the FUSE adapter.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// No such inode or name.
    #[error("no such file or directory")]
    NotFound,
    /// A directory operation on a non-directory.
    #[error("not a directory")]
    NotDir,
    /// A file operation on a directory.
    #[error("is a directory")]
    IsDir,
    /// Not a symlink.
    #[error("not a symlink")]
    NotLink,
    /// A view (rootfs, layer tree) cannot be built; already logged.
    #[error(transparent)]
    View(ViewError),
    /// File data cannot be read (corrupt blob, a registry gone, a changed source); logged once
    /// per file.
    #[error("{0}")]
    Read(Arc<std::io::Error>),
    /// The caller has a signal pending (Ctrl-C) and stopped waiting for a view being built.
    #[error("interrupted")]
    Interrupted,
}

impl From<ViewError> for FsError {
    fn from(e: ViewError) -> FsError {
        match e {
            ViewError::Interrupted => FsError::Interrupted,
            e => FsError::View(e),
        }
    }
}

fn read_error(e: std::io::Error) -> FsError {
    FsError::Read(Arc::new(e))
}

thread_local! {
    /// The thread (task id) a FUSE request came from, for the duration of the request.
    static CALLER: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Records which thread the current FUSE request comes from (0: none, e.g. the CLI), so a
/// request waiting for a view can stop when that thread gets a signal.
///
/// Why not FUSE_INTERRUPT: fuser 0.18 answers the kernel's INTERRUPT requests with ENOSYS
/// itself (never telling the filesystem), after which the kernel sends none. The kernel sends
/// INTERRUPT exactly when the waiting task has a signal pending, which /proc shows too.
pub fn set_caller(pid: u32) {
    CALLER.with(|c| c.set(pid));
}

/// True when the thread of the current request has an unblocked signal pending (SIGKILL
/// included: a fatal SIGINT becomes one), from /proc/TID/status.
fn caller_interrupted() -> bool {
    let tid = CALLER.with(std::cell::Cell::get);
    if tid == 0 {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    let mask = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigPnd:") | mask("ShdPnd:")) & !mask("SigBlk:") != 0
}

/// Result alias.
pub type Result<T> = std::result::Result<T, FsError>;

/// File types, as `stat` shows them: the merged tree's own type, which static nodes use too.
pub use crate::merge::InodeKind as Kind;

/// Attributes of an inode: one type for static and view inodes.
pub use crate::view::Attr;

/// Where an inode number points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ino {
    Static(NodeId),
    View(PlacementId, u32),
}

impl Ino {
    fn decode(raw: u64) -> Option<Ino> {
        let (high, low) = (raw >> 32, (raw & 0xffff_ffff) as u32);
        match high {
            0 => low.checked_sub(1).map(|n| Ino::Static(NodeId(n))),
            p => (low != 0).then(|| Ino::View(PlacementId((p - 1) as u32), low)),
        }
    }

    fn encode(self) -> u64 {
        match self {
            Ino::Static(n) => u64::from(n.0) + 1,
            Ino::View(p, i) => ((u64::from(p.0) + 1) << 32) | u64::from(i),
        }
    }
}

/// A directory entry: inode number, type, name.
pub type DirEntry<'a> = (u64, Kind, Cow<'a, [u8]>);

/// The served filesystem.
pub struct Fs {
    tree: Arc<Tree>,
    views: Arc<Views>,
    verifier: Arc<Verifier>,
    read_errors: FirstErrors,
    sequential: Sequential,
    /// Tar-split data made so far, by layer digest (`Content::TarSplit`).
    tar_splits: std::sync::Mutex<std::collections::HashMap<crate::digest::Digest, Arc<Vec<u8>>>>,
    overlay_opaque: OpaqueXattrs,
}

/// Which inodes have had a read error logged: one line per file, not one per failed read (a
/// source changed under the mount would otherwise grow the log with every retry).
#[derive(Default)]
struct FirstErrors(std::sync::Mutex<std::collections::HashSet<u64>>);

impl FirstErrors {
    /// Most files remembered; past that, every failure is logged again.
    const MAX: usize = 100_000;

    /// True the first time `ino` fails.
    fn first(&self, ino: u64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.len() >= Self::MAX || seen.insert(ino)
    }
}

/// Recognises files read in order (each read starting about where the previous read of the
/// same inode ended), so the data after them can be decompressed ahead on other cores.
struct Sequential(std::sync::Mutex<lru::LruCache<u64, u64>>);

impl Sequential {
    /// Files followed at once (the most recently read ones).
    const FILES: usize = 64;
    /// How far a read may start from the previous read's end and still count as in order: the
    /// kernel sends its read-ahead requests in parallel, so they arrive slightly shuffled.
    const SLACK: u64 = 1 << 20;

    fn new() -> Self {
        let cap = std::num::NonZeroUsize::new(Self::FILES).unwrap_or(std::num::NonZeroUsize::MIN);
        Self(std::sync::Mutex::new(lru::LruCache::new(cap)))
    }

    /// Records a read of `[offset, end)` of `ino`; true when it continues an earlier read.
    fn follows(&self, ino: u64, offset: u64, end: u64) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let prev = last.put(ino, end);
        offset > 0 && prev.is_some_and(|p| offset.abs_diff(p) <= Self::SLACK)
    }
}

/// A place in a view: the placement, its built view and the inode in it.
struct InView {
    p: PlacementId,
    view: Arc<View>,
    i: u32,
}

impl Fs {
    /// The filesystem of `tree`, indexing layers through `cache`.
    pub fn new(tree: Arc<Tree>, cache: Cache) -> Fs {
        let verifier = Verifier::new(tree.image_set().clone(), cache.clone());
        let v = verifier.clone();
        let store = LayerStore::new(tree.image_set().clone(), cache, Box::new(move |d| v.mark_good(d)));
        let views = Arc::new(Views::new(tree.view_specs().to_vec(), store));
        Fs {
            tree,
            views,
            verifier,
            read_errors: FirstErrors::default(),
            sequential: Sequential::new(),
            tar_splits: Default::default(),
            overlay_opaque: OpaqueXattrs::default(),
        }
    }

    /// Index zstd layers with checkpoints inside large frames (`-o zstd_checkpoints`).
    pub fn with_zstd_checkpoints(self, on: bool) -> Fs {
        self.views.layers().set_zstd_checkpoints(on);
        self
    }

    /// With `--published-index`: a registry layer's cached index (installed from the published
    /// one) is used as is even without the checkpoints [`Self::with_zstd_checkpoints`] asks for,
    /// rather than downloading the layer to index it again.
    pub fn with_published_index(self, on: bool) -> Fs {
        self.views.layers().set_keep_remote_indexes(on);
        self
    }

    /// Which opaque markers overlay views show (`-o overlay_opaque=`; both by default).
    pub fn with_overlay_opaque(mut self, which: OpaqueXattrs) -> Fs {
        self.overlay_opaque = which;
        self
    }

    /// Starts loading a rootfs whose index is cached (`Views::warm_up`); for a mount, which
    /// calls this before the kernel has it, so the first lookup finds the rootfs (nearly) ready.
    pub fn warm_up(&self) {
        self.views.warm_up();
    }

    /// What each layer is doing (`imgfs status`).
    pub fn progress(&self) -> Arc<crate::progress::Progress> {
        self.views.progress()
    }

    /// The views of this filesystem (to ask them for progress or cache files after the
    /// filesystem has gone to the FUSE session).
    pub fn views(&self) -> &Arc<Views> {
        &self.views
    }

    /// The tree behind the filesystem.
    pub fn tree(&self) -> &Arc<Tree> {
        &self.tree
    }

    /// Inode number of the root.
    pub const ROOT: u64 = 1;

    fn node(&self, id: NodeId) -> Result<&crate::tree::Node> {
        self.tree.get(id).ok_or(FsError::NotFound)
    }

    /// Resolves an inode to a static node or a place in a built view.
    fn place(&self, raw: u64) -> Result<std::result::Result<NodeId, InView>> {
        match Ino::decode(raw).ok_or(FsError::NotFound)? {
            Ino::Static(id) => match self.node(id)?.kind {
                NodeKind::View(p) => Ok(Err(InView {
                    p,
                    view: self.view(p)?,
                    i: 0,
                })),
                _ => Ok(Ok(id)),
            },
            Ino::View(p, i) => {
                let view = self.view(p)?;
                if i as usize >= view.len() {
                    return Err(FsError::NotFound);
                }
                Ok(Err(InView { p, view, i }))
            }
        }
    }

    fn view(&self, p: PlacementId) -> Result<Arc<View>> {
        Ok(self.views.get(p, &caller_interrupted)?)
    }

    fn placement_node(&self, p: PlacementId) -> Option<NodeId> {
        self.tree.placement_node(p)
    }

    /// The inode number of inode `i` of the view at `p` (its root is the placement node).
    fn view_ino(&self, p: PlacementId, i: u32) -> u64 {
        if i == 0 {
            self.placement_node(p).map_or(Self::ROOT, |n| Ino::Static(n).encode())
        } else {
            Ino::View(p, i).encode()
        }
    }

    /// Attributes of an inode.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        match Ino::decode(ino).ok_or(FsError::NotFound)? {
            Ino::Static(id) => self.static_attr(id),
            Ino::View(p, i) => {
                let view = self.view(p)?;
                self.view_attr(&view, p, i)
            }
        }
    }

    fn static_attr(&self, id: NodeId) -> Result<Attr> {
        let node = self.node(id)?;
        let mtime = self.tree.image_set().mtime;
        let (kind, perm, size, nlink) = match &node.kind {
            NodeKind::File {
                content: Content::TarSplit(d, _),
                ..
            } => {
                // Unknown (0) until made: such files are read with direct I/O (`direct_io`).
                let made = self.tar_splits.lock().unwrap_or_else(|e| e.into_inner());
                (Kind::File, META_FILE_MODE, made.get(d).map_or(0, |b| b.len() as u64), 1)
            }
            NodeKind::File { size, .. } => (Kind::File, META_FILE_MODE, *size, 1),
            NodeKind::Dir { .. } => (Kind::Dir, META_DIR_MODE, 0, 2 + self.tree.subdir_count(id)),
            // A view's directory is shown without building the view (so `ls -l` of a ref
            // directory indexes nothing); nlink 1 is the usual "subdirectories not counted".
            NodeKind::View(_) => (Kind::Dir, META_DIR_MODE, 0, 1),
            NodeKind::Symlink { target } => (Kind::Symlink, 0o777, target.len() as u64, 1),
        };
        Ok(Attr {
            ino: Ino::Static(id).encode(),
            kind,
            perm,
            uid: 0,
            gid: 0,
            size,
            mtime,
            nlink,
            rdev: 0,
        })
    }

    fn view_attr(&self, view: &View, p: PlacementId, i: u32) -> Result<Attr> {
        if i == 0 {
            let node = self.placement_node(p).ok_or(FsError::NotFound)?;
            return self.static_attr(node);
        }
        view.attr(i, Ino::View(p, i).encode(), self.tree.image_set().mtime)
            .ok_or(FsError::NotFound)
    }

    /// Looks `name` up in directory `parent` (`.` and `..` included, as NFS export needs).
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        // The kernel resolves a file handle whose inode it no longer caches (NFS export,
        // open_by_handle_at) with LOOKUP(ino, "."), for every file type, not only directories.
        if name == b"." {
            return self.getattr(parent);
        }
        match self.place(parent)? {
            Ok(id) => {
                let node = self.node(id)?;
                if !matches!(node.kind, NodeKind::Dir { .. }) {
                    return Err(FsError::NotDir);
                }
                let found = match name {
                    b"." => Some(id),
                    b".." => Some(node.parent),
                    n => self.tree.lookup(id, n),
                };
                self.getattr(Ino::Static(found.ok_or(FsError::NotFound)?).encode())
            }
            Err(InView { p, view, i }) => {
                if view.kind(i) != Some(InodeKind::Dir) {
                    return Err(FsError::NotDir);
                }
                let target = match name {
                    b"." => i,
                    b".." if i == 0 => {
                        let node = self.placement_node(p).ok_or(FsError::NotFound)?;
                        let parent = self.node(node)?.parent;
                        return self.static_attr(parent);
                    }
                    b".." => view.parent(i).ok_or(FsError::NotFound)?,
                    n => view.lookup(i, n).ok_or(FsError::NotFound)?,
                };
                self.view_attr(&view, p, target)
            }
        }
    }

    /// Entries of a directory, `.` and `..` first, from position `offset`; `add` returns true
    /// when the caller's buffer is full.
    pub fn readdir(&self, ino: u64, offset: u64, mut add: impl FnMut(u64, Kind, &[u8]) -> bool) -> Result<()> {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        match self.place(ino)? {
            Ok(id) => {
                let node = self.node(id)?;
                let NodeKind::Dir { children } = &node.kind else {
                    return Err(FsError::NotDir);
                };
                let dots = [
                    (ino, Kind::Dir, &b"."[..]),
                    (Ino::Static(node.parent).encode(), Kind::Dir, &b".."[..]),
                ];
                let rest = children.iter().filter_map(|c| {
                    let n = self.tree.get(*c)?;
                    let kind = match n.kind {
                        NodeKind::File { .. } => Kind::File,
                        NodeKind::Symlink { .. } => Kind::Symlink,
                        NodeKind::Dir { .. } | NodeKind::View(_) => Kind::Dir,
                    };
                    Some((Ino::Static(*c).encode(), kind, n.name.as_ref()))
                });
                for (ino, kind, name) in dots.into_iter().chain(rest).skip(offset) {
                    if add(ino, kind, name) {
                        break;
                    }
                }
            }
            Err(InView { p, view, i }) => {
                if view.kind(i) != Some(InodeKind::Dir) {
                    return Err(FsError::NotDir);
                }
                let parent = if i == 0 {
                    let node = self.placement_node(p).ok_or(FsError::NotFound)?;
                    Ino::Static(self.node(node)?.parent).encode()
                } else {
                    self.view_ino(p, view.parent(i).unwrap_or(0))
                };
                let dots = [
                    (self.view_ino(p, i), Kind::Dir, &b"."[..]),
                    (parent, Kind::Dir, &b".."[..]),
                ];
                // Offsets 0 and 1 are the dots; the rest index the names directly, so reading a
                // huge directory in many calls stays linear.
                let rest = view.children_from(i, offset.saturating_sub(2)).map(|(name, c)| {
                    let kind = view.kind(c).unwrap_or(Kind::File);
                    (Ino::View(p, c).encode(), kind, name)
                });
                let dots = dots.into_iter().skip(offset);
                for (ino, kind, name) in dots.chain(rest) {
                    if add(ino, kind, name) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Prepares an inode for reading: starts verification of an unverified blob.
    pub fn open(&self, ino: u64) -> Result<()> {
        match self.place(ino)? {
            Ok(id) => match &self.node(id)?.kind {
                NodeKind::File {
                    content: Content::Blob(d),
                    ..
                } => {
                    self.verifier.start(d);
                    Ok(())
                }
                NodeKind::File { .. } => Ok(()),
                // The kernel follows a symlink before opening; nothing opens the link itself.
                NodeKind::Symlink { .. } => Err(FsError::NotFound),
                _ => Err(FsError::IsDir),
            },
            Err(InView { view, i, .. }) => match view.kind(i) {
                Some(InodeKind::Dir) => Err(FsError::IsDir),
                Some(_) => Ok(()),
                None => Err(FsError::NotFound),
            },
        }
    }

    /// Reads up to `size` bytes at `offset`.
    pub fn read(&self, ino: u64, offset: u64, size: usize) -> Result<Vec<u8>> {
        let (reader, name): (Arc<dyn crate::blob::ReadAt>, Cow<str>) = match self.place(ino)? {
            Ok(id) => {
                let node = self.node(id)?;
                let NodeKind::File { content, size: len } = &node.kind else {
                    return Err(FsError::IsDir);
                };
                let mut checked = None;
                if let Content::TarSplit(d, diff_id) = content {
                    checked = Some(self.tar_split(d, diff_id.as_deref())? as Arc<dyn crate::blob::ReadAt>);
                }
                if let Content::Blob(d) = content {
                    // A read that reaches the end waits for the blob's verification.
                    let at_end = offset.saturating_add(size as u64) >= *len;
                    self.verifier.check(d, at_end).map_err(read_error)?;
                    // A layer with a cached index is read through its chunk digests.
                    checked = self.verifier.reader(d);
                }
                let reader = match checked {
                    Some(r) => r,
                    None => self.tree.reader(content).map_err(read_error)?,
                };
                (reader, String::from_utf8_lossy(&node.name))
            }
            Err(InView { view, i, .. }) => {
                let file = view.file(i).ok_or(if view.kind(i) == Some(InodeKind::Dir) {
                    FsError::IsDir
                } else {
                    FsError::NotFound
                })?;
                (Arc::new(file), Cow::Owned(format!("inode {ino}")))
            }
        };
        let end = offset.saturating_add(size as u64);
        if self.sequential.follows(ino, offset, end) {
            reader.read_ahead(end, reader.len());
        }
        read_range(reader.as_ref(), offset, size).map_err(|e| {
            if self.read_errors.first(ino) {
                log::error!("read of {name} at {offset}: {e} (further read errors of this file are not logged)");
            }
            read_error(e)
        })
    }

    /// True for a file whose size is unknown until it is read (tar-split data): the kernel must
    /// read it to its end rather than trust the size `getattr` gave (FUSE direct I/O).
    pub fn direct_io(&self, ino: u64) -> bool {
        let Some(Ino::Static(id)) = Ino::decode(ino) else {
            return false;
        };
        matches!(
            self.tree.get(id).map(|n| &n.kind),
            Some(NodeKind::File {
                content: Content::TarSplit(..),
                ..
            })
        )
    }

    /// The tar-split data of layer `digest`, made from its index on first use (reading the whole
    /// layer once; `podman save`/`push` read the whole layer anyway).
    fn tar_split(&self, digest: &crate::digest::Digest, diff_id: Option<&str>) -> Result<Arc<Vec<u8>>> {
        if let Some(b) = self.tar_splits.lock().unwrap_or_else(|e| e.into_inner()).get(digest) {
            return Ok(b.clone());
        }
        let layer = self.views.layer(digest, diff_id)?;
        let started = std::time::Instant::now();
        let bytes = crate::containers_storage::tarsplit::generate(&layer.index.entries, layer.stream.as_ref())
            .map_err(|e| {
                log::error!("tar-split of layer {digest}: {e}");
                read_error(std::io::Error::other(e.to_string()))
            })?;
        log::info!(
            "tar-split of layer {digest}: {} bytes in {:.1} ms",
            bytes.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let bytes = Arc::new(bytes);
        let mut made = self.tar_splits.lock().unwrap_or_else(|e| e.into_inner());
        Ok(made.entry(digest.clone()).or_insert(bytes).clone())
    }

    /// Target of a symlink.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        match self.place(ino)? {
            Ok(id) => match &self.node(id)?.kind {
                NodeKind::Symlink { target } => Ok(target.to_vec()),
                _ => Err(FsError::NotLink),
            },
            Err(InView { view, i, .. }) => view.readlink(i).map(<[u8]>::to_vec).ok_or(FsError::NotLink),
        }
    }

    /// Extended attributes of an inode (name, value).
    pub fn xattrs(&self, ino: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self.place(ino)? {
            Ok(_) => Ok(Vec::new()),
            Err(InView { view, i, .. }) => Ok(view
                .xattrs(i, self.overlay_opaque)
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect()),
        }
    }

    /// True for the root of a view (`rootfs/`, `layers/<n>/`, `overlay/<n>/`, or the root of a
    /// one-image mount): the image root a symlink inside the view resolves against (`crate::show::walk`).
    pub fn is_view_root(&self, ino: u64) -> bool {
        matches!(
            Ino::decode(ino).and_then(|i| match i {
                Ino::Static(id) => self.tree.get(id).map(|n| matches!(n.kind, NodeKind::View(_))),
                Ino::View(..) => None,
            }),
            Some(true)
        )
    }

    /// Resolves a slash-separated path from the root (for `imgfs ls` / `cat`).
    pub fn resolve(&self, path: &str) -> Result<u64> {
        let mut ino = Self::ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = self.lookup(ino, part.as_bytes())?.ino;
        }
        Ok(ino)
    }

    /// (total bytes of blobs, number of static nodes) for statfs.
    pub fn usage(&self) -> (u64, u64) {
        (self.tree.total_bytes(), self.tree.len() as u64)
    }
}

/// Reads `[offset, offset+size)` (short at the end of the data).
fn read_range(r: &dyn crate::blob::ReadAt, offset: u64, size: usize) -> std::io::Result<Vec<u8>> {
    let want = size.min(r.len().saturating_sub(offset).min(usize::MAX as u64) as usize);
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match r.read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_are_recognised() {
        let s = Sequential::new();
        assert!(!s.follows(7, 0, 4096), "a first read is not yet a sequence");
        assert!(s.follows(7, 4096, 8192));
        assert!(
            s.follows(7, 4096 + 131_072, 300_000),
            "requests arrive a little shuffled"
        );
        assert!(!s.follows(7, 50 << 20, (50 << 20) + 10), "a jump is random access");
        assert!(!s.follows(8, 4096, 8192), "another file has its own history");
        assert!(!s.follows(7, 0, 10), "a read from the start begins a new sequence");
        for ino in 100..100 + Sequential::FILES as u64 {
            s.follows(ino, 0, 1);
        }
        assert!(!s.follows(7, 10, 20), "the least recently read files are forgotten");
    }

    #[test]
    fn inode_numbers_round_trip() {
        let cases = [
            Ino::Static(NodeId(0)),
            Ino::Static(NodeId(41)),
            Ino::View(PlacementId(0), 1),
            Ino::View(PlacementId(7), u32::MAX),
        ];
        for c in cases {
            assert_eq!(Ino::decode(c.encode()), Some(c));
        }
        assert_eq!(Ino::decode(0), None);
        assert_eq!(Ino::decode(1 << 32), None);
    }
}
