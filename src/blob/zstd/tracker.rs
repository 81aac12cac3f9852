//! Chooses the checkpoints of one zstd frame while the index build decodes it.
//!
//! The index build hands every compressed byte of the frame to [`FrameTracker::push`] as libzstd
//! consumes it. The tracker follows the frame block by block ([`super::seq`]): at the first block
//! boundary at least `spacing` output bytes after the previous checkpoint it records the decoding
//! state (a dictionary header, [`SeqState::dictionary_header`]), then collects which bytes before
//! that point the matches of the following segment copy from. When the next checkpoint is taken
//! (or the frame ends) that list is complete and the checkpoint moves to [`FrameTracker::take_done`];
//! the build then copies those bytes out of its own copy of the recent output.
//!
//! Anything unexpected (a parse error, a match reaching past the window) stops checkpointing for
//! the whole frame: it is then read from its start, as before checkpoints existed.

use super::seq::{self, BlockKind, FrameHeader, SeqState};

/// Gaps shorter than this between referenced ranges are kept too: a run costs two varints,
/// a few bytes of gap compress to less.
const MERGE_GAP: u64 = 16;

/// A checkpoint whose segment is being followed or is complete.
#[derive(Debug)]
pub(super) struct Pending {
    /// Compressed offset of the header of the block it starts at.
    pub comp_off: u64,
    /// Output position it starts at.
    pub out_off: u64,
    /// Dictionary header: magic, ID, entropy tables, repeat offsets.
    pub entropy: Vec<u8>,
    /// The window before `out_off` that the dictionary content covers.
    pub content_len: u64,
    /// Referenced ranges `[start, end)` of output positions inside that window, sorted and
    /// merged.
    pub refs: Vec<(u64, u64)>,
    /// Output length and compressed length (header included) of each block of the segment,
    /// in order.
    pub blocks: Vec<(u32, u32)>,
    /// Output position where the segment ends (set when it is complete).
    pub end: u64,
}

impl Pending {
    fn add(&mut self, start: u64, end: u64) {
        if let Some(last) = self.refs.last_mut() {
            if start <= last.1 + MERGE_GAP && end + MERGE_GAP >= last.0 {
                last.0 = last.0.min(start);
                last.1 = last.1.max(end);
                return;
            }
        }
        self.refs.push((start, end));
    }

