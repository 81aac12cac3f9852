//! The header-decoding core shared by both drivers ([`super::seek`] and [`super::stream`]).
//!
//! [`Decoder`] is a block-level state machine: a driver hands it one 512-byte block at a time
//! and it answers with a [`Step`]: feed the next block, skip N bytes of member data (the
//! decoder never sees data it does not need), or stop; finished entries go to the driver's
//! list. Extension data it does need (PAX records, GNU long names, sparse maps) arrives through
//! the same block calls, so drivers need no format knowledge, and the decoder needs no I/O.
//!
//! Which members carry data: POSIX stores no data records for typeflags `1`-`6` whatever the
//! size field says, and real archives set it (a symlink with the length of its target, old-GNU
//! hardlinks with their target's size). GNU tar, libarchive and Go's archive/tar skip nothing
//! after such headers, and neither do we (an old-style directory, a regular member named
//! `x/`, is header-only too). The one exception is pax, which lets a hardlink carry data:
//! a hardlink with a size is read as carrying data only in a pax archive (a PAX header seen
//! before it, as libarchive decides), with a POSIX ustar header, and when the block after it is
//! neither a valid header nor the end-of-archive block (libarchive's test for old archives; for
//! pax it trusts the size and would read the next header as data, GNU tar never does).

use super::entry::{Entry, EntryKind, Result, SparseChunk, TarError};
use super::pax::{self, PaxError, PaxValues};
use super::sparse::{self, MapParser, SparseError};

/// Tar block size; every header and every member's padded data is a multiple of it.
pub(crate) const BLOCK: usize = 512;
/// Cap on the extension data (PAX, GNU long name/link, sparse maps) one entry may carry; all
/// of it is held in memory, so it must not be driven by a size field alone.
pub(crate) const MAX_EXTENSION: u64 = 1 << 20;
/// Cap on the path/linkpath/xattr bytes a global PAX header may hold: they are copied into
/// every following entry, so a large one would multiply memory by the entry count.
pub(crate) const MAX_GLOBAL_STORED: usize = 4 << 10;

/// What the driver must do after handing the decoder a block. Completed entries are not part
/// of the step: the decoder appends them to the list the driver passes in (a block may
/// complete two: a hardlink whose data it had to look ahead for, and the member it turned out
/// to be the header of).
#[derive(Debug)]
pub(crate) enum Step {
    /// Hand over the next block.
    More,
    /// Skip `bytes` (padded member data) after the current block, then hand over the next
    /// block. `unit_start` is the member's first header, for truncation errors.
    Skip { bytes: u64, unit_start: u64 },
    /// End-of-archive marker (a zero block): ignore the rest of the stream.
    End,
}

/// Rounds a data size up to whole blocks.
pub(crate) fn padded(n: u64) -> Option<u64> {
    Some(n.checked_add(BLOCK as u64 - 1)? & !(BLOCK as u64 - 1))
}

/// The header-decoding state machine; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// Accumulated PAX global ('g') values.
    global: PaxValues,
    /// A PAX header ('x' or 'g') has been seen: from here on the archive is pax, where a
    /// hardlink may carry data.
    pax_seen: bool,
    /// Extension headers seen for the member that has not arrived yet.
    local: Local,
    mode: Mode,
}

#[derive(Debug, Default)]
struct Local {
    /// Offset of the first extension header of the pending member.
    start: Option<u64>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: PaxValues,
    /// Extension bytes announced so far for this member, against [`MAX_EXTENSION`].
    ext_bytes: u64,
}

