//! A decoder that starts inside a frame, at a [`Checkpoint`], and decodes block by block to the
//! end of that frame.
//!
//! Each checkpoint keeps only the window bytes its own segment (up to the next checkpoint)
//! copies from. So when this decoder crosses into the next segment it writes that checkpoint's
//! kept bytes into its history first (those before its own start: the rest it decoded itself),
//! and checks that it reached the checkpoint exactly where the index says: a checkpoint that
//! disagrees with the frame fails the read.

use std::io;
use std::sync::Arc;

use super::block::History;
use super::checkpoint::Checkpoint;
use super::seq::{self, MAX_BLOCK};
use super::{corrupt, ZstdIndex};
use crate::blob::codec_io::{Input, ReadAtSource};
use crate::blob::ReadAt;

/// Compressed input buffered per resumed decoder: at least one whole block, and a multiple of
/// the 64 KiB verified chunks (`Input` aligns its reads to its size).
const INPUT_BYTES: usize = 2 * MAX_BLOCK;

/// See the module doc.
pub struct Resumed {
    index: Arc<ZstdIndex>,
    frame: usize,
    hist: History,
    input: Input<ReadAtSource>,
    /// Next byte [`Self::read`] returns.
    pos: u64,
    /// Where decoding started: window bytes before it are only those the checkpoints kept.
    start: u64,
    /// The next checkpoint (index into the checkpoint table) this decoder will cross.
    next_cp: usize,
    /// The checkpoint whose segment is being decoded, and the number of its next block.
    seg: usize,
    block: usize,
    last_block: bool,
}

impl Resumed {
    /// A decoder at checkpoint `cp` (an index into the checkpoint table).
    pub(super) fn open(blob: Arc<dyn ReadAt>, index: Arc<ZstdIndex>, cp: usize) -> io::Result<Resumed> {
        let c = &index.checkpoints[cp];
        let frame = c.frame as usize;
        let f = index.frames[frame];
        let (runs, raw) = c.sparse_runs().map_err(|e| corrupt(c.comp_off, e.to_string()))?;
        let start = c.content_start();
        let hist = History::resume(
            &c.entropy,
            start,
            c.content_len as usize,
            c.window as usize,
            |content| {
                for (pos, r) in &runs {
                    let at = (pos - start) as usize;
                    content[at..at + r.len()].copy_from_slice(&raw[r.clone()]);
                }
            },
        )
        .map_err(|e| corrupt(c.comp_off, e.to_string()))?;
        let (comp_off, out_off) = (c.comp_off, c.out_off);
        let src = ReadAtSource::new(blob, comp_off, f.comp_off + f.comp_len);
        Ok(Resumed {
            frame,
            hist,
            input: Input::new(src, INPUT_BYTES, comp_off),
            pos: out_off,
            start: out_off,
            next_cp: cp + 1,
            seg: cp,
            block: 0,
            last_block: false,
            index,
        })
    }

    /// The index it decodes with.
    pub(super) fn index(&self) -> &Arc<ZstdIndex> {
        &self.index
    }

    /// The frame this decoder is in.
    pub(super) fn frame(&self) -> usize {
        self.frame
    }

    /// Uncompressed offset of the next byte [`Self::read`] returns.
    pub(super) fn position(&self) -> u64 {
        self.pos
    }

    /// Decoded bytes from the current position; 0 at the end of the frame.
    pub(super) fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.hist.copy_out(self.pos, out);
            if n > 0 || out.is_empty() {
                self.pos += n as u64;
                return Ok(n);
            }
            if self.last_block {
                return Ok(0);
            }
            self.next_block()?;
        }
    }

    fn next_block(&mut self) -> io::Result<()> {
        let at = self.input.pos();
        self.cross_checkpoint(at)?;
        let head = self.input.peek(3)?;
        if head.len() < 3 {
            return Err(corrupt(at, "truncated zstd block header").into());
        }
        let bh = seq::block_header([head[0], head[1], head[2]]).map_err(|m| corrupt(at, m))?;
        let need = 3 + bh.content_len();
        let block = self.input.peek(need)?;
        if block.len() < need {
            return Err(corrupt(at, "truncated zstd block").into());
        }
        let f = self.index.frames[self.frame];
        let crc = self
            .hist
            .decode(bh.kind, &block[3..], bh.size, at)
            .map_err(|e| corrupt(at, e.to_string()))?;
        self.input.consume(need);
        // Every block is checked against what the index pass decoded: a checkpoint that
        // restores a wrong state fails here, before any of its bytes are served.
        let seg = &self.index.checkpoints[self.seg];
        if seg.block_crcs.get(self.block) != Some(&crc) {
            let msg = format!(
                "block {} after the checkpoint at output {} does not match the index",
                self.block, seg.out_off
            );
            return Err(corrupt(at, msg).into());
        }
        self.block += 1;
        if bh.last && self.block != seg.block_crcs.len() {
            return Err(corrupt(at, "frame ends before the checkpoint's blocks").into());
        }
        let end = self.hist.end();
        if end > f.out_off + f.out_len || (bh.last && end != f.out_off + f.out_len) {
            return Err(corrupt(at, "frame does not match the index").into());
        }
        self.last_block = bh.last;
        Ok(())
    }

    /// At a block boundary: if it is the next checkpoint's, check that the index and the frame
    /// agree and write in the window bytes the coming segment needs.
    fn cross_checkpoint(&mut self, at: u64) -> io::Result<()> {
        let Some(c) = self.index.checkpoints.get(self.next_cp) else {
            return Ok(());
        };
        if c.frame as usize != self.frame || at < c.comp_off {
            return Ok(());
        }
        let blocks = self.index.checkpoints[self.seg].block_crcs.len();
        if at > c.comp_off || self.hist.end() != c.out_off || self.block != blocks {
            return Err(corrupt(
                at,
                format!("checkpoint at output {} does not match the frame", c.out_off),
            )
            .into());
        }
        let c: &Checkpoint = c;
        let (runs, raw) = c.sparse_runs().map_err(|e| corrupt(c.comp_off, e.to_string()))?;
        for (pos, r) in runs {
            if pos < self.start {
                let len = (r.len() as u64).min(self.start - pos) as usize;
                self.hist.patch(pos, &raw[r.start..r.start + len]);
            }
        }
        self.seg = self.next_cp;
        self.block = 0;
        self.next_cp += 1;
        Ok(())
    }
}
