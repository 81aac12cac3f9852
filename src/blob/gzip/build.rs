//! The one-pass index builder: access points at block boundaries, sparse windows.

use super::*;

/// Inflates a whole gzip stream once, passing every decompressed byte in order to `sink`, and
/// returns its index with a point about every `spacing` uncompressed bytes.
///
/// Single pass, constant memory. Every member's header, CRC-32 and ISIZE are checked; zero
/// padding after the last member is accepted, any other trailing byte is an error. The sha256
/// of the compressed bytes is computed on the way ([`GzipIndex::compressed_sha256`]), so
/// callers need not wrap the reader. A sink error aborts with [`Error::Sink`].
pub fn build_index<R: Read>(
    compressed: R,
    spacing: u64,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<GzipIndex> {
    let spacing = spacing.max(1);
    let input = Input::new(HashingReader::new(compressed), BUILD_INPUT_BYTES, 0);
    let mut s = GzStream::new(input, Inflater::new_raw()?, true);
    s.start_first_member()?;
    let mut points = vec![AccessPoint::member_start(0, s.input.pos())];
    let mut pending: Option<PendingPoint> = None;
    let mut out = vec![0u8; BUILD_OUTPUT_BYTES];
    let mut total: u64 = 0;
    let mut last: u64 = 0;
    loop {
        let (n, event) = s.step(&mut out, Z_BLOCK)?;
        if n > 0 {
            sink(&out[..n]).map_err(Error::Sink)?;
            total += n as u64;
        }
        if let Some(p) = &mut pending {
            p.follow(s.tap.take().unwrap_or_default(), &out[..n]);
            if p.complete() || matches!(event, Event::MemberStart | Event::End) {
                points.push(p.finish()?);
                pending = None;
            } else {
                s.tap = Some(Vec::new());
            }
        }
        let due = pending.is_none() && total - last >= spacing;
        match event {
            Event::End => break,
            Event::Boundary(bits) if due => {
                let window = s.inflater.dictionary()?;
                let partial = s.input.last_byte().filter(|_| bits > 0);
                pending = Some(PendingPoint::new(total, s.input.pos(), bits, window, partial));
                s.tap = Some(Vec::new());
                last = total;
            }
            Event::MemberStart if due => {
                points.push(AccessPoint::member_start(total, s.input.pos()));
                last = total;
            }
            _ => {}
        }
    }
    Ok(GzipIndex {
        compressed_len: s.input.pos(),
        uncompressed_len: total,
        spacing,
        compressed_sha256: s.input.source().digest(),
        points,
    })
}

/// A block-boundary access point whose window is not final yet: the builder collects the
/// compressed bytes and output that follow it (up to [`WINDOW_SIZE`] bytes of output), then
/// stores only the part of the window that output references (see [`refscan`]), after checking
/// that inflating with that sparse window reproduces the output exactly.
pub(super) struct PendingPoint {
    pub(super) out: u64,
    pub(super) inp: u64,
    pub(super) bits: u8,
    pub(super) window: Vec<u8>,
    /// Compressed bytes from the point on; starts with the partial byte when `bits > 0`.
    pub(super) comp: Vec<u8>,
    /// The first up-to-[`WINDOW_SIZE`] bytes of output after the point.
    pub(super) after: Vec<u8>,
}

impl PendingPoint {
    pub(super) fn new(out: u64, inp: u64, bits: u8, window: Vec<u8>, partial: Option<u8>) -> Self {
        Self {
            out,
            inp,
            bits,
            window,
            comp: partial.into_iter().collect(),
            after: Vec::with_capacity(WINDOW_SIZE),
        }
    }

    /// Records the compressed bytes consumed and the output produced by one more step.
    pub(super) fn follow(&mut self, comp: Vec<u8>, out: &[u8]) {
        self.comp.extend_from_slice(&comp);
        let room = WINDOW_SIZE - self.after.len().min(WINDOW_SIZE);
        self.after.extend_from_slice(&out[..out.len().min(room)]);
    }

    /// Enough output follows the point that nothing further can reach into its window (or the
    /// data is so sparse in output, e.g. a run of empty blocks, that collecting stops; the full
    /// window is kept then).
    pub(super) fn complete(&self) -> bool {
        self.after.len() >= WINDOW_SIZE || self.comp.len() > MAX_PENDING_INPUT
    }

    pub(super) fn finish(&self) -> Result<AccessPoint> {
        let start_bit = match self.bits {
            0 => 0,
            b => usize::from(8 - b),
        };
        let sparse = refscan::referenced(&self.comp, start_bit, self.window.len())
            .map(|marks| sparse_window(&self.window, &marks))
            .filter(|w| self.reproduces(w));
        let window = match &sparse {
            Some(w) => w,
            None => {
                log::debug!("access point at {}: keeping the full window", self.out);
                &self.window
            }
        };
        AccessPoint::at_block(self.out, self.inp, self.bits, window)
    }

    /// Whether inflating from the point with `window` gives exactly the recorded output.
    pub(super) fn reproduces(&self, window: &[u8]) -> bool {
        let Ok(mut inf) = Inflater::new_raw() else {
            return false;
        };
        let mut input = self.comp.as_slice();
        if self.bits > 0 {
            let Some((&first, rest)) = input.split_first() else {
                return false;
            };
            if inf.prime(self.bits, first >> (8 - self.bits)).is_err() {
                return false;
            }
            input = rest;
        }
        if !window.is_empty() && inf.set_dictionary(window).is_err() {
            return false;
        }
        let mut got = vec![0u8; self.after.len()];
        let mut filled = 0;
        while filled < got.len() {
            let r = inf.inflate(input, &mut got[filled..], Z_NO_FLUSH);
            input = &input[r.consumed..];
            filled += r.produced;
            let progress = r.consumed > 0 || r.produced > 0;
            if !progress || !matches!(r.code, zlib::Z_OK | zlib::Z_STREAM_END) {
                break;
            }
        }
        filled == got.len() && got == self.after
    }
}

/// The window with unreferenced bytes zeroed, starting at the first referenced byte.
pub(super) fn sparse_window(window: &[u8], marks: &[bool]) -> Vec<u8> {
    let Some(first) = marks.iter().position(|&m| m) else {
        return Vec::new();
    };
    window[first..]
        .iter()
        .zip(&marks[first..])
        .map(|(&b, &m)| if m { b } else { 0 })
        .collect()
}