#[derive(Debug, Default)]
enum Mode {
    /// The next block is a header.
    #[default]
    Header,
    /// Collecting the data of an extension header.
    Extension(Extension),
    /// Reading old GNU sparse extension blocks ('S' with isextended).
    OldSparse(Box<Pending>),
    /// Reading the PAX 1.0 sparse map at the start of the member data.
    SparseMap(Box<Pending>, MapParser),
    /// A pax hardlink with a size: the next block tells whether data follows (module docs).
    LinkData(Box<Pending>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtKind {
    LongName,
    LongLink,
    Pax,
    GlobalPax,
}

#[derive(Debug)]
struct Extension {
    kind: ExtKind,
    header_offset: u64,
    remaining: u64,
    data: Vec<u8>,
}

/// A member whose header is decoded but which still needs sparse blocks.
#[derive(Debug)]
struct Pending {
    entry: Entry,
    /// Data bytes after the header as declared (header or PAX size), sparse map included.
    stored_total: u64,
    chunks: Vec<SparseChunk>,
    /// Bytes of old GNU sparse extension blocks read (headers, not part of the data).
    ext_bytes: u64,
    /// Bytes of the PAX 1.0 in-data sparse map read (part of the declared size).
    map_bytes: u64,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offset where the incomplete unit (member with its extension headers, or a global
    /// header) began, if the decoder is in the middle of one.
    pub fn unit_start(&self) -> Option<u64> {
        match &self.mode {
            Mode::Header => self.local.start,
            Mode::Extension(e) => Some(self.local.start.unwrap_or(e.header_offset)),
            Mode::OldSparse(p) | Mode::SparseMap(p, _) | Mode::LinkData(p) => Some(p.entry.header_offset),
        }
    }

    /// Checks that the stream may end here (at a block boundary); a hardlink still waiting for
    /// its next block had no data after all and goes to `out`.
    pub fn at_eof(&mut self, out: &mut Vec<Entry>) -> Result<()> {
        if matches!(self.mode, Mode::LinkData(_)) {
            if let Mode::LinkData(p) = std::mem::take(&mut self.mode) {
                out.push(header_only(p.entry));
            }
            return Ok(());
        }
        match self.unit_start() {
            Some(offset) => Err(TarError::Truncated { offset }),
            None => Ok(()),
        }
    }

    /// Consumes the block found at archive offset `offset`; completed entries go to `out`.
    pub fn block(&mut self, block: &[u8; BLOCK], offset: u64, out: &mut Vec<Entry>) -> Result<Step> {
        match std::mem::take(&mut self.mode) {
            Mode::Header => self.header(block, offset, out),
            Mode::Extension(ext) => self.extension_block(ext, block),
            Mode::OldSparse(p) => self.old_sparse_block(p, block, offset, out),
            Mode::SparseMap(p, parser) => self.sparse_map_block(p, parser, block, offset, out),
            Mode::LinkData(p) => self.link_data_block(p, block, offset, out),
        }
    }

    /// The block after a pax hardlink with a size: a header (or the end) means the hardlink
    /// had no data; anything else is its first data block.
    fn link_data_block(
        &mut self,
        p: Box<Pending>,
        block: &[u8; BLOCK],
        offset: u64,
        out: &mut Vec<Entry>,
    ) -> Result<Step> {
        if block.iter().all(|&b| b == 0) || verify_checksum(block, offset).is_ok() {
            out.push(header_only(p.entry));
            return self.header(block, offset, out);
        }
        match finish(*p, offset, out)? {
            // This block was the first of the data (`stored_total > 0`, so at least one).
            Step::Skip { bytes, unit_start } => Ok(Step::Skip {
                bytes: bytes - BLOCK as u64,
                unit_start,
            }),
            step => Ok(step),
        }
    }

    fn header(&mut self, block: &[u8; BLOCK], offset: u64, out: &mut Vec<Entry>) -> Result<Step> {
        if block.iter().all(|&b| b == 0) {
            if let Some(start) = self.local.start {
                return Err(TarError::OrphanExtension { offset: start });
            }
            return Ok(Step::End);
        }
        let h = Header::new(block, offset)?;
        let kind = match h.typeflag() {
            b'L' => ExtKind::LongName,
            b'K' => ExtKind::LongLink,
            b'x' => ExtKind::Pax,
            b'g' => ExtKind::GlobalPax,
            _ => return self.member(&h, out),
        };
        self.start_extension(kind, &h)
    }

    fn start_extension(&mut self, kind: ExtKind, h: &Header) -> Result<Step> {
        let size = h.unsigned(124..136, "size")?;
        let too_large = |size| TarError::ExtensionTooLarge {
            offset: h.offset,
            size,
            limit: MAX_EXTENSION,
        };
        if kind == ExtKind::GlobalPax {
            if size > MAX_EXTENSION {
                return Err(too_large(size));
            }
        } else {
            let total = self.local.ext_bytes.saturating_add(size);
            if total > MAX_EXTENSION {
                return Err(too_large(total));
            }
            self.local.ext_bytes = total;
            self.local.start.get_or_insert(h.offset);
        }
        if matches!(kind, ExtKind::Pax | ExtKind::GlobalPax) {
            self.pax_seen = true;
        }
        let ext = Extension {
            kind,
            header_offset: h.offset,
            remaining: size,
            // Bounded by MAX_EXTENSION above; grows as blocks actually arrive.
            data: Vec::with_capacity(size.min(64 << 10) as usize),
        };
        if size == 0 {
            self.apply_extension(ext)?;
        } else {
            self.mode = Mode::Extension(ext);
        }
        Ok(Step::More)
    }

    fn extension_block(&mut self, mut ext: Extension, block: &[u8; BLOCK]) -> Result<Step> {
        let n = ext.remaining.min(BLOCK as u64) as usize;
        ext.data.extend_from_slice(&block[..n]);
        ext.remaining -= n as u64;
        if ext.remaining == 0 {
            self.apply_extension(ext)?;
        } else {
            self.mode = Mode::Extension(ext);
        }
        Ok(Step::More)
    }

    fn apply_extension(&mut self, ext: Extension) -> Result<()> {
        let bad_pax = |reason: PaxError| TarError::BadPax {
            offset: ext.header_offset,
            reason,
        };
        match ext.kind {
            ExtKind::LongName => self.local.long_name = Some(until_nul(&ext.data).to_vec()),
            ExtKind::LongLink => self.local.long_link = Some(until_nul(&ext.data).to_vec()),
            ExtKind::Pax => self.local.pax.apply(&ext.data, false).map_err(bad_pax)?,
            ExtKind::GlobalPax => {
                let mut g = PaxValues::default();
                g.apply(&ext.data, true).map_err(bad_pax)?;
                self.global.merge_global(g);
                let stored = self.global.stored_bytes();
                if stored > MAX_GLOBAL_STORED {
                    return Err(bad_pax(PaxError::GlobalTooLarge {
                        stored,
                        limit: MAX_GLOBAL_STORED,
                    }));
                }
            }
        }
        Ok(())
    }

    /// A real member header: resolves all extension values into an entry.
    fn member(&mut self, h: &Header, out: &mut Vec<Entry>) -> Result<Step> {
        let mut local = std::mem::take(&mut self.local);
        let unit_start = local.start.unwrap_or(h.offset);
        let stored_total = match pax::pick(&local.pax.size, &self.global.size) {
            Some(s) => s,
            None => h.unsigned(124..136, "size")?,
        };
        let typeflag = h.typeflag();
        let Some(kind) = kind_of(typeflag) else {
            log::debug!("skipping tar member with typeflag {typeflag:#04x} at {}", h.offset);
            let bytes = padded(stored_total).ok_or(TarError::SizeOverflow { offset: unit_start })?;
            return Ok(Step::Skip { bytes, unit_start });
        };
        let mut entry = build_entry(h, kind, &mut local, &self.global, stored_total, unit_start)?;
        let data_offset = next_block(h.offset, unit_start)?;
        // Module docs: only regular files, GNU dumpdirs and some pax hardlinks carry data.
        if entry.kind != EntryKind::File && typeflag != b'D' {
            entry.data_offset = data_offset;
            if entry.kind == EntryKind::Hardlink && stored_total > 0 && self.pax_seen && h.format == Format::Ustar {
                self.mode = Mode::LinkData(Box::new(Pending {
                    entry,
                    stored_total,
                    chunks: Vec::new(),
                    ext_bytes: 0,
                    map_bytes: 0,
                }));
                return Ok(Step::More);
            }
            out.push(header_only(entry));
            return Ok(Step::Skip { bytes: 0, unit_start });
        }
        let is_file = entry.kind == EntryKind::File;
        let pending = Box::new(Pending {
            entry,
            stored_total,
            chunks: Vec::new(),
            ext_bytes: 0,
            map_bytes: 0,
        });
        if typeflag == b'S' {
            return self.old_sparse_header(pending, h, data_offset, out);
        }
        match local.pax.sparse {
            Some(keys) if is_file => self.pax_sparse(pending, keys, data_offset, out),
            _ => finish(*pending, data_offset, out),
        }
    }

    /// Old GNU sparse ('S'): four runs in the header, more in extension blocks.
    fn old_sparse_header(
        &mut self,
        mut p: Box<Pending>,
        h: &Header,
        data_offset: u64,
        out: &mut Vec<Entry>,
    ) -> Result<Step> {
        p.entry.size = h.unsigned(483..495, "realsize")?;
        let more = old_sparse_runs(h.block, 386, 4, 482, h.offset, &mut p.chunks)?;
        if more {
            self.mode = Mode::OldSparse(p);
            return Ok(Step::More);
        }
        p.entry.sparse = Some(std::mem::take(&mut p.chunks));
        finish(*p, data_offset, out)
    }

    fn old_sparse_block(
        &mut self,
        mut p: Box<Pending>,
        block: &[u8; BLOCK],
        offset: u64,
        out: &mut Vec<Entry>,
    ) -> Result<Step> {
        p.ext_bytes += BLOCK as u64;
        if p.ext_bytes > MAX_EXTENSION {
            return Err(TarError::ExtensionTooLarge {
                offset: p.entry.header_offset,
                size: p.ext_bytes,
                limit: MAX_EXTENSION,
            });
        }
        if old_sparse_runs(block, 0, 21, 504, offset, &mut p.chunks)? {
            self.mode = Mode::OldSparse(p);
            return Ok(Step::More);
        }
        p.entry.sparse = Some(std::mem::take(&mut p.chunks));
        let data_offset = next_block(offset, p.entry.header_offset)?;
        finish(*p, data_offset, out)
    }

    /// PAX sparse formats: 0.0 and 0.1 carry the map in the PAX header, 1.0 in the data.
    fn pax_sparse(
        &mut self,
        mut p: Box<Pending>,
        keys: pax::SparseKeys,
        data_offset: u64,
        out: &mut Vec<Entry>,
    ) -> Result<Step> {
        let offset = p.entry.header_offset;
        let bad = |reason: SparseError| TarError::BadSparse { offset, reason };
        p.entry.size = keys.realsize.ok_or_else(|| bad(SparseError::NoRealSize))?;
        match (keys.major, keys.minor) {
            (Some(1), Some(0)) => {
                // The map takes at least one block of the member's own data; without that
                // check the next header would be read as a map.
                if p.stored_total < BLOCK as u64 {
                    return Err(bad(SparseError::NoRoomForMap));
                }
                self.mode = Mode::SparseMap(p, MapParser::default());
                return Ok(Step::More);
            }
            (None, None) => {}
            (Some(0), Some(0 | 1)) => {}
            _ => return Err(bad(SparseError::UnsupportedVersion)),
        }
        if keys.pending_offset.is_some() {
            return Err(bad(SparseError::OffsetWithoutNumbytes));
        }
        let chunks = match keys.map {
            Some(map) if keys.pairs.is_empty() => map,
            None => keys.pairs,
            Some(_) => return Err(bad(SparseError::MapAndPairs)),
        };
        if keys.numblocks.is_some_and(|n| n != chunks.len() as u64) {
            return Err(bad(SparseError::NumblocksDisagrees));
        }
        p.entry.sparse = Some(chunks);
        finish(*p, data_offset, out)
    }

    fn sparse_map_block(
        &mut self,
        mut p: Box<Pending>,
        mut parser: MapParser,
        block: &[u8; BLOCK],
        offset: u64,
        out: &mut Vec<Entry>,
    ) -> Result<Step> {
        let header_offset = p.entry.header_offset;
        p.map_bytes += BLOCK as u64;
        if p.map_bytes > p.stored_total {
            return Err(TarError::BadSparse {
                offset: header_offset,
                reason: SparseError::MapPastData,
            });
        }
        if p.map_bytes > MAX_EXTENSION {
            return Err(TarError::ExtensionTooLarge {
                offset: header_offset,
                size: p.map_bytes,
                limit: MAX_EXTENSION,
            });
        }
        let done = parser.feed(block).map_err(|reason| TarError::BadSparse {
            offset: header_offset,
            reason,
        })?;
        if !done {
            self.mode = Mode::SparseMap(p, parser);
            return Ok(Step::More);
        }
        p.entry.sparse = Some(parser.into_chunks());
        let data_offset = next_block(offset, header_offset)?;
        finish(*p, data_offset, out)
    }
}

/// The entry's metadata from its header and extension values; data location comes later.
fn build_entry(
    h: &Header,
    mut kind: EntryKind,
    local: &mut Local,
    g: &PaxValues,
    stored_total: u64,
    unit_start: u64,
) -> Result<Entry> {
    let path = resolve_path(h, local, g);
    // Old tars mark directories only by a trailing slash on a regular entry.
    if matches!(h.typeflag(), b'0' | 0) && path.last() == Some(&b'/') {
        kind = EntryKind::Dir;
    }
    let link = match kind {
        EntryKind::Symlink | EntryKind::Hardlink => Some(resolve_link(h, local, g)),
        _ => None,
    };
    let (dev_major, dev_minor) = match kind {
        EntryKind::CharDev | EntryKind::BlockDev if h.format != Format::V7 => {
            (h.u32_field(329..337, "devmajor")?, h.u32_field(337..345, "devminor")?)
        }
        _ => (0, 0),
    };
    let (mtime, mtime_nsec) = match pax::pick(&local.pax.mtime, &g.mtime) {
        Some(t) => t,
        None => (h.signed(136..148, "mtime")?, 0),
    };
    let mut xattrs = g.xattrs.clone();
    xattrs.append(&mut local.pax.xattrs);
    Ok(Entry {
        path,
        kind,
        mode: (h.unsigned(100..108, "mode")? & 0o7777) as u32,
        uid: pick_or(pax::pick(&local.pax.uid, &g.uid), || h.unsigned(108..116, "uid"))?,
        gid: pick_or(pax::pick(&local.pax.gid, &g.gid), || h.unsigned(116..124, "gid"))?,
        mtime,
        mtime_nsec,
        size: if kind == EntryKind::Dir { 0 } else { stored_total },
        data_offset: 0,
        stored_size: stored_total,
        link,
        dev_major,
        dev_minor,
        xattrs: pax::dedup_xattrs(xattrs),
        sparse: None,
        header_offset: unit_start,
    })
}

/// Member path, by precedence: PAX sparse real name, PAX `path` (local, then global), GNU
/// 'L', then the header's own (prefix-joined) name.
fn resolve_path(h: &Header, local: &mut Local, g: &PaxValues) -> Vec<u8> {
    if let Some(name) = local.pax.sparse.as_mut().and_then(|s| s.name.take()) {
        return name;
    }
    pax::pick(&local.pax.path, &g.path)
        .or_else(|| local.long_name.take())
        .unwrap_or_else(|| h.path())
}

/// Link target, by precedence: PAX `linkpath`, GNU 'K', then the header's `linkname`.
fn resolve_link(h: &Header, local: &mut Local, g: &PaxValues) -> Vec<u8> {
    pax::pick(&local.pax.linkpath, &g.linkpath)
        .or_else(|| local.long_link.take())
        .unwrap_or_else(|| until_nul(h.field(157..257)).to_vec())
}

fn pick_or(v: Option<u64>, f: impl FnOnce() -> Result<u64>) -> Result<u64> {
    match v {
        Some(v) => Ok(v),
        None => f(),
    }
}

fn next_block(offset: u64, unit_start: u64) -> Result<u64> {
    offset
        .checked_add(BLOCK as u64)
        .ok_or(TarError::SizeOverflow { offset: unit_start })
}

/// A member stored without data whatever its size field says (its `data_offset` is already
/// the block after its header, where `finish` would have put it).
fn header_only(mut e: Entry) -> Entry {
    e.size = 0;
    e.stored_size = 0;
    e
}

/// Completes a member: the data starts at `data_offset`; validates any sparse map against it.
fn finish(p: Pending, data_offset: u64, out: &mut Vec<Entry>) -> Result<Step> {
    let mut entry = p.entry;
    let offset = entry.header_offset;
    // For PAX 1.0 the in-data map blocks are part of the declared size but not file data.
    entry.stored_size = p.stored_total - p.map_bytes.min(p.stored_total);
    if let Some(chunks) = entry.sparse.take() {
        let chunks = sparse::check_map(chunks, entry.size, entry.stored_size)
            .map_err(|reason| TarError::BadSparse { offset, reason })?;
        entry.sparse = Some(chunks);
    }
    entry.data_offset = data_offset;
    let bytes = padded(entry.stored_size).ok_or(TarError::SizeOverflow { offset })?;
    data_offset
        .checked_add(bytes)
        .ok_or(TarError::SizeOverflow { offset })?;
    out.push(entry);
    Ok(Step::Skip {
        bytes,
        unit_start: offset,
    })
}

/// Parses `count` 24-byte (offset, numbytes) slots at `start` of an old GNU sparse header or
/// extension block, then the isextended flag at `flag`. An all-NUL slot ends the list.
fn old_sparse_runs(
    block: &[u8; BLOCK],
    start: usize,
    count: usize,
    flag: usize,
    offset: u64,
    out: &mut Vec<SparseChunk>,
) -> Result<bool> {
    for i in 0..count {
        let slot = start + i * 24;
        if block[slot..slot + 24].iter().all(|&b| b == 0) {
            break;
        }
        let off = number(&block[slot..slot + 12], offset, "sparse offset")?;
        let len = number(&block[slot + 12..slot + 24], offset, "sparse numbytes")?;
        out.push(SparseChunk {
            offset: unsigned(off, offset, "sparse offset")?,
            len: unsigned(len, offset, "sparse numbytes")?,
        });
    }
    Ok(block[flag] != 0)
}

fn kind_of(typeflag: u8) -> Option<EntryKind> {
    Some(match typeflag {
        b'0' | 0 | b'7' | b'S' => EntryKind::File,
        b'1' => EntryKind::Hardlink,
        b'2' => EntryKind::Symlink,
        b'3' => EntryKind::CharDev,
        b'4' => EntryKind::BlockDev,
        b'5' | b'D' => EntryKind::Dir,
        b'6' => EntryKind::Fifo,
        _ => return None,
    })
}

/// Header dialects, told apart by the magic field; they differ in what follows `devminor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Pre-POSIX: no magic, no prefix, no device numbers.
    V7,
    /// POSIX ustar (and pax): 155-byte `prefix` at 345 (131 bytes in the star variant).
    Ustar,
    /// GNU ("ustar  \0"): the prefix area holds atime/ctime/sparse data instead.
    Gnu,
}

/// One verified header block.
pub(crate) struct Header<'a> {
    block: &'a [u8; BLOCK],
    offset: u64,
    format: Format,
}

impl<'a> Header<'a> {
    /// Verifies the checksum and detects the format.
    pub fn new(block: &'a [u8; BLOCK], offset: u64) -> Result<Self> {
        verify_checksum(block, offset)?;
        let format = match &block[257..265] {
            b"ustar  \0" => Format::Gnu,
            m if &m[..6] == b"ustar\0" => Format::Ustar,
            _ => Format::V7,
        };
        Ok(Self { block, offset, format })
    }

