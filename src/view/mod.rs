//! Filesystem views of images: the merged `rootfs/` of a manifest, the `layers/<n>/` tree of
//! each layer and its overlay-ready form `overlay/<n>/`, built lazily on first access and then
//! immutable.
//!
//! A *placement* is one place in the static tree where a view appears (the same manifest under
//! two refs has two placements, so no directory ever has two parents). The data behind a view
//! (merged tree plus the indexed layers) is shared by all placements of the same manifest or
//! layer, and every layer is indexed once per mount through the [`LayerStore`].

mod attr;
pub mod persist;

use crate::digest::Digest;
use crate::image::{LayerInfo, ManifestInfo};
use crate::layer::entries::{Entries, Meta};
use crate::layer::file::FileData;
use crate::layer::{Layer, LayerError, LayerStore};
use crate::merge::{self, EntryRef, InodeKind, MergedTree};
use crate::tarindex::EntryKind;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use attr::Attr;

/// How many merge warnings are logged one by one before only a count is given.
const MAX_LOGGED_WARNINGS: usize = 20;

/// Index into the placements of a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlacementId(pub u32);

/// What a placement shows.
#[derive(Debug, Clone)]
pub enum ViewSpec {
    /// The merged layers of a manifest.
    Rootfs(Arc<ManifestInfo>),
    /// One layer as stored: layer `n` of the manifest (shared with its other views).
    Layer(Arc<ManifestInfo>, usize),
    /// Layer `n` of the manifest, overlay-ready (`merge::overlay`): whiteouts are character
    /// devices 0:0, opaque directories carry `trusted.overlay.opaque=y` and
    /// `user.overlay.opaque=y`, no `.wh.` name appears. Stacking the views of layers `n..0` as
    /// overlayfs lower directories shows the rootfs. Place it anywhere (`images/<ref>/overlay/<n>/`,
    /// a containers-storage `overlay/<id>/diff`): the tree is built once per mount for each
    /// chain of layers (layers `0..=n` by digest) however many places show it.
    Overlay(Arc<ManifestInfo>, usize),
}

/// What identifies the data of a view: placements with the same key share one build.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ViewKey {
    /// A rootfs, by manifest digest.
    Rootfs(Digest),
    /// A layer as stored, by layer digest.
    Layer(Digest),
    /// An overlay-ready layer, by the digests of the layers up to and including it.
    Overlay(Vec<Digest>),
}

impl ViewSpec {
    /// Views built once per mount: a rootfs per manifest, a layer tree per layer digest, an
    /// overlay tree per chain of layers.
    fn key(&self) -> Option<ViewKey> {
        match self {
            ViewSpec::Rootfs(m) => Some(ViewKey::Rootfs(m.digest.clone())),
            ViewSpec::Layer(..) => Some(ViewKey::Layer(self.layer()?.digest.clone())),
            ViewSpec::Overlay(m, n) => Some(ViewKey::Overlay(
                m.layers.get(..=*n)?.iter().map(|l| l.digest.clone()).collect(),
            )),
        }
    }

    /// The layers a view needs (bottom first), as (digest, diff_id).
    fn wanted_layers(&self) -> Vec<(Digest, Option<String>)> {
        let of = |ls: &[LayerInfo]| ls.iter().map(|l| (l.digest.clone(), l.diff_id.clone())).collect();
        match self {
            ViewSpec::Rootfs(m) => of(&m.layers),
            ViewSpec::Layer(..) => self.layer().map(std::slice::from_ref).map_or_else(Vec::new, of),
            ViewSpec::Overlay(m, n) => m.layers.get(..=*n).map_or_else(Vec::new, of),
        }
    }

    /// The layers that must all be in the source (a foreign layer may be absent).
    fn needs_all_of(&self) -> Option<(&ManifestInfo, &[LayerInfo])> {
        match self {
            ViewSpec::Rootfs(m) => Some((m, &m.layers)),
            ViewSpec::Layer(..) => None,
            ViewSpec::Overlay(m, n) => Some((m, m.layers.get(..=*n)?)),
        }
    }

