//! What each layer of a mount is doing (not needed yet, downloading, indexing, ready, failed),
//! with bytes done and the last error: `imgfs status` shows it (the daemon writes it to its
//! status file, docs/operations.md). Updated by the layer store; read at any time. The long
//! steps of opening a source (seek index of a compressed archive, hashing an unnamed layer)
//! report to [`opening`] the same way. `bars.rs` draws all of it on a terminal.

pub mod bars;

use crate::blob::ReadAt;
use crate::digest::Digest;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where a layer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerState {
    /// Nothing asked for its files yet.
    NotNeeded,
    /// Its blob is being fetched from the registry (and indexed as it arrives).
    Downloading,
    /// Its local blob is being indexed.
    Indexing,
    /// Indexed (or its index loaded from the cache).
    Ready,
    /// The last attempt failed (see the error).
    Failed,
}

impl LayerState {
    fn from_u8(v: u8) -> LayerState {
        match v {
            1 => LayerState::Downloading,
            2 => LayerState::Indexing,
            3 => LayerState::Ready,
            4 => LayerState::Failed,
            _ => LayerState::NotNeeded,
        }
    }

    /// The words `imgfs status` prints.
    pub fn text(self) -> &'static str {
        match self {
            LayerState::NotNeeded => "not needed",
            LayerState::Downloading => "downloading",
            LayerState::Indexing => "indexing",
            LayerState::Ready => "ready",
            LayerState::Failed => "failed",
        }
    }
}

/// The last failure of a layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastError {
    /// The one-line reason (as logged).
    pub message: String,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// True when a later access tries again (the registry was down, ...); false for wrong or
    /// corrupt data, which stays failed.
    pub transient: bool,
}

/// One layer's progress, shared by the store (writer) and the status file (reader).
pub struct LayerProgress {
    state: AtomicU8,
    done: AtomicU64,
    total: u64,
    error: Mutex<Option<LastError>>,
}

impl LayerProgress {
    /// Enters `state`; a new attempt starts counting from zero.
    pub fn set(&self, state: LayerState) {
        if matches!(state, LayerState::Downloading | LayerState::Indexing) {
            self.done.store(0, Ordering::Relaxed);
        }
        if state == LayerState::Ready {
            self.done.store(self.total, Ordering::Relaxed);
        }
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Records a failure.
    pub fn fail(&self, message: String, transient: bool) {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastError { message, at, transient });
        self.set(LayerState::Failed);
    }

    /// `blob` seen through this progress: every read advances "bytes done".
    pub fn counting<'a>(&'a self, blob: &'a dyn ReadAt) -> Counting<'a> {
        Counting { inner: blob, p: self }
    }
}

/// A blob whose reads advance a layer's "bytes done" (the indexer reads it in order).
pub struct Counting<'a> {
    inner: &'a dyn ReadAt,
    p: &'a LayerProgress,
}

impl ReadAt for Counting<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        self.p.done.fetch_max(offset + n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn advise_sequential(&self) {
        self.inner.advise_sequential()
    }
    fn read_ahead(&self, from: u64, to: u64) {
        self.inner.read_ahead(from, to)
    }
    fn verifies_itself(&self) -> bool {
        self.inner.verifies_itself()
    }
    fn read_raw_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.inner.read_raw_at(buf, offset)?;
        self.p.done.fetch_max(offset + n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A layer as `imgfs status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerReport {
    /// The layer's digest.
    pub digest: String,
    /// Where it stands.
    pub state: LayerState,
    /// Bytes of the blob read (downloaded or indexed) so far.
    pub done: u64,
    /// Size of the blob.
    pub total: u64,
    /// The last failure, if any (kept after a later success is not: a ready layer has none).
    pub error: Option<LastError>,
}

/// Every layer of a mount (or every step of opening sources, [`opening`]).
#[derive(Default)]
pub struct Progress {
    layers: Mutex<BTreeMap<String, Arc<LayerProgress>>>,
}

/// The long steps of opening sources in this process, each named by what it works on (the
/// `digest` field of its report): building the seek index of a compressed archive, hashing a
/// docker-archive layer to name it.
pub fn opening() -> Arc<Progress> {
    static OPENING: std::sync::OnceLock<Arc<Progress>> = std::sync::OnceLock::new();
    OPENING.get_or_init(Arc::default).clone()
}

impl Progress {
    /// The progress of a layer of `total` bytes, created "not needed" on first mention.
    pub fn layer(&self, digest: &Digest, total: u64) -> Arc<LayerProgress> {
        self.task(&digest.to_string(), total)
    }

    /// The progress of the work called `name` over `total` bytes, created "not needed" on
    /// first mention.
    pub fn task(&self, name: &str, total: u64) -> Arc<LayerProgress> {
        let mut layers = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        layers
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(LayerProgress {
                    state: AtomicU8::new(LayerState::NotNeeded as u8),
                    done: AtomicU64::new(0),
                    total,
                    error: Mutex::new(None),
                })
            })
            .clone()
    }

    /// A snapshot, in digest order.
    pub fn report(&self) -> Vec<LayerReport> {
        let layers = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        layers
            .iter()
            .map(|(d, p)| {
                let state = LayerState::from_u8(p.state.load(Ordering::Relaxed));
                LayerReport {
                    digest: d.clone(),
                    state,
                    done: p.done.load(Ordering::Relaxed),
                    total: p.total,
                    error: match state {
                        LayerState::Ready => None,
                        _ => p.error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_bytes() {
        let p = Progress::default();
        let d = Digest::sha256_from_raw([7; 32]);
        let l = p.layer(&d, 10);
        assert_eq!(p.report()[0].state, LayerState::NotNeeded);
        l.set(LayerState::Indexing);
        let data = vec![1u8; 10];
        let mut buf = [0u8; 4];
        l.counting(&data).read_at(&mut buf, 2).unwrap();
        assert_eq!(p.report()[0].done, 6);
        l.fail("down".into(), true);
        let r = &p.report()[0];
        assert_eq!(
            (r.state, r.error.as_ref().map(|e| e.transient)),
            (LayerState::Failed, Some(true))
        );
        l.set(LayerState::Ready);
        assert_eq!((p.report()[0].done, p.report()[0].error.clone()), (10, None));
    }
}
