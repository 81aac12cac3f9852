//! The digest of a layer's uncompressed stream (its diff_id), computed on a thread of its own
//! while the index pass decompresses and indexes: sha256 of a 1 GiB layer is most of a
//! CPU-second, which the pass's own thread otherwise spends between decoding and the tar
//! indexer (measured in docs/benchmarks.md, session 9).
//!
//! The pass hands over copies of its output in batches (a copy costs a tenth of the hashing)
//! through a short queue, so the thread never holds more than a few MiB; batch buffers come
//! back for reuse. When the thread cannot be started, the bytes are hashed in place.

use crate::digest::{Algorithm, Digest, Hasher};
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes handed to the thread at a time.
const BATCH: usize = 512 << 10;
/// Batches waiting for the thread; the pass waits when the thread is this far behind.
const QUEUE: usize = 4;

/// See the module doc.
pub(super) struct HashThread {
    /// Where batches go, and the thread hashing them; `None` when hashing in place.
    worker: Option<(SyncSender<Vec<u8>>, JoinHandle<Digest>)>,
    /// Emptied batch buffers coming back.
    spare: Option<Receiver<Vec<u8>>>,
    /// The batch being filled.
    pending: Vec<u8>,
    /// The hasher when no thread could be started.
    inline: Option<Hasher>,
}

impl HashThread {
    /// A hasher of `alg` on its own thread (in place if that thread cannot start).
    pub(super) fn new(alg: Algorithm) -> HashThread {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
        let spawned = std::thread::Builder::new().name("imgfs-diffid".into()).spawn(move || {
            let mut h = Hasher::new(alg);
            for mut batch in rx {
                h.update(&batch);
                batch.clear();
                // The pass may have finished and gone: the buffer is then just freed.
                let _ = back_tx.send(batch);
            }
            h.finish()
        });
        match spawned {
            Ok(handle) => HashThread {
                worker: Some((tx, handle)),
                spare: Some(back_rx),
                pending: Vec::with_capacity(BATCH),
                inline: None,
            },
            Err(e) => {
                log::warn!("cannot start a thread to hash the uncompressed layer ({e}); hashing in place");
                HashThread {
                    worker: None,
                    spare: None,
                    pending: Vec::new(),
                    inline: Some(Hasher::new(alg)),
                }
            }
        }
    }

    /// Adds bytes.
    pub(super) fn update(&mut self, mut data: &[u8]) {
        if let Some(h) = self.inline.as_mut() {
            h.update(data);
            return;
        }
        while !data.is_empty() {
            let take = (BATCH - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() >= BATCH {
                self.send();
            }
        }
    }

    /// Hands the pending batch to the thread. A thread that is gone (it cannot fail but by a
    /// panic) is noticed by [`Self::finish`], which then has no digest to give.
    fn send(&mut self) {
        let next = self
            .spare
            .as_ref()
            .and_then(|r| r.try_recv().ok())
            .unwrap_or_else(|| Vec::with_capacity(BATCH));
        let batch = std::mem::replace(&mut self.pending, next);
        if let Some((tx, _)) = &self.worker {
            let _ = tx.send(batch);
        }
    }

    /// The digest of every byte added.
    pub(super) fn finish(mut self) -> io::Result<Digest> {
        if let Some(h) = self.inline.take() {
            return Ok(h.finish());
        }
        if !self.pending.is_empty() {
            self.send();
        }
        let Some((tx, handle)) = self.worker.take() else {
            return Err(io::Error::other("no hasher"));
        };
        drop(tx);
        handle
            .join()
            .map_err(|_| io::Error::other("the thread hashing the uncompressed layer failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_one_of_all_bytes_whatever_the_pieces() {
        let data: Vec<u8> = (0..3 * BATCH + 12345).map(|i| (i * 7 % 251) as u8).collect();
        let want = Digest::sha256_of(&data);
        for piece in [1, 4096, BATCH - 1, BATCH, 2 * BATCH + 3, data.len()] {
            let mut h = HashThread::new(Algorithm::Sha256);
            for p in data.chunks(piece) {
                h.update(p);
            }
            assert_eq!(h.finish().unwrap(), want, "pieces of {piece}");
        }
        assert_eq!(
            HashThread::new(Algorithm::Sha256).finish().unwrap(),
            Digest::sha256_of(b"")
        );
    }
}