    /// "rootfs of sha256:..." / "tree of layer sha256:...", for messages.
    fn describe(&self) -> String {
        match self {
            ViewSpec::Rootfs(m) => format!("rootfs of {}", m.digest),
            ViewSpec::Layer(..) | ViewSpec::Overlay(..) => {
                let what = match self {
                    ViewSpec::Overlay(..) => "overlay tree",
                    _ => "tree",
                };
                match self.layer() {
                    Some(l) => format!("{what} of layer {}", l.digest),
                    None => format!("{what} of a layer"),
                }
            }
        }
    }

    /// The layer of a layer or overlay view (`tree::build` only makes views of layers that exist).
    fn layer(&self) -> Option<&LayerInfo> {
        match self {
            ViewSpec::Rootfs(_) => None,
            ViewSpec::Layer(m, n) | ViewSpec::Overlay(m, n) => m.layers.get(*n),
        }
    }
}

/// What [`Views::build_all`] built.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BuildSummary {
    /// Placements of merged rootfs trees built.
    pub rootfs: usize,
    /// Placements of single-layer trees built.
    pub layer_trees: usize,
    /// Placements of overlay-ready layer trees built.
    pub overlay_trees: usize,
    /// Layers ready (indexed, or their index loaded from the cache).
    pub layers: usize,
    /// Rootfs placements left out: their image lacks a layer (foreign layers).
    pub left_out: usize,
}

impl std::fmt::Display for BuildSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rootfs, {} layer trees and {} overlay trees over {} layers",
            self.rootfs, self.layer_trees, self.overlay_trees, self.layers
        )?;
        if self.left_out > 0 {
            write!(f, " ({} rootfs left out: layers not in the source)", self.left_out)?;
        }
        Ok(())
    }
}

/// The extended attribute that makes overlayfs mounted by root treat a directory as opaque.
const TRUSTED_OPAQUE: (&[u8], &[u8]) = (b"trusted.overlay.opaque", b"y");
/// The same for overlayfs mounted with `-o userxattr` (rootless).
const USER_OPAQUE: (&[u8], &[u8]) = (b"user.overlay.opaque", b"y");

/// Which opaque markers the directories of overlay views carry (`-o overlay_opaque=`).
/// overlayfs hides only the attributes of the mode it runs in, so with `Both` the other one is
/// visible on opaque directories of the merged tree; with one of them, that mode only works.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OpaqueXattrs {
    /// `trusted.overlay.opaque` and `user.overlay.opaque`: right for every overlay mount.
    #[default]
    Both,
    /// `trusted.overlay.opaque` only (overlayfs mounted by root, without `userxattr`).
    Trusted,
    /// `user.overlay.opaque` only (overlayfs with `userxattr`, rootless).
    User,
}

impl OpaqueXattrs {
    /// The attributes marking an opaque directory.
    fn markers(self) -> &'static [(&'static [u8], &'static [u8])] {
        match self {
            OpaqueXattrs::Both => &[TRUSTED_OPAQUE, USER_OPAQUE],
            OpaqueXattrs::Trusted => &[TRUSTED_OPAQUE],
            OpaqueXattrs::User => &[USER_OPAQUE],
        }
    }
}

/// Prefixes of the attributes overlayfs interprets (redirects, metacopy, opaque...): a layer's
/// own attributes with these names are not shown in overlay views, where they would steer the
/// kernel instead of describing a file.
const OVERLAY_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// A built view: a merged tree over indexed layers.
pub struct View {
    tree: MergedTree,
    layers: Vec<Arc<Layer>>,
    /// Overlay views: the opaque directories (sorted); `None` for the other views.
    opaque: Option<Vec<u32>>,
}

/// Why a view cannot be shown (already logged once).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// No view is placed there.
    #[error("no such view")]
    NoSuchView,
    /// A rootfs needs a layer the source does not have (a foreign layer).
    #[error("image {image}: layer {layer} is not in the source; its rootfs cannot be shown")]
    LayerAbsent {
        /// The manifest.
        image: Digest,
        /// The layer it lacks.
        layer: Digest,
    },
    /// A layer could not be indexed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// No thread could be started for the build (tried again later).
    #[error("cannot start a thread to build the view: {0}")]
    NoThread(Arc<std::io::Error>),
    /// The caller gave up waiting (a signal); the build goes on for the next access.
    #[error("interrupted while the view was being built")]
    Interrupted,
}