    fn field(&self, r: std::ops::Range<usize>) -> &'a [u8] {
        &self.block[r]
    }

    fn typeflag(&self) -> u8 {
        self.block[156]
    }

    /// `name`, joined with the ustar `prefix` when there is one.
    fn path(&self) -> Vec<u8> {
        let name = until_nul(self.field(0..100));
        let prefix = match self.format {
            // star's variant keeps atime/ctime after a 131-byte prefix and says so at 508.
            Format::Ustar if &self.block[508..512] == b"tar\0" => until_nul(self.field(345..476)),
            Format::Ustar => until_nul(self.field(345..500)),
            Format::V7 | Format::Gnu => b"",
        };
        if prefix.is_empty() {
            return name.to_vec();
        }
        let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
        p.extend_from_slice(prefix);
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }

    fn unsigned(&self, r: std::ops::Range<usize>, field: &'static str) -> Result<u64> {
        unsigned(number(self.field(r), self.offset, field)?, self.offset, field)
    }

    fn u32_field(&self, r: std::ops::Range<usize>, field: &'static str) -> Result<u32> {
        let v = self.unsigned(r, field)?;
        u32::try_from(v).map_err(|_| bad_number(self.offset, field))
    }

    fn signed(&self, r: std::ops::Range<usize>, field: &'static str) -> Result<i64> {
        let v = number(self.field(r), self.offset, field)?;
        i64::try_from(v).map_err(|_| bad_number(self.offset, field))
    }
}

