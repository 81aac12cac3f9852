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
pub(super) enum HashThread {
    /// Batches go to the thread, emptied buffers come back; `pending` is the batch being filled.
    Thread {
        tx: SyncSender<Vec<u8>>,
        handle: JoinHandle<Digest>,
        spare: Receiver<Vec<u8>>,
        pending: Vec<u8>,
    },
    /// No thread could be started: hashed in place.
    Inline(Hasher),
}

impl HashThread {
    /// A hasher of `alg` on its own thread (in place if that thread cannot start).
    pub(super) fn new(alg: Algorithm) -> HashThread {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let (back, spare) = mpsc::channel::<Vec<u8>>();
        let spawned = std::thread::Builder::new().name("imgfs-diffid".into()).spawn(move || {
            let mut h = Hasher::new(alg);
            for mut batch in rx {
                h.update(&batch);
                batch.clear();
                // The pass may have finished and gone: the buffer is then just freed.
                let _ = back.send(batch);
            }
            h.finish()
        });
        match spawned {
            Ok(handle) => HashThread::Thread {
                tx,
                handle,
                spare,
                pending: Vec::with_capacity(BATCH),
            },
            Err(e) => {
                log::warn!("cannot start a thread to hash the uncompressed layer ({e}); hashing in place");
                HashThread::Inline(Hasher::new(alg))
            }
        }
    }

    /// Adds bytes.
    pub(super) fn update(&mut self, mut data: &[u8]) {
        match self {
            HashThread::Inline(h) => h.update(data),
            HashThread::Thread { tx, spare, pending, .. } => {
                while !data.is_empty() {
                    let take = (BATCH - pending.len()).min(data.len());
                    pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if pending.len() >= BATCH {
                        send(tx, spare, pending);
                    }
                }
            }
        }
    }

    /// The digest of every byte added.
    pub(super) fn finish(self) -> io::Result<Digest> {
        match self {
            HashThread::Inline(h) => Ok(h.finish()),
            HashThread::Thread {
                tx,
                handle,
                spare,
                mut pending,
            } => {
                if !pending.is_empty() {
                    send(&tx, &spare, &mut pending);
                }
                drop(tx);
                handle
                    .join()
                    .map_err(|_| io::Error::other("the thread hashing the uncompressed layer failed"))
            }
        }
    }
}

/// Hands the `pending` batch to the thread, replacing it with a spare buffer. A thread that is
/// gone (it cannot fail but by a panic) is noticed by [`HashThread::finish`], which then has no
/// digest to give.
fn send(tx: &SyncSender<Vec<u8>>, spare: &Receiver<Vec<u8>>, pending: &mut Vec<u8>) {
    let next = spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
    let _ = tx.send(std::mem::replace(pending, next));
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