impl ViewError {
    /// True when building the view again later may succeed (see [`LayerError::is_transient`]).
    pub fn is_transient(&self) -> bool {
        match self {
            ViewError::Layer(e) => e.is_transient(),
            ViewError::NoThread(_) => true,
            _ => false,
        }
    }
}

/// First wait before a view that failed for a transient reason is built again; doubled after
/// each failure up to [`MAX_RETRY_AFTER`].
const FIRST_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How often a waiting caller checks whether it was interrupted.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// Where the build of one view stands.
enum BuildState {
    /// Never asked for, or a transient failure may be retried now.
    Idle,
    /// A thread is building it.
    Building,
    /// Built: immutable from now on.
    Ready(Arc<View>),
    /// The last build failed `failures` times in a row, the last one at `at`.
    Failed {
        error: ViewError,
        at: Instant,
        failures: u32,
    },
}

/// One view's build, shared by its placements and waited on by its readers.
struct Slot {
    state: Mutex<BuildState>,
    changed: Condvar,
}

/// All views of a mount.
pub struct Views {
    specs: Vec<ViewSpec>,
    store: LayerStore,
    built: Mutex<HashMap<ViewKey, Arc<Slot>>>,
}

impl Views {
    /// Views for the placements `specs` (indexed by [`PlacementId`]).
    pub fn new(specs: Vec<ViewSpec>, store: LayerStore) -> Views {
        Views {
            specs,
            store,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The layers under the views (to set how they are indexed before any is built).
    pub fn layers(&self) -> &LayerStore {
        &self.store
    }

    /// Number of placements.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when there are no placements.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The indexed layer `digest` (indexing it now if no view did yet).
    pub fn layer(&self, digest: &Digest, diff_id: Option<&str>) -> Result<Arc<Layer>, ViewError> {
        Ok(self.store.get(digest, diff_id)?)
    }

    /// What each layer is doing (`imgfs status`).
    pub fn progress(&self) -> Arc<crate::progress::Progress> {
        self.store.progress()
    }

    /// The view at a placement, building it on first use. The build runs on a thread of its
    /// own, so a caller that `interrupted` (polled every 100 ms) says gave up gets
    /// [`ViewError::Interrupted`] at once while the build goes on for the next access. A view
    /// that failed for a transient reason is built again on an access after a backoff (1 s,
    /// doubling up to 60 s); a permanent failure stays.
    pub fn get(self: &Arc<Self>, p: PlacementId, interrupted: &dyn Fn() -> bool) -> Result<Arc<View>, ViewError> {
        let spec = self.specs.get(p.0 as usize).ok_or(ViewError::NoSuchView)?;
        let key = spec.key().ok_or(ViewError::NoSuchView)?;
        let slot = {
            let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
            built
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Slot {
                        state: Mutex::new(BuildState::Idle),
                        changed: Condvar::new(),
                    })
                })
                .clone()
        };
        let mut state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &*state {
                BuildState::Ready(v) => return Ok(v.clone()),
                BuildState::Failed { error, at, failures } => {
                    let wait = FIRST_RETRY_AFTER
                        .saturating_mul(1 << (*failures - 1).min(6))
                        .min(MAX_RETRY_AFTER);
                    if !error.is_transient() || at.elapsed() < wait {
                        return Err(error.clone());
                    }
                    log::info!("building {} again after a transient failure", spec.describe());
                    self.start_build(&slot, &mut state, p);
                }
                BuildState::Idle => self.start_build(&slot, &mut state, p),
                BuildState::Building => {
                    if interrupted() {
                        return Err(ViewError::Interrupted);
                    }
                    state = slot
                        .changed
                        .wait_timeout(state, INTERRUPT_POLL)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Starts the build of the view at `p` on a thread (inline if no thread can be had).
    fn start_build(self: &Arc<Self>, slot: &Arc<Slot>, state: &mut BuildState, p: PlacementId) {
        let failures = match state {
            BuildState::Failed { failures, .. } => *failures,
            _ => 0,
        };
        let Some(spec) = self.specs.get(p.0 as usize) else {
            return;
        };
        if failures > 0 {
            for (d, _) in spec.wanted_layers() {
                self.store.forget_transient_failure(&d);
            }
        }
        *state = BuildState::Building;
        let (views, slot2) = (Arc::clone(self), Arc::clone(slot));
        let work = move || {
            let spec = &views.specs[p.0 as usize];
            let result = views.build(spec).map(Arc::new);
            let mut state = slot2.state.lock().unwrap_or_else(|e| e.into_inner());
            *state = match result {
                Ok(v) => BuildState::Ready(v),
                Err(error) => BuildState::Failed {
                    error,
                    at: Instant::now(),
                    failures: failures + 1,
                },
            };
            slot2.changed.notify_all();
        };
        let spawned = std::thread::Builder::new().name("imgfs-view".into()).spawn(work);
        if let Err(e) = spawned {
            log::error!("cannot start a thread to build {}: {e}", spec.describe());
            *state = BuildState::Failed {
                error: ViewError::NoThread(Arc::new(e)),
                at: Instant::now(),
                failures: failures + 1,
            };
        }
    }

    /// Builds every view now (`imgfs mount --wait`): each placement's view, in order, each
    /// rootfs's layers indexed in parallel. Rootfs views of images that lack a layer (foreign
    /// layers) are left out and counted; any other failure ends the wait with the view's
    /// description and its error.
    pub fn build_all(self: &Arc<Self>) -> Result<BuildSummary, (String, ViewError)> {
        let mut summary = BuildSummary::default();
        for (i, spec) in self.specs.iter().enumerate() {
            match self.get(PlacementId(i as u32), &|| false) {
                Ok(_) => match spec {
                    ViewSpec::Rootfs(_) => summary.rootfs += 1,
                    ViewSpec::Layer(..) => summary.layer_trees += 1,
                    ViewSpec::Overlay(..) => summary.overlay_trees += 1,
                },
                Err(ViewError::LayerAbsent { .. }) => summary.left_out += 1,
                Err(e) => return Err((spec.describe(), e)),
            }
        }
        summary.layers = self
            .progress()
            .report()
            .iter()
            .filter(|l| l.state == crate::progress::LayerState::Ready)
            .count();
        Ok(summary)
    }

    /// The cache files these views use or will use: each layer's index and (registry sources)
    /// downloaded blob, each rootfs's merged tree, and every other file the mount's cache read. A mount lists them in its status file so
    /// `imgfs cache prune` leaves them alone.
    pub fn cache_files(&self) -> Vec<crate::cache::CacheUse> {
        use crate::cache::CacheUse;
        let mut out = Vec::new();
        for spec in &self.specs {
            for (d, _) in spec.wanted_layers() {
                out.push(CacheUse {
                    name: crate::layer::cache_file(&d),
                    what: format!("index of layer {d}"),
                });
                out.push(CacheUse {
                    name: crate::cache::file_name("blob", &format!("{}-{}", d.algorithm().name(), d.hex())),
                    what: format!("download of layer {d}"),
                });
            }
            if let ViewSpec::Rootfs(m) = spec {
                let digests: Vec<Digest> = m.layers.iter().map(|l| l.digest.clone()).collect();
                out.push(CacheUse {
                    name: crate::cache::file_name("view", &persist::key(&digests)),
                    what: format!("rootfs of {}", m.digest),
                });
            }
        }
        // Whatever else this mount opened (seek indexes, registry documents, layer digests).
        for name in self.store.cache().used() {
            if !out.iter().any(|u| u.name == name) {
                out.push(CacheUse {
                    name,
                    what: "used by this mount".to_owned(),
                });
            }
        }
        out.sort();
        out.dedup_by(|a, b| a.name == b.name);
        out
    }

    /// Loads, on a background thread, the first rootfs view whose merged tree is in the cache
    /// (its layers were indexed by an earlier mount), so that a mount's first access finds it
    /// ready or half loaded. Views that would need indexing or merging stay lazy: that is
    /// seconds of work and memory nobody may ask for. At most one view, for the same reason.
    pub fn warm_up(self: &Arc<Self>) {
        let cached = self.specs.iter().position(|spec| match spec {
            ViewSpec::Rootfs(m) => {
                let digests: Vec<Digest> = m.layers.iter().map(|l| l.digest.clone()).collect();
                m.layers.iter().all(|l| l.present) && self.store.cache().contains("view", &persist::key(&digests))
            }
            ViewSpec::Layer(..) | ViewSpec::Overlay(..) => false,
        });
        let Some(p) = cached else { return };
        let views = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("imgfs-warm-up".into())
            .spawn(move || views.get(PlacementId(p as u32), &|| false).map(|_| ()));
        if let Err(e) = started {
            log::debug!("no warm-up thread ({e}); views load on first access");
        }
    }

    fn build(&self, spec: &ViewSpec) -> Result<View, ViewError> {
        if let Some((m, needed)) = spec.needs_all_of() {
            if let Some(l) = needed.iter().find(|l| !l.present) {
                let e = ViewError::LayerAbsent {
                    image: m.digest.clone(),
                    layer: l.digest.clone(),
                };
                log::error!("{e}");
                return Err(e);
            }
        }
        let wanted = spec.wanted_layers();
        if wanted.is_empty() && !matches!(spec, ViewSpec::Rootfs(_)) {
            return Err(ViewError::NoSuchView);
        }
        let key = matches!(spec, ViewSpec::Rootfs(_)).then(|| {
            let digests: Vec<Digest> = wanted.iter().map(|(d, _)| d.clone()).collect();
            persist::key(&digests)
        });
        // A cached rootfs tree needs the layers only for a last check, so it loads on another
        // core while the layer indexes load (a warm mount's first access waits for both).
        let (layers, cached) = std::thread::scope(|s| {
            let cache = self.store.cache();
            let cached = key.as_deref().map(|k| s.spawn(move || load_tree(cache, k)));
            let layers = self.store.get_all(&wanted);
            (layers, cached.and_then(|h| h.join().ok()).flatten())
        });
        let layers = layers?;
        // A cached tree was loaded beside the layers: its time is not in this figure.
        let started = std::time::Instant::now();
        let entries: Vec<&Entries> = layers.iter().map(|l| &l.index.entries).collect();
        let empty = Entries::new();
        let mut opaque = None;
        let (tree, warnings, how) = match (key, spec) {
            (Some(key), _) => self.merged(&key, cached, &entries),
            (None, ViewSpec::Overlay(..)) => {
                let (t, warnings) = merge::overlay::overlay_layer(&entries);
                opaque = Some(t.opaque);
                (t.tree, warnings, "merged")
            }
            (None, _) => {
                let (tree, warnings) = merge::layer_tree(entries.first().copied().unwrap_or(&empty));
                (tree, warnings, "merged")
            }
        };
        let context = spec.describe();
        log::info!(
            "{context}: {} inodes {how} in {:.1} ms",
            tree.inodes().len(),
            started.elapsed().as_secs_f64() * 1e3
        );
        for w in warnings.iter().take(MAX_LOGGED_WARNINGS) {
            log::warn!("{context}: {w}");
        }
        if warnings.len() > MAX_LOGGED_WARNINGS {
            log::warn!(
                "... and {} more entries dropped while merging",
                warnings.len() - MAX_LOGGED_WARNINGS
            );
        }
        drop(warnings);
        release_free_memory();
        Ok(View { tree, layers, opaque })
    }

    /// The merged tree of a rootfs: the `cached` one if it fits these layers, else merged now
    /// (and stored under `key`). Warnings are only known (and logged) when merging.
    fn merged(
        &self,
        key: &str,
        cached: Option<MergedTree>,
        entries: &[&Entries],
    ) -> (MergedTree, Vec<merge::Warning>, &'static str) {
        if let Some(tree) = cached {
            match persist::check_refs(&tree, entries) {
                Ok(()) => return (tree, Vec::new(), "loaded from the cache"),
                Err(e) => log::warn!("cached rootfs tree {key} is unusable ({e}); merging again"),
            }
        }
        let (tree, warnings) = merge::merge(entries);
        self.store.cache().store("view", key, &persist::encode(&tree));
        (tree, warnings, "merged")
    }
}

impl View {
    /// Number of inodes (index 0 is the view's root directory).
    pub fn len(&self) -> usize {
        self.tree.inodes().len()
    }

    /// True if the view has no inodes (never: the root exists).
    pub fn is_empty(&self) -> bool {
        self.tree.inodes().is_empty()
    }

    fn entry(&self, r: EntryRef) -> Option<Meta<'_>> {
        self.layers.get(r.layer as usize)?.index.entries.meta(r.entry as usize)
    }

    fn inode(&self, i: u32) -> Option<&merge::Inode> {
        self.tree.inodes().get(i as usize)
    }

    /// Looks a name up in directory `dir`.
    pub fn lookup(&self, dir: u32, name: &[u8]) -> Option<u32> {
        self.tree.child(dir, name)
    }

    /// Children of a directory as (name, inode), sorted by name, from the `skip`-th on.
    pub fn children_from(&self, dir: u32, skip: usize) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.tree.children_from(dir, skip)
    }