fn bad_number(offset: u64, field: &'static str) -> TarError {
    TarError::BadNumber { offset, field }
}

fn unsigned(v: i128, offset: u64, field: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| bad_number(offset, field))
}

/// Bytes up to the first NUL (tar strings are NUL-terminated unless they fill their field).
pub(crate) fn until_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// A numeric header field: octal text, or GNU base-256 when the top bit of the first byte is
/// set.
pub(crate) fn number(field: &[u8], offset: u64, name: &'static str) -> Result<i128> {
    let v = match field.first() {
        Some(&b) if b & 0x80 != 0 => base256(field),
        _ => octal(field).map(i128::from),
    };
    v.ok_or(bad_number(offset, name))
}

/// Octal text: leading spaces/NULs, digits, then a space or NUL terminator (spaces may run on
/// to a NUL; anything after the NUL is ignored). Blank fields read as 0.
pub(crate) fn octal(field: &[u8]) -> Option<u64> {
    let start = field.iter().position(|&b| b != b' ' && b != 0);
    let Some(start) = start else { return Some(0) };
    let rest = &field[start..];
    let digits = rest.iter().take_while(|b| (b'0'..=b'7').contains(b)).count();
    if digits == 0 {
        return None;
    }
    let tail = until_nul(&rest[digits..]);
    if !tail.iter().all(|&b| b == b' ') {
        return None;
    }
    rest[..digits]
        .iter()
        .try_fold(0u64, |acc, &b| acc.checked_mul(8)?.checked_add(u64::from(b - b'0')))
}

