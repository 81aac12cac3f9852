//! Safe wrapper over libzstd's block-level decompression (zstd-sys `experimental`:
//! `ZSTD_decompressBegin_usingDict`, `ZSTD_decompressBlock`, `ZSTD_insertBlock`), with the
//! decoded history it needs.
// FFI, allowed here only: resuming a frame in the middle needs libzstd's static block API,
// which has no safe binding (zstd-safe wraps the stable API only). libzstd keeps pointers into
// the history buffers between calls; this type owns those buffers, never reallocates or frees
// them while the context lives, and only hands out copies. Every unsafe block says why it holds.
#![allow(unsafe_code)]

use std::ffi::{c_void, CStr};
use std::io;
use std::ptr::NonNull;
use std::sync::Mutex;

use zstd_sys as zs;

use super::checkpoint::block_check;
use super::seq::{BlockKind, MAX_BLOCK};

/// Room kept in a history buffer beyond the window, so that buffers alternate rarely.
const SLACK: usize = 1 << 20;
/// Room for a checkpoint's dictionary header (magic, ID, entropy tables, repeat offsets: a
/// few hundred bytes) when a first history buffer is sized for any checkpoint.
const ENTROPY_ROOM: usize = 64 << 10;
/// Decoder contexts and history buffers kept for the next resume, at most this many bytes of
/// buffers. A resume needs a window-sized buffer (8 MiB at `-19`); fresh pages for it cost more
/// than the decoding of a segment (page faults and zeroing were half the CPU time of random
/// reads), so the buffers of a finished decoder are handed to the next one instead of freed.
const POOL_BYTES: usize = 32 << 20;

/// A decoder context owned by nobody else: freed when dropped.
struct Ctx(NonNull<zs::ZSTD_DCtx>);

// SAFETY: the context is owned by this value alone and has no thread affinity.
unsafe impl Send for Ctx {}

impl Ctx {
    fn new() -> io::Result<Ctx> {
        // SAFETY: no arguments; a null result is handled.
        let p = NonNull::new(unsafe { zs::ZSTD_createDCtx() });
        p.map(Ctx)
            .ok_or_else(|| io::Error::other("cannot allocate a zstd decoder"))
    }

    /// The context, now owned by the caller (a [`History`], which gives it back on drop).
    fn into_raw(self) -> NonNull<zs::ZSTD_DCtx> {
        let p = self.0;
        std::mem::forget(self);
        p
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: created by ZSTD_createDCtx; owned by this value alone, so freed once.
        unsafe {
            zs::ZSTD_freeDCtx(self.0.as_ptr());
        }
    }
}

/// A decoder context and its two history buffers, between two decoders.
struct Parts {
    ctx: Ctx,
    bufs: [Vec<u8>; 2],
}

impl Parts {
    fn bytes(&self) -> usize {
        self.bufs[0].len() + self.bufs[1].len()
    }
}

/// Pooled [`Parts`], shared by every reader of the process.
static POOL: Mutex<Vec<Parts>> = Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<Parts>> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parts whose first buffer holds at least `first` bytes: pooled ones if any (the smallest
/// large enough, else any with a new first buffer), else new ones. A new first buffer gets
/// `full` bytes if that is more: what any checkpoint of the same window needs, so that the
/// buffer fits every later resume from the pool (sized to each checkpoint's own content, a
/// pooled buffer was often a little short and replaced by a fresh one, zeroed and faulted in:
/// ~10% of the CPU of random reads in a new mount; perf, session 9).
fn take_parts(first: usize, full: usize) -> io::Result<Parts> {
    let taken = {
        let mut p = pool();
        let fit = (0..p.len())
            .filter(|&i| p[i].bufs[0].len() >= first)
            .min_by_key(|&i| p[i].bufs[0].len())
            .or_else(|| (!p.is_empty()).then_some(0));
        fit.map(|i| p.swap_remove(i))
    };
    let mut parts = match taken {
        Some(p) => p,
        None => Parts {
            ctx: Ctx::new()?,
            bufs: [Vec::new(), Vec::new()],
        },
    };
    if parts.bufs[0].len() < first {
        // Not grown in place: `vec![0; n]` gets zero pages from the kernel that are touched
        // only where the decoder writes (a 128 MiB `--long` window is mostly never touched),
        // where growing would write zeros over all of it.
        parts.bufs[0] = vec![0u8; first.max(full)];
    }
    Ok(parts)
}

/// Gives parts back to the pool, or frees them when the pool is full.
fn return_parts(parts: Parts) {
    let mut p = pool();
    let held: usize = p.iter().map(Parts::bytes).sum();
    if held + parts.bytes() <= POOL_BYTES {
        p.push(parts);
        return;
    }
    drop(p);
    drop(parts);
}

fn zstd_error(what: &str, code: usize) -> io::Error {
    // SAFETY: ZSTD_getErrorName returns a pointer to a static NUL-terminated string for any code.
    let name = unsafe { CStr::from_ptr(zs::ZSTD_getErrorName(code)) };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what}: {}", name.to_string_lossy()),
    )
}