    /// Parent directory of an inode.
    pub fn parent(&self, i: u32) -> Option<u32> {
        self.inode(i).map(|n| n.parent)
    }

    /// The kind of an inode.
    pub fn kind(&self, i: u32) -> Option<InodeKind> {
        self.inode(i).map(|n| n.kind())
    }

    /// Attributes of inode `i`, numbered `ino` (`default_mtime` for directories no tar entry
    /// describes).
    pub fn attr(&self, i: u32, ino: u64, default_mtime: std::time::SystemTime) -> Option<Attr> {
        let inode = self.inode(i)?;
        let entry = inode.entry().and_then(|r| self.entry(r));
        Some(Attr::new(ino, inode, entry.as_ref(), default_mtime))
    }

    /// Target of a symlink.
    pub fn readlink(&self, i: u32) -> Option<&[u8]> {
        let inode = self.inode(i)?;
        if inode.kind() != InodeKind::Symlink {
            return None;
        }
        self.entry(inode.entry()?)?.link
    }

    /// The bytes of a regular file.
    pub fn file(&self, i: u32) -> Option<FileData> {
        let inode = self.inode(i)?;
        let r = inode.entry()?;
        let entry = self.entry(r)?;
        if inode.kind() != InodeKind::File || entry.kind == EntryKind::Hardlink {
            return None;
        }
        Some(FileData::new(self.layers.get(r.layer as usize)?.stream.clone(), &entry))
    }

