//! Records the checkpoints of a stream on a thread of their own while the index pass decodes it.
//!
//! Following a frame's sequences ([`super::tracker`]), keeping its recent output and
//! compressing the kept window bytes cost about as much CPU as libzstd's decoding itself
//! (docs/index-format.md, "zstd checkpoints"), so the index pass hands the compressed bytes
//! libzstd consumed and the output it produced to a [`Follower`] thread through a bounded
//! queue and goes on decoding, feeding the tar indexer and hashing; on two cores the
//! checkpoints then cost little more than the copies. The thread reuses the queue's buffers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use super::checkpoint::{self, Checkpoint};
use super::seq;
use super::tracker::{FrameTracker, Pending, Recent};
use crate::cache::{Bytes, Spill};

/// Messages in flight at most (each up to two build buffers: 512 KiB).
const QUEUE: usize = 4;
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
    /// Compressed bytes libzstd consumed and the output it produced (either may be empty).
    Data { consumed: Vec<u8>, output: Vec<u8> },
    /// The frame ended; `keep`: it is recorded in the frame table.
    End { keep: bool },
}

/// The index pass's end of the queue; see the module doc.
pub(super) struct Follower {
    tx: SyncSender<Msg>,
    spare: Receiver<Vec<u8>>,
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
        let given_up = Arc::new(AtomicU64::new(NONE));
        let flag = Arc::clone(&given_up);
        let handle = std::thread::Builder::new()
            .name("zstd-checkpoints".into())
            .spawn_scoped(scope, move || follow(rx, back, &flag, spacing, spill));
        match handle {
            Ok(h) => Some((
                Follower {
                    tx,
                    spare,
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

    /// Bytes libzstd consumed and produced in the current frame.
    pub(super) fn data(&mut self, consumed: &[u8], output: &[u8]) {
        if (consumed.is_empty() && output.is_empty()) || self.given_up.load(Ordering::Relaxed) == self.run {
            return;
        }
        let copy = |b: &[u8]| {
            let mut v = self.spare.try_recv().unwrap_or_default();
            v.clear();
            v.extend_from_slice(b);
            v
        };
        let m = Msg::Data {
            consumed: copy(consumed),
            output: copy(output),
        };
        self.send(m);
    }

    /// The current frame ended; `keep`: it goes into the frame table (it has output).
    pub(super) fn end(&mut self, keep: bool) {
        self.send(Msg::End { keep });
    }
}

/// The thread: follows each frame with a [`FrameCheckpoints`].
fn follow(
    rx: Receiver<Msg>,
    back: Sender<Vec<u8>>,
    given_up: &AtomicU64,
    spacing: u64,
    mut spill: Option<Spill>,
) -> Vec<Checkpoint> {
    let mut all = Vec::new();
    let mut cur: Option<(FrameCheckpoints, u64)> = None;
    for m in rx {
        match m {
            Msg::Start {
                frame,
                run,
                comp_off,
                out_off,
            } => cur = Some((FrameCheckpoints::new(frame, comp_off, out_off, spacing), run)),
            Msg::Data { consumed, output } => {
                if let Some((c, run)) = cur.as_mut() {
                    c.step(&consumed, &output, spill.as_mut());
                    if c.tracker.failed().is_some() {
                        given_up.store(*run, Ordering::Relaxed);
                    }
                }
                let _ = back.send(consumed);
                let _ = back.send(output);
            }
            Msg::End { keep } => {
                if let Some((mut c, _)) = cur.take() {
                    c.finish(spill.as_mut());
                    if keep {
                        all.append(&mut c.found);
                    }
                }
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
    found: Vec<Found>,
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
            found: Vec::new(),
        }
    }

    /// Follows compressed bytes libzstd consumed and output it produced; the sparse windows
    /// of the checkpoints it completes go to `spill` if there is one.
    fn step(&mut self, consumed: &[u8], output: &[u8], mut spill: Option<&mut Spill>) {
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
        for p in self.waiting.drain(..ready) {
            let get = |a: u64, b: u64| recent.get(a, b);
            match Checkpoint::from_pending(self.frame, window, p, &get) {
                Some(mut c) => {
                    // Kept in memory when the spill file fails: more memory, not a lost window.
                    let spilled = spill.as_deref_mut().and_then(|s| s.append(&c.sparse).ok());
                    if spilled.is_some() {
                        c.sparse = Bytes::default();
                    }
                    self.found.push((c, spilled));
                }
                None => {
                    t.fail("window bytes no longer held");
                    self.found.clear();
                    return;
                }
            }
        }
    }

    /// The frame ended: keep its checkpoints only if it was followed to the end.
    fn finish(&mut self, spill: Option<&mut Spill>) {
        if self.tracker.finish() {
            self.step(&[], &[], spill);
        }
        let failed = self.tracker.failed();
        if failed.is_some() || !self.waiting.is_empty() {
            if let Some(why) = failed.filter(|w| !w.contains("too small")) {
                log::debug!("zstd frame {}: no checkpoints ({why})", self.frame);
            }
            self.found.clear();
        }
    }
}
