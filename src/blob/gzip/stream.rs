//! A gzip member stream over raw inflate: headers, trailers, multi-member streams.

use super::*;

/// What the inflater reached at the end of a [`GzStream::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// Nothing of note (output full or input used up).
    Data,
    /// A DEFLATE block boundary (not after the last block), with the unused bits of the last byte.
    Boundary(u8),
    /// A member ended and the next one's DEFLATE data starts at the input position.
    MemberStart,
    /// The last member ended.
    End,
}

/// Raw inflate over a gzip stream that handles member trailers and headers itself.
pub(super) struct GzStream<R> {
    pub(super) input: Input<R>,
    pub(super) inflater: Inflater,
    /// CRC-32 and length of the current member's output, when it was decoded from its start.
    pub(super) check: Option<Crc>,
    /// Indexing: trailing bytes are read to the end and must all be zero.
    pub(super) strict: bool,
    /// When set, compressed bytes consumed by inflate are appended here.
    pub(super) tap: Option<Vec<u8>>,
    pub(super) done: bool,
    pub(super) stalls: u32,
}

impl<R: Read> GzStream<R> {
    pub(super) fn new(input: Input<R>, inflater: Inflater, at_member_start: bool) -> Self {
        Self {
            input,
            inflater,
            check: at_member_start.then(Crc::new),
            strict: false,
            tap: None,
            done: false,
            stalls: 0,
        }
    }

    /// Parses the header of the first member (indexing only).
    pub(super) fn start_first_member(&mut self) -> Result<()> {
        self.strict = true;
        match read_header(&mut self.input, true, true)? {
            Header::Member => Ok(()),
            Header::End => Err(corrupt(0, "no gzip member")),
        }
    }

    /// One inflate call into `out` (non-empty), then member bookkeeping.
    pub(super) fn step(&mut self, out: &mut [u8], flush: i32) -> Result<(usize, Event)> {
        if self.done {
            return Ok((0, Event::End));
        }
        if !self.input.fill()? {
            return Err(corrupt(
                self.input.pos(),
                "compressed data ends inside a DEFLATE stream",
            ));
        }
        let at = self.input.pos();
        let r = self.inflater.inflate(self.input.data(), out, flush);
        if let Some(tap) = &mut self.tap {
            tap.extend_from_slice(&self.input.data()[..r.consumed]);
        }
        self.input.consume(r.consumed);
        let produced = &out[..r.produced];
        if let Some(c) = &mut self.check {
            c.update(produced);
        }
        match r.code {
            zlib::Z_STREAM_END => return Ok((r.produced, self.end_member()?)),
            zlib::Z_OK | zlib::Z_BUF_ERROR => {}
            code => {
                let msg = self.inflater.message().unwrap_or_else(|| format!("code {code}"));
                let at = self.input.pos();
                return Err(corrupt(at, format!("invalid DEFLATE data: {msg}")));
            }
        }
        if r.consumed == 0 && r.produced == 0 {
            self.stalls += 1;
            if self.stalls > MAX_STALLS {
                return Err(corrupt(at, "inflate makes no progress"));
            }
        } else {
            self.stalls = 0;
        }
        let dt = r.data_type;
        let boundary = flush == Z_BLOCK && dt & 128 != 0 && dt & 64 == 0 && dt & 0x3f < 8;
        let event = match boundary {
            true => Event::Boundary((dt & 7) as u8),
            false => Event::Data,
        };
        Ok((r.produced, event))
    }

    /// Checks the trailer of the member that just ended and moves to the next one, if any.
    pub(super) fn end_member(&mut self) -> Result<Event> {
        let at = self.input.pos();
        let mut trailer = [0u8; 8];
        for b in trailer.iter_mut() {
            *b = self
                .input
                .byte()?
                .ok_or_else(|| corrupt(self.input.pos(), "truncated gzip trailer"))?;
        }
        if let Some(c) = self.check.take() {
            let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
            let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
            if crc != c.sum() {
                return Err(corrupt(at, "CRC-32 mismatch in gzip trailer"));
            }
            if size != c.amount() {
                return Err(corrupt(at, "length mismatch (ISIZE) in gzip trailer"));
            }
        }
        match read_header(&mut self.input, false, self.strict)? {
            Header::Member => {
                self.inflater.reset()?;
                self.check = Some(Crc::new());
                Ok(Event::MemberStart)
            }
            Header::End => {
                self.done = true;
                Ok(Event::End)
            }
        }
    }
}

pub(super) enum Header {
    /// A member header was read; its DEFLATE data follows.
    Member,
    /// No further member.
    End,
}

/// Reads a member header (RFC 1952), or recognises the end of the stream. After the last
/// member, zero bytes are padding: `strict` reads them to the end to prove nothing else follows.
pub(super) fn read_header<R: Read>(input: &mut Input<R>, first: bool, strict: bool) -> Result<Header> {
    let start = input.pos();
    let Some(id1) = input.byte()? else {
        return match first {
            true => Err(corrupt(start, "empty input, not gzip")),
            false => Ok(Header::End),
        };
    };
    if id1 == 0 && !first {
        if strict {
            expect_zeros(input)?;
        }
        return Ok(Header::End);
    }
    let mut crc = Crc::new();
    crc.update(&[id1]);
    let what = if first {
        "not gzip"
    } else {
        "trailing garbage after gzip member"
    };
    if id1 != GZIP_ID1 || header_byte(input, &mut crc)? != GZIP_ID2 {
        return Err(corrupt(start, format!("{what} (bad magic)")));
    }
    if header_byte(input, &mut crc)? != GZIP_CM_DEFLATE {
        return Err(corrupt(start + 2, "unknown gzip compression method"));
    }
    let flags = header_byte(input, &mut crc)?;
    if flags & FRESERVED != 0 {
        return Err(corrupt(start + 3, "reserved gzip header flags set"));
    }
    for _ in 0..6 {
        header_byte(input, &mut crc)?; // MTIME, XFL, OS
    }
    if flags & FEXTRA != 0 {
        let xlen = u16::from_le_bytes([header_byte(input, &mut crc)?, header_byte(input, &mut crc)?]);
        for _ in 0..xlen {
            header_byte(input, &mut crc)?;
        }
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            while header_byte(input, &mut crc)? != 0 {}
        }
    }
    if flags & FHCRC != 0 {
        let want = crc.sum() as u16;
        let at = input.pos();
        let got = u16::from_le_bytes([header_byte(input, &mut crc)?, header_byte(input, &mut crc)?]);
        if got != want {
            return Err(corrupt(at, "gzip header CRC mismatch"));
        }
    }
    Ok(Header::Member)
}

/// The next header byte, added to the header CRC.
pub(super) fn header_byte<R: Read>(input: &mut Input<R>, crc: &mut Crc) -> Result<u8> {
    let b = input
        .byte()?
        .ok_or_else(|| corrupt(input.pos(), "truncated gzip header"))?;
    crc.update(&[b]);
    Ok(b)
}

/// Consumes the rest of the input, which must be zero bytes.
pub(super) fn expect_zeros<R: Read>(input: &mut Input<R>) -> Result<()> {
    while input.fill()? {
        let data = input.data();
        if let Some(i) = data.iter().position(|&b| b != 0) {
            let at = input.pos() + i as u64;
            return Err(corrupt(at, "trailing garbage after the last gzip member"));
        }
        let n = data.len();
        input.consume(n);
    }
    Ok(())
}
