//! Verifying layer blobs when they are read (documents are verified when the source opens).
//!
//! A layer whose index is in the cache is read through its chunk digests (`blob::verified`):
//! every read checks the 64 KiB chunks it touches, so nothing is hashed in the background and a
//! damaged chunk fails only the reads that touch it.
//!
//! Hashing a multi-GB layer at mount time would make mounting slow, so the first open of an
//! unverified blob starts hashing it on a background thread while the reader goes on. A read
//! that reaches the blob's end waits for that result and fails with EIO on a mismatch, so no
//! reader can consume a whole blob whose bytes do not hash to its name.

use crate::blob::verified::VerifiedBlob;
use crate::blob::ReadAt;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::image::ImageSet;
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Clone)]
enum State {
    Running,
    Good,
    Bad,
    /// Read through the chunk digests of its cached layer index.
    Chunked(Arc<VerifiedBlob>),
}

/// Verification state of every blob of a mount.
pub struct Verifier {
    set: Arc<ImageSet>,
    cache: Cache,
    states: Mutex<HashMap<Digest, State>>,
    done: Condvar,
}

impl Verifier {
    /// A verifier for the blobs of `set`, finding layers' chunk digests in `cache`; blobs
    /// verified while opening count as good.
    pub fn new(set: Arc<ImageSet>, cache: Cache) -> Arc<Verifier> {
        let states = set
            .blobs
            .iter()
            .filter(|(_, b)| b.verified)
            .map(|(d, _)| (d.clone(), State::Good))
            .collect();
        Arc::new(Verifier {
            set,
            cache,
            states: Mutex::new(states),
            done: Condvar::new(),
        })
    }

    /// Starts hashing `digest` in the background unless it is verified or running already, or
    /// can be read through the chunk digests of its cached layer index.
    pub fn start(self: &Arc<Self>, digest: &Digest) {
        let Ok(mut states) = self.states.lock() else { return };
        if states.contains_key(digest) {
            return;
        }
        if let Some(chunked) = self.chunked(digest) {
            states.insert(digest.clone(), State::Chunked(Arc::new(chunked)));
            return;
        }
        if self.set.blobs.get(digest).is_some_and(|b| b.data.verifies_itself()) {
            return;
        }
        states.insert(digest.clone(), State::Running);
        drop(states);
        let this = self.clone();
        let digest = digest.clone();
        let spawned = std::thread::Builder::new()
            .name("imgfs-verify".into())
            .spawn(move || this.run(digest.clone()));
        if let Err(e) = spawned {
            log::warn!("cannot start verification thread: {e}");
        }
    }

    /// The blob read through its cached layer index's chunk digests, if there is such an index.
    fn chunked(&self, digest: &Digest) -> Option<VerifiedBlob> {
        let blob = self.set.blobs.get(digest)?.data.clone();
        let digests = crate::layer::cached_chunk_digests(&self.cache, digest, blob.len())?;
        VerifiedBlob::new(blob, Arc::new(digests), digest.clone()).ok()
    }

    /// What reads of `digest` go through: its chunk-verified form when it has one.
    pub fn reader(&self, digest: &Digest) -> Option<Arc<dyn ReadAt>> {
        match self.states.lock().ok()?.get(digest) {
            Some(State::Chunked(v)) => Some(v.clone() as Arc<dyn ReadAt>),
            _ => None,
        }
    }

    fn run(&self, digest: Digest) {
        let result = self.hash(&digest);
        let state = match result {
            Ok(actual) if actual == digest => State::Good,
            Ok(actual) => {
                log::error!("blob {digest}: bytes hash to {actual}; reads of it fail with EIO");
                State::Bad
            }
            Err(e) => {
                log::error!("blob {digest}: cannot be read to verify it: {e}");
                State::Bad
            }
        };
        if let Ok(mut states) = self.states.lock() {
            states.insert(digest, state);
        }
        self.done.notify_all();
    }

    fn hash(&self, digest: &Digest) -> io::Result<Digest> {
        let blob = self
            .set
            .blobs
            .get(digest)
            .ok_or_else(|| io::Error::other("unknown blob"))?;
        let mut reader = crate::blob::Cursor::new(blob.data.as_ref(), 0);
        let mut hasher = digest.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher.finish());
            }
            hasher.update(&buf[..n]);
        }
    }

    /// Records a blob verified elsewhere (a layer's index pass hashes the whole blob). A blob
    /// read through its chunk digests stays so (its reads are checked anyway).
    pub fn mark_good(&self, digest: &Digest) {
        if let Ok(mut states) = self.states.lock() {
            if !matches!(states.get(digest), Some(State::Chunked(_))) {
                states.insert(digest.clone(), State::Good);
            }
        }
        self.done.notify_all();
    }

    /// Ok if the blob may be served: known good, or (unless `wait`) not known bad yet. With
    /// `wait`, blocks until a running verification ends.
    pub fn check(&self, digest: &Digest, wait: bool) -> io::Result<()> {
        let mut states = self
            .states
            .lock()
            .map_err(|_| io::Error::other("verifier lock poisoned"))?;
        loop {
            match states.get(digest) {
                Some(State::Bad) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("blob {digest} failed verification"),
                    ))
                }
                Some(State::Running) if wait => {
                    states = self
                        .done
                        .wait(states)
                        .map_err(|_| io::Error::other("verifier lock poisoned"))?;
                }
                _ => return Ok(()),
            }
        }
    }
}
