//! Records the checkpoints of a stream on a thread of their own while the index pass decodes it.
//!
//! Following a frame's sequences ([`super::tracker`]), keeping its recent output and
//! compressing the kept window bytes cost about as much CPU as libzstd's decoding itself
//! (docs/index-format.md, "zstd checkpoints"), so the index pass hands the compressed bytes
//! libzstd consumed and the output it produced to a [`Follower`] thread through a bounded
//! queue and goes on decoding, feeding the tar indexer and hashing. The thread reuses the
//! queue's buffers, and hands each checkpoint it gathers to a second thread that compresses its
//! sparse window and spills it ([`seal_all`]): following was still the slower side of the pass
//! (the main thread waited on the queue), and the compression was a third of it at `-19`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use super::checkpoint::{self, Checkpoint, Unsealed};
use super::seq;
use super::tracker::{FrameTracker, Pending, Recent};
use crate::cache::{Bytes, Spill};

/// Messages in flight at most (each up to two build buffers: 512 KiB).
const QUEUE: usize = 4;
/// Checkpoints waiting for the sealing thread at most (each holds its uncompressed sparse
/// window: a few hundred KB, up to a window).
const SEAL_QUEUE: usize = 2;
/// Output a segment may run past its spacing (a checkpoint is delayed by a block while a table
/// is RLE) and output libzstd produced after the tracker closed a segment, kept in [`Recent`]
/// beyond the window and the spacing.
const RECENT_SLACK: u64 = 4 * seq::MAX_BLOCK as u64 + (1 << 20);
/// "No frame": the initial value of [`Follower::given_up`].
const NONE: u64 = u64::MAX;

enum Msg {
    /// A data frame starts at compressed `comp_off`, output `out_off`; `frame` is its number
    /// in the frame table, `run` counts every start (frames of no output are not in the table).
    Start {
        frame: u64,
        run: u64,
        comp_off: u64,
        out_off: u64,
    },
    /// Compressed bytes libzstd consumed and the output it produced, `output[..produced]`
    /// (either may be empty).
    Data {
        consumed: Vec<u8>,
        output: Vec<u8>,
        produced: usize,
    },
    /// The frame ended; `keep`: it is recorded in the frame table.
    End { keep: bool },
}

/// The index pass's end of the queue; see the module doc.
pub(super) struct Follower {
    tx: SyncSender<Msg>,
    /// Buffers sent back for reuse: of compressed bytes, of output.
    spare: Receiver<Vec<u8>>,
    spare_out: Receiver<Vec<u8>>,
    /// An output buffer that was not sent (the frame is not followed).
    kept: Option<Vec<u8>>,
    /// The `run` of a frame the thread stopped following (no checkpoints): its bytes are not
    /// sent any more.
    given_up: Arc<AtomicU64>,
    /// Frames started so far.
    run: u64,
}

/// The thread's result: the checkpoints of every frame.
pub(super) type Handle<'scope> = ScopedJoinHandle<'scope, Vec<Checkpoint>>;

impl Follower {
    /// Starts the thread in `scope`; `None` if it cannot be started (the index then has no
    /// checkpoints).
    pub(super) fn spawn<'scope>(
        scope: &'scope Scope<'scope, '_>,
        spacing: u64,
        spill: Option<Spill>,
    ) -> Option<(Follower, Handle<'scope>)> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (back, spare) = mpsc::channel();
        let (back_out, spare_out) = mpsc::channel();
        let given_up = Arc::new(AtomicU64::new(NONE));
        let flag = Arc::clone(&given_up);
        let handle = std::thread::Builder::new()
            .name("zstd-checkpoints".into())
            .spawn_scoped(scope, move || follow(rx, [back, back_out], &flag, spacing, spill));
        match handle {
            Ok(h) => Some((
                Follower {
                    tx,
                    spare,
                    spare_out,
                    kept: None,
                    given_up,
                    run: 0,
                },
                h,
            )),
            Err(e) => {
                log::warn!("no zstd checkpoints: cannot start a thread: {e}");
                None
            }
        }
    }

    fn send(&self, m: Msg) {
        // A closed queue means the thread is gone (it panicked): the join reports it.
        let _ = self.tx.send(m);
    }

    /// A data frame starts.
    pub(super) fn start(&mut self, frame: u64, comp_off: u64, out_off: u64) {
        self.run += 1;
        self.send(Msg::Start {
            frame,
            run: self.run,
            comp_off,
            out_off,
        });
    }

    /// A buffer of at least `n` bytes (stale) for libzstd's next output: handed over with
    /// [`Self::data`] rather than copied (a copy of every output byte cost the pass's thread
    /// about a tenth of its time).
    pub(super) fn output_buffer(&mut self, n: usize) -> Vec<u8> {
        let mut v = self
            .kept
            .take()
            .or_else(|| self.spare_out.try_recv().ok())
            .unwrap_or_default();
        if v.len() < n {
            v.resize(n, 0);
        }
        v
    }

    /// Bytes libzstd consumed and produced (`output[..produced]`, in a buffer from
    /// [`Self::output_buffer`]) in the current frame.
    pub(super) fn data(&mut self, consumed: &[u8], output: Vec<u8>, produced: usize) {
        if (consumed.is_empty() && produced == 0) || self.given_up.load(Ordering::Relaxed) == self.run {
            self.kept = Some(output);
            return;
        }
        let mut v = self.spare.try_recv().unwrap_or_default();
        v.clear();
        v.extend_from_slice(consumed);
        self.send(Msg::Data {
            consumed: v,
            output,
            produced,
        });
    }

    /// The current frame ended; `keep`: it goes into the frame table (it has output).
    pub(super) fn end(&mut self, keep: bool) {
        self.send(Msg::End { keep });
    }
}