/// GNU base-256: big-endian two's complement over the field, with the first byte's top bit as
/// the marker and its next bit as the sign (0x80 positive, 0xff negative). Fields are at most
/// 12 bytes (95 value bits), so i128 holds every value; range checks happen in the caller.
pub(crate) fn base256(field: &[u8]) -> Option<i128> {
    let (&first, rest) = field.split_first()?;
    if rest.len() > 14 {
        return None;
    }
    let neg = first & 0x40 != 0;
    let mut v = i128::from(first & 0x3f) - if neg { 0x40 } else { 0 };
    for &b in rest {
        v = v.checked_mul(256)?.checked_add(i128::from(b))?;
    }
    Some(v)
}

/// Accepts the stored checksum if it equals the byte sum with the checksum field read as
/// spaces, computed either unsigned (POSIX) or signed (some historic writers).
fn verify_checksum(block: &[u8; BLOCK], offset: u64) -> Result<()> {
    let field = &block[148..156];
    let stored = octal(field).ok_or(TarError::BadChecksum { offset })?;
    // Sum everything, then swap the field's bytes for eight spaces: a plain loop the compiler
    // vectorizes, which matters at tens of thousands of headers per layer.
    let sum =
        |f: fn(u8) -> i64| block.iter().map(|&b| f(b)).sum::<i64>() - field.iter().map(|&b| f(b)).sum::<i64>() + 8 * 32;
    let unsigned = sum(i64::from);
    if i64::try_from(stored).is_ok_and(|s| s == unsigned || s == sum(|b| i64::from(b as i8))) {
        Ok(())
    } else {
        Err(TarError::BadChecksum { offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_table() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0000644\0", Some(0o644)),
            (b"   644 \0", Some(0o644)),
            (b"644", Some(0o644)),
            (b"\0\0\0\0\0\0\0\0", Some(0)),
            (b"        ", Some(0)),
            (b"", Some(0)),
            (b"17777777777\0", Some(0o17777777777)),
            (b"77777777777 ", Some(0o77777777777)),
            (b"644\0junk", Some(0o644)),
            (b"644   \0x", Some(0o644)),
            (b"\0 644\0", Some(0o644)),
            (b"6 44\0", None),
            (b"648\0", None),
            (b"64x\0", None),
            (b"-644\0", None),
            (b"x\0", None),
            (b"7777777777777777777777777", None), // overflow
        ];
        for (f, want) in cases {
            assert_eq!(octal(f), *want, "{:?}", String::from_utf8_lossy(f));
        }
    }

    #[test]
    fn base256_table() {
        let mut pos = [0u8; 12];
        pos[0] = 0x80;
        pos[4..12].copy_from_slice(&0x1_0000_0000u64.to_be_bytes());
        let cases: &[(&[u8], i128)] = &[
            (&pos, 0x1_0000_0000),
            (&[0x80, 0, 0, 0, 0, 0, 0, 1], 1),
            (&[0xff; 12], -1),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
                -2,
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0x00],
                -512,
            ),
            (&[0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], -(1i128 << 94)),
            (
                &[0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                (1i128 << 94) - 1,
            ),
        ];
        for (f, want) in cases {
            assert_eq!(base256(f), Some(*want), "{f:?}");
            assert_eq!(number(f, 0, "x").ok(), Some(*want));
        }
        assert_eq!(base256(&[]), None);
    }

    #[test]
    fn number_ranges() {
        let mut b = [0u8; BLOCK];
        b[0] = b'a';
        // size > u64::MAX in base-256.
        b[124] = 0x80;
        b[125..136].fill(0xff);
        // negative uid.
        b[108..116].fill(0xff);
        // uid/gid/mode/mtime fields otherwise blank (= 0).
        set_checksum(&mut b);
        let h = Header::new(&b, 512).unwrap();
        assert!(matches!(
            h.unsigned(124..136, "size"),
            Err(TarError::BadNumber {
                offset: 512,
                field: "size"
            })
        ));
        assert!(matches!(
            h.unsigned(108..116, "uid"),
            Err(TarError::BadNumber {
                offset: 512,
                field: "uid"
            })
        ));
        assert_eq!(h.signed(108..116, "uid").unwrap(), -1);
        assert!(matches!(h.signed(124..136, "size"), Err(TarError::BadNumber { .. })));
    }

    fn set_checksum(b: &mut [u8; BLOCK]) {
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn checksums() {
        let mut b = [0u8; BLOCK];
        b[..5].copy_from_slice(b"hello");
        b[200] = 0xf0; // makes signed and unsigned sums differ
        set_checksum(&mut b);
        assert!(verify_checksum(&b, 0).is_ok());
        // Signed variant.
        b[148..156].fill(b' ');
        let signed: i32 = b.iter().map(|&x| i32::from(x as i8)).sum();
        b[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        assert!(verify_checksum(&b, 0).is_ok());
        // Other checksum layouts writers use.
        for fmt in ["{:07o}\0", "{:06o} \0", "{:o}", " {:o}"] {
            let sum: u32 = {
                let mut c = b;
                c[148..156].fill(b' ');
                c.iter().map(|&x| u32::from(x)).sum()
            };
            let text = fmt.replace("{:07o}", &format!("{sum:07o}"));
            let text = text
                .replace("{:06o}", &format!("{sum:06o}"))
                .replace("{:o}", &format!("{sum:o}"));
            b[148..156].fill(b' ');
            b[148..148 + text.len()].copy_from_slice(text.as_bytes());
            assert!(verify_checksum(&b, 0).is_ok(), "{text:?}");
        }
        b[0] ^= 1;
        assert!(matches!(
            verify_checksum(&b, 1024),
            Err(TarError::BadChecksum { offset: 1024 })
        ));
        let mut garbage = [0u8; BLOCK];
        garbage[148..156].copy_from_slice(b"zzzzzzzz");
        assert!(verify_checksum(&garbage, 0).is_err());
    }

    #[test]
    fn padding() {
        assert_eq!(padded(0), Some(0));
        assert_eq!(padded(1), Some(512));
        assert_eq!(padded(512), Some(512));
        assert_eq!(padded(513), Some(1024));
        assert_eq!(padded(u64::MAX - 511), Some(u64::MAX - 511));
        assert_eq!(padded(u64::MAX - 510), None);
    }

    #[test]
    fn kinds() {
        let cases: &[(u8, Option<EntryKind>)] = &[
            (b'0', Some(EntryKind::File)),
            (0, Some(EntryKind::File)),
            (b'7', Some(EntryKind::File)),
            (b'S', Some(EntryKind::File)),
            (b'1', Some(EntryKind::Hardlink)),
            (b'2', Some(EntryKind::Symlink)),
            (b'3', Some(EntryKind::CharDev)),
            (b'4', Some(EntryKind::BlockDev)),
            (b'5', Some(EntryKind::Dir)),
            (b'D', Some(EntryKind::Dir)),
            (b'6', Some(EntryKind::Fifo)),
            (b'V', None),
            (b'M', None),
            (b'N', None),
            (b'A', None),
        ];
        for (t, want) in cases {
            assert_eq!(kind_of(*t), *want, "{t}");
        }
    }
}