fn is_error(code: usize) -> bool {
    // SAFETY: a pure function of its argument.
    unsafe { zs::ZSTD_isError(code) != 0 }
}

/// A block decoder resumed from a dictionary, and the output history its matches read.
///
/// Output goes to two buffers in turn: the first one starts with the dictionary (its content is
/// the window before the resume point), and when the current one has no room for another
/// block, decoding continues at the start of the other one. libzstd then sees the full buffer as
/// its "external dictionary" and the new one as the prefix, so the last `window` bytes are
/// always in memory as long as each buffer is filled with at least `window` bytes before the
/// switch (its capacity is `window + MAX_BLOCK + SLACK`).
pub(super) struct History {
    dctx: NonNull<zs::ZSTD_DCtx>,
    /// Its length is the buffer's capacity; bytes outside `lo..lo + len` are stale.
    bufs: [Vec<u8>; 2],
    cur: usize,
    /// Per buffer: index of its first valid byte, output position of that byte, valid bytes.
    lo: [usize; 2],
    base: [u64; 2],
    len: [usize; 2],
    cap: usize,
}

// SAFETY: the context and the buffers it points into are owned exclusively by this value; the
// context has no thread affinity.
unsafe impl Send for History {}

impl Drop for History {
    fn drop(&mut self) {
        // The context and buffers go to the next decoder (or are freed by `Parts`); the
        // context's next use starts with ZSTD_decompressBegin_usingDict, which forgets these
        // buffers.
        return_parts(Parts {
            ctx: Ctx(self.dctx),
            bufs: std::mem::take(&mut self.bufs),
        });
    }
}