    /// Extended attributes of an inode: its tar entry's, and in overlay views the opaque
    /// markers overlayfs reads (`which` of them), without the entry's own `*.overlay.*` ones.
    pub fn xattrs(&self, i: u32, which: OpaqueXattrs) -> Vec<(&[u8], &[u8])> {
        let own = self
            .inode(i)
            .and_then(|n| n.entry())
            .and_then(|r| self.entry(r))
            .map_or(&[][..], |e| e.xattrs)
            .iter()
            .map(|(k, v)| (&**k, &**v));
        let Some(opaque) = &self.opaque else {
            return own.collect();
        };
        let mut out: Vec<(&[u8], &[u8])> = own
            .filter(|(k, _)| !OVERLAY_XATTR_PREFIXES.iter().any(|p| k.starts_with(p)))
            .collect();
        if opaque.binary_search(&i).is_ok() {
            out.extend_from_slice(which.markers());
        }
        out
    }
}

/// The cached rootfs tree under `key`, used in place, if its file is intact (`persist::decode_mapped`).
fn load_tree(cache: &crate::cache::Cache, key: &str) -> Option<MergedTree> {
    let (map, payload) = cache.map("view", key)?;
    match persist::decode_mapped(map, payload) {
        Ok(tree) => Some(tree),
        Err(e) => {
            log::warn!("cached rootfs tree {key} is unusable ({e}); merging again");
            None
        }
    }
}

/// Hands memory freed by a view build back to the kernel. Building loads whole cache files and
/// merges through large temporary maps; glibc keeps such freed memory in its heaps (its mmap
/// threshold grows after the first big free), so without this a mounted image would keep
/// megabytes of garbage resident for its whole life.
#[allow(unsafe_code)]
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no Rust object is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