/// The thread: follows each frame with a [`FrameCheckpoints`] and hands the checkpoints it
/// gathers to a sealing thread of its own ([`seal_all`]).
fn follow(
    rx: Receiver<Msg>,
    back: [Sender<Vec<u8>>; 2],
    given_up: &AtomicU64,
    spacing: u64,
    spill: Option<Spill>,
) -> Vec<Checkpoint> {
    std::thread::scope(|scope| {
        let (seal, sealed) = mpsc::sync_channel(SEAL_QUEUE);
        let sealer = std::thread::Builder::new()
            .name("zstd-seal".into())
            .spawn_scoped(scope, move || seal_all(sealed, spill));
        let sealer = match sealer {
            Ok(h) => h,
            Err(e) => {
                log::warn!("no zstd checkpoints: cannot start a thread: {e}");
                // Keep taking the pass's bytes (and giving its buffers back) until it ends.
                for m in rx {
                    if let Msg::Data { consumed, output, .. } = m {
                        give_back(&back, consumed, output);
                    }
                }
                return Vec::new();
            }
        };
        // A closed queue means the sealing thread is gone (it panicked): its join reports it.
        let send = |m: Seal| {
            let _ = seal.send(m);
        };
        let mut cur: Option<(FrameCheckpoints, u64)> = None;
        for m in rx {
            match m {
                Msg::Start {
                    frame,
                    run,
                    comp_off,
                    out_off,
                } => {
                    if cur.is_some() {
                        // A frame without an end: what it sent is not this frame's.
                        send(Seal::End { keep: false });
                    }
                    cur = Some((FrameCheckpoints::new(frame, comp_off, out_off, spacing), run));
                }
                Msg::Data {
                    consumed,
                    output,
                    produced,
                } => {
                    if let Some((c, run)) = cur.as_mut() {
                        c.step(&consumed, output.get(..produced).unwrap_or(&[]), &send);
                        if c.tracker.failed().is_some() {
                            given_up.store(*run, Ordering::Relaxed);
                        }
                    }
                    give_back(&back, consumed, output);
                }
                Msg::End { keep } => {
                    if let Some((mut c, _)) = cur.take() {
                        let complete = c.finish(&send);
                        send(Seal::End { keep: keep && complete });
                    }
                }
            }
        }
        drop(seal);
        sealer.join().unwrap_or_else(|_| {
            log::warn!("zstd checkpoints: the sealing thread failed; none recorded");
            Vec::new()
        })
    })
}

/// Returns a message's buffers to the pass for reuse (the pass may be gone: they are then freed).
fn give_back(back: &[Sender<Vec<u8>>; 2], consumed: Vec<u8>, output: Vec<u8>) {
    let _ = back[0].send(consumed);
    let _ = back[1].send(output);
}

/// What the following thread hands the sealing thread.
enum Seal {
    /// A checkpoint of the current frame, its sparse window to compress.
    One(Unsealed),
    /// The current frame ended; `keep`: its checkpoints go into the index.
    End { keep: bool },
}