impl History {
    /// Starts a decoder from a dictionary: `entropy` (magic, ID, tables, repeat offsets) then
    /// `content_len` bytes of content for output positions `[content_start, ..)`, which `fill`
    /// writes (over stale bytes: only the bytes it writes are ever read). `window` bounds how far
    /// back matches reach.
    pub(super) fn resume(
        entropy: &[u8],
        content_start: u64,
        content_len: usize,
        window: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<History> {
        let cap = window + MAX_BLOCK + SLACK;
        let e = entropy.len();
        // The first buffer: the dictionary, then room for a segment's blocks; a decoder that
        // goes on switches to the second buffer, then back to this one, which must then hold a
        // window too (`decode` grows it then).
        let Parts {
            ctx,
            bufs: [mut first, second],
        } = take_parts(e + content_len + MAX_BLOCK + SLACK, ENTROPY_ROOM + cap)?;
        let dctx = ctx.into_raw();
        first[..e].copy_from_slice(entropy);
        fill(&mut first[e..e + content_len]);
        let h = History {
            dctx,
            bufs: [first, second],
            cur: 0,
            lo: [e, 0],
            base: [content_start, 0],
            len: [content_len, 0],
            cap,
        };
        // SAFETY: the dictionary is `bufs[0][..e + content_len]`, which lives (unmoved: the Vec is
        // never resized) as long as the context; libzstd parses the entropy part now and keeps a
        // pointer to the content as the history before the first block.
        let rc = unsafe {
            zs::ZSTD_decompressBegin_usingDict(h.dctx.as_ptr(), h.bufs[0].as_ptr().cast::<c_void>(), e + content_len)
        };
        if is_error(rc) {
            return Err(zstd_error("checkpoint does not load", rc));
        }
        Ok(h)
    }

    /// Output position just after the last decoded byte.
    pub(super) fn end(&self) -> u64 {
        self.base[self.cur] + self.len[self.cur] as u64
    }

    /// Decodes one block (its content, without the 3-byte header, which starts at compressed
    /// offset `comp_off`); `size` is the header's Block_Size. Returns the block's
    /// [`block_check`] of the bytes produced.
    pub(super) fn decode(&mut self, kind: BlockKind, content: &[u8], size: usize, comp_off: u64) -> io::Result<u32> {
        let out_off = self.end();
        let c = self.cur;
        if self.bufs[c].len() - (self.lo[c] + self.len[c]) < MAX_BLOCK {
            let o = 1 - c;
            if self.bufs[o].len() < self.cap {
                // libzstd's only pointers into this buffer are to history older than the window
                // once the other buffer holds a window of output, so it may be replaced now.
                self.bufs[o] = vec![0u8; self.cap];
            }
            self.base[o] = self.end();
            self.lo[o] = 0;
            self.len[o] = 0;
            self.cur = o;
        }
        let c = self.cur;
        let at = self.lo[c] + self.len[c];
        let dst = &mut self.bufs[c][at..at + MAX_BLOCK];
        let n = match kind {
            BlockKind::Compressed => {
                // SAFETY: `dst` is MAX_BLOCK writable bytes of an owned buffer; `content` is a
                // readable slice. libzstd reads history only inside the buffers it was told about
                // (the dictionary, then the previous and current buffer), all alive and unmoved.
                let rc = unsafe {
                    zs::ZSTD_decompressBlock(
                        self.dctx.as_ptr(),
                        dst.as_mut_ptr().cast::<c_void>(),
                        dst.len(),
                        content.as_ptr().cast::<c_void>(),
                        content.len(),
                    )
                };
                if is_error(rc) {
                    return Err(zstd_error("corrupt zstd block", rc));
                }
                rc
            }
            BlockKind::Raw | BlockKind::Rle => {
                if size > dst.len() || (kind == BlockKind::Raw && content.len() != size) {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "zstd block too large"));
                }
                match kind {
                    BlockKind::Raw => dst[..size].copy_from_slice(content),
                    _ => dst[..size].fill(content.first().copied().unwrap_or(0)),
                }
                // SAFETY: `dst[..size]` is initialised output in an owned, unmoved buffer; libzstd
                // records it as the newest history.
                unsafe {
                    zs::ZSTD_insertBlock(self.dctx.as_ptr(), dst.as_ptr().cast::<c_void>(), size);
                }
                size
            }
        };
        self.len[c] += n;
        Ok(block_check(out_off, comp_off, &self.bufs[c][at..at + n]))
    }

    /// Copies decoded bytes from output position `from` into `out`; returns how many (0 when
    /// `from` is not held).
    pub(super) fn copy_out(&self, from: u64, out: &mut [u8]) -> usize {
        for b in [1 - self.cur, self.cur] {
            let (base, len) = (self.base[b], self.len[b] as u64);
            if from >= base && from < base + len {
                let i = (from - base) as usize;
                let n = out.len().min(self.len[b] - i);
                let at = self.lo[b] + i;
                out[..n].copy_from_slice(&self.bufs[b][at..at + n]);
                return n;
            }
        }
        0
    }

    /// Writes `bytes` at output position `pos`, wherever that position is still held (window
    /// bytes a later segment needs that the first checkpoint did not keep).
    pub(super) fn patch(&mut self, pos: u64, bytes: &[u8]) {
        for b in 0..2 {
            let (base, len) = (self.base[b], self.len[b] as u64);
            let start = pos.max(base);
            let end = (pos + bytes.len() as u64).min(base + len);
            if start < end {
                let from = (start - pos) as usize;
                let at = self.lo[b] + (start - base) as usize;
                let n = (end - start) as usize;
                self.bufs[b][at..at + n].copy_from_slice(&bytes[from..from + n]);
            }
        }
    }
}