    /// Sorts and merges the ranges; the segment ends at `end`.
    fn close(&mut self, end: u64) {
        self.end = end;
        self.refs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.refs.len());
        for &(s, e) in &self.refs {
            match merged.last_mut() {
                Some(last) if s <= last.1 + MERGE_GAP => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.refs = merged;
    }
}

/// Follows one frame; see the module doc.
pub(super) struct FrameTracker {
    buf: Vec<u8>,
    /// First unparsed byte of `buf`.
    start: usize,
    /// Compressed offset of `buf[start]`.
    comp: u64,
    /// Output position of the next block.
    out: u64,
    frame_out: u64,
    header: Option<FrameHeader>,
    seq: SeqState,
    spacing: u64,
    last_cp: u64,
    open: Option<Pending>,
    done: Vec<Pending>,
    failed: Option<&'static str>,
    /// The last block was parsed.
    ended: bool,
}

impl FrameTracker {
    /// A tracker for the frame at compressed offset `comp_off` whose output starts at `out_off`.
    pub(super) fn new(comp_off: u64, out_off: u64, spacing: u64) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            comp: comp_off,
            out: out_off,
            frame_out: out_off,
            header: None,
            seq: SeqState::default(),
            spacing: spacing.max(1),
            last_cp: out_off,
            open: None,
            done: Vec::new(),
            failed: None,
            ended: false,
        }
    }

    /// The frame's window size, once its header was seen.
    pub(super) fn window(&self) -> Option<u64> {
        self.header.map(|h| h.window)
    }

    /// Why checkpointing stopped for this frame, if it did.
    pub(super) fn failed(&self) -> Option<&'static str> {
        self.failed
    }

    /// Stops checkpointing this frame.
    pub(super) fn fail(&mut self, why: &'static str) {
        if self.failed.is_none() {
            self.failed = Some(why);
        }
        self.open = None;
        self.done.clear();
        self.buf = Vec::new();
    }

    /// Follows the next compressed bytes of the frame.
    pub(super) fn push(&mut self, data: &[u8]) {
        if self.failed.is_some() || self.ended {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        if let Err(why) = self.parse() {
            self.fail(why);
        }
    }

    fn parse(&mut self) -> Result<(), &'static str> {
        loop {
            let avail = &self.buf[self.start..];
            let Some(h) = self.header else {
                let Some(h) = seq::frame_header(avail)? else {
                    return Ok(());
                };
                if h.dict_id != 0 {
                    return Err("frame needs a dictionary");
                }
                // A frame too small for two segments gets none: don't follow its sequences.
                if h.content_size.is_some_and(|n| n < 2 * self.spacing) {
                    return Err("frame too small for checkpoints");
                }
                self.header = Some(h);
                self.start += h.len;
                self.comp += h.len as u64;
                continue;
            };
            if avail.len() < 3 {
                return Ok(());
            }
            let bh = seq::block_header([avail[0], avail[1], avail[2]])?;
            let need = 3 + bh.content_len();
            if avail.len() < need {
                return Ok(());
            }
            // Not before the last block: it may be empty, and a checkpoint must start output.
            if !bh.last {
                self.maybe_checkpoint(h.window);
            }
            let content = &self.buf[self.start + 3..self.start + need];
            let produced = match bh.kind {
                BlockKind::Raw | BlockKind::Rle => bh.size,
                BlockKind::Compressed => {
                    let (frame_out, open) = (self.frame_out, &mut self.open);
                    let mut bad = None;
                    let n = self.seq.block(content, self.out, &mut |pos, offset, len| {
                        if offset > pos - frame_out {
                            bad = Some("match before the frame start");
                            return;
                        }
                        let src = pos - offset;
                        if let Some(cp) = open.as_mut() {
                            if src < cp.out_off {
                                if src < cp.out_off - cp.content_len {
                                    bad = Some("match reaches past the window");
                                }
                                cp.add(src, (src + len).min(cp.out_off));
                            }
                        }
                    })?;
                    if let Some(why) = bad {
                        return Err(why);
                    }
                    n
                }
            };
            if let Some(cp) = self.open.as_mut() {
                cp.blocks.push((produced as u32, need as u32));
            }
            self.out += produced as u64;
            self.start += need;
            self.comp += need as u64;
            if bh.last {
                self.ended = true;
                self.close_open();
                return Ok(());
            }
        }
    }

    fn close_open(&mut self) {
        if let Some(mut cp) = self.open.take() {
            cp.close(self.out);
            self.done.push(cp);
        }
    }

    /// Takes a checkpoint at this block boundary if one is due and the state allows it.
    fn maybe_checkpoint(&mut self, window: u64) {
        if self.out - self.last_cp < self.spacing {
            return;
        }
        let Some(entropy) = self.seq.dictionary_header() else {
            return;
        };
        let content_len = window.min(self.out - self.frame_out);
        // The dictionary's repeat offsets must lie inside its content (libzstd checks).
        if self.seq.reps().iter().any(|&r| r > content_len) {
            return;
        }
        self.close_open();
        self.open = Some(Pending {
            comp_off: self.comp,
            out_off: self.out,
            entropy,
            content_len,
            refs: Vec::new(),
            blocks: Vec::new(),
            end: 0,
        });
        self.last_cp = self.out;
    }

    /// Checkpoints whose segment is complete, in order.
    pub(super) fn take_done(&mut self) -> std::vec::Drain<'_, Pending> {
        self.done.drain(..)
    }

    /// Ends the frame: true when it was followed to its last block without a problem (its
    /// checkpoints can be kept).
    pub(super) fn finish(&mut self) -> bool {
        if self.failed.is_none() && !self.ended {
            self.fail("frame ended early");
        }
        self.failed.is_none()
    }
}

/// The most recent output of a frame, for copying the window bytes of checkpoints out once
/// their segment is complete: a ring of `cap` bytes, grown as needed.
pub(super) struct Recent {
    buf: Vec<u8>,
    cap: usize,
    /// Output position of the first byte pushed.
    start: u64,
    /// Output position after the last byte pushed.
    end: u64,
}

impl Recent {
    pub(super) fn new(start: u64, cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap: cap.max(1),
            start,
            end: start,
        }
    }

    /// Output position after the last byte pushed.
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    pub(super) fn push(&mut self, mut data: &[u8]) {
        if self.buf.len() < self.cap {
            let k = (self.cap - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..k]);
            self.end += k as u64;
            data = &data[k..];
        }
        while !data.is_empty() {
            let i = ((self.end - self.start) % self.cap as u64) as usize;
            let k = (self.cap - i).min(data.len());
            self.buf[i..i + k].copy_from_slice(&data[..k]);
            self.end += k as u64;
            data = &data[k..];
        }
    }

    /// Passes bytes `[from, to)` to `f` in order (one or two slices of the ring); false if
    /// they are not all held.
    pub(super) fn visit(&self, from: u64, to: u64, f: &mut dyn FnMut(&[u8])) -> bool {
        let held = self.end - self.start;
        let first = self.end - held.min(self.buf.len() as u64);
        if from < first || to > self.end || from > to {
            return false;
        }
        let mut pos = from;
        while pos < to {
            let i = ((pos - self.start) % self.cap as u64) as usize;
            let k = ((self.cap - i) as u64).min(to - pos) as usize;
            f(&self.buf[i..i + k]);
            pos += k as u64;
        }
        true
    }
}