/// The sealing thread: compresses each sparse window (`SPARSE_LEVEL`: at `-19` this took a
/// third of the following thread's CPU, which bounded the whole pass), appends it to `spill`
/// if there is one, and keeps the checkpoints of the frames that end complete.
fn seal_all(sealed: Receiver<Seal>, mut spill: Option<Spill>) -> Vec<Checkpoint> {
    let mut cctx = match checkpoint::sparse_compressor() {
        Ok(c) => Some(c),
        Err(e) => {
            log::warn!("no zstd checkpoints: cannot make a compressor: {e}");
            None
        }
    };
    let mut all = Vec::new();
    let mut frame: Vec<Found> = Vec::new();
    let mut failed = false;
    for m in sealed {
        match m {
            Seal::One(u) => {
                if failed {
                    continue;
                }
                match cctx.as_mut().and_then(|c| u.seal(c)) {
                    Some(mut c) => {
                        // Kept in memory when the spill file fails: more memory, not a lost window.
                        let spilled = spill.as_mut().and_then(|s| s.append(&c.sparse).ok());
                        if spilled.is_some() {
                            c.sparse = Bytes::default();
                        }
                        frame.push((c, spilled));
                    }
                    None => {
                        failed = true;
                        frame.clear();
                    }
                }
            }
            Seal::End { keep } => {
                if keep && !failed {
                    all.append(&mut frame);
                }
                frame.clear();
                failed = false;
            }
        }
    }
    map_spilled(all, spill)
}

/// A checkpoint whose sparse window may be in the spill file (then at this range, and its
/// `sparse` empty until [`map_spilled`]).
type Found = (Checkpoint, Option<std::ops::Range<usize>>);

/// The checkpoints, their spilled sparse windows mapped from the spill file. If it cannot be
/// mapped the index gets no checkpoints (logged): reads are then slower, never wrong.
fn map_spilled(all: Vec<Found>, spill: Option<Spill>) -> Vec<Checkpoint> {
    if all.iter().all(|(_, r)| r.is_none()) {
        return all.into_iter().map(|(c, _)| c).collect();
    }
    let map = match spill.map(Spill::map) {
        Some(Ok(m)) => m,
        other => {
            if let Some(Err(e)) = other {
                log::warn!("zstd checkpoints: cannot map their spill file ({e}); none recorded");
            }
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(all.len());
    for (mut c, range) in all {
        if let Some(r) = range {
            match Bytes::mapped(Arc::clone(&map), r) {
                Some(b) => c.sparse = b,
                None => {
                    log::warn!("zstd checkpoints: their spill file is short; none recorded");
                    return Vec::new();
                }
            }
        }
        out.push(c);
    }
    out
}

/// The checkpoints of the frame being indexed.
struct FrameCheckpoints {
    frame: u64,
    tracker: FrameTracker,
    spacing: u64,
    /// Output position of the frame's first byte.
    out_start: u64,
    /// The recent output, once the frame's window is known.
    recent: Option<Recent>,
    /// Completed segments whose window has not been fully output yet.
    waiting: Vec<Pending>,
}

impl FrameCheckpoints {
    fn new(frame: u64, comp_off: u64, out_off: u64, spacing: u64) -> Self {
        Self {
            frame,
            tracker: FrameTracker::new(comp_off, out_off, spacing),
            spacing,
            out_start: out_off,
            recent: None,
            waiting: Vec::new(),
        }
    }

    /// Follows compressed bytes libzstd consumed and output it produced; the checkpoints it
    /// completes go to `seal`.
    fn step(&mut self, consumed: &[u8], output: &[u8], seal: &dyn Fn(Seal)) {
        let t = &mut self.tracker;
        t.push(consumed);
        if t.failed().is_some() {
            self.recent = None;
            return;
        }
        if self.recent.is_none() {
            if let Some(w) = t.window() {
                let cap = w.min(checkpoint::MAX_WINDOW) + self.spacing + RECENT_SLACK;
                self.recent = Some(Recent::new(self.out_start, cap as usize));
            }
        }
        let Some(recent) = self.recent.as_mut() else { return };
        recent.push(output);
        self.waiting.extend(t.take_done());
        let window = t.window().unwrap_or(0);
        // Ready once the whole segment was output (its block CRCs need it).
        let ready = self.waiting.iter().take_while(|p| p.end <= recent.end()).count();
        let bytes = |a: u64, b: u64, f: &mut dyn FnMut(&[u8])| recent.visit(a, b, f);
        for p in self.waiting.drain(..ready) {
            match Checkpoint::from_pending(self.frame, window, p, &bytes) {
                Some(u) => seal(Seal::One(u)),
                None => {
                    t.fail("window bytes no longer held");
                    return;
                }
            }
        }
    }

    /// The frame ended: true if it was followed to the end (its checkpoints can be kept).
    fn finish(&mut self, seal: &dyn Fn(Seal)) -> bool {
        if self.tracker.finish() {
            self.step(&[], &[], seal);
        }
        let failed = self.tracker.failed();
        if failed.is_some() || !self.waiting.is_empty() {
            if let Some(why) = failed.filter(|w| !w.contains("too small")) {
                log::debug!("zstd frame {}: no checkpoints ({why})", self.frame);
            }
            return false;
        }
        true
    }
}
