//! Indexing an archive with random access (an outer `docker save` tar on disk): read each
//! header block, then jump over member data without reading it.

use super::entry::{Entry, Result, TarError};
use super::header::{Decoder, Step, BLOCK};
use crate::blob::ReadAt;

/// Indexes every member of `archive`, reading only header blocks (and extension data).
///
/// Guarantees for every returned entry: `data_offset + stored_size <= archive.len()`.
pub fn index_seekable(archive: &dyn ReadAt) -> Result<Vec<Entry>> {
    let len = archive.len();
    let mut dec = Decoder::new();
    let mut entries = Vec::new();
    let mut pos = 0u64;
    let mut block = [0u8; BLOCK];
    loop {
        if pos == len {
            dec.at_eof(&mut entries)?;
            break;
        }
        if len - pos < BLOCK as u64 {
            return Err(TarError::Truncated {
                offset: dec.unit_start().unwrap_or(pos),
            });
        }
        read_block(archive, &mut block, pos, &dec)?;
        let here = pos;
        pos += BLOCK as u64;
        match dec.block(&block, here, &mut entries)? {
            Step::More => {}
            Step::End => {
                warn_lone_zero_block(archive, pos);
                break;
            }
            Step::Skip { bytes, unit_start } => {
                // Checked here, not in the decoder: only this driver knows the length up front,
                // and it makes `data_offset + stored_size <= len` hold for every entry.
                let end = pos
                    .checked_add(bytes)
                    .ok_or(TarError::SizeOverflow { offset: unit_start })?;
                if end > len {
                    return Err(TarError::Truncated { offset: unit_start });
                }
                pos = end;
            }
        }
    }
    Ok(entries)
}

/// Reads one whole block; a blob shorter than its `len()` counts as truncation.
fn read_block(archive: &dyn ReadAt, block: &mut [u8; BLOCK], pos: u64, dec: &Decoder) -> Result<()> {
    let mut done = 0;
    while done < BLOCK {
        let n = match archive.read_at(&mut block[done..], pos + done as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(TarError::Truncated {
                offset: dec.unit_start().unwrap_or(pos),
            });
        }
        done += n;
    }
    Ok(())
}

/// GNU tar also stops at a single zero block but says so when data follows it; so do we.
fn warn_lone_zero_block(archive: &dyn ReadAt, pos: u64) {
    let mut next = [0u8; BLOCK];
    if let Ok(n) = archive.read_at(&mut next, pos) {
        if next[..n].iter().any(|&b| b != 0) {
            log::debug!(
                "tar: a lone zero block at {}; ignoring what follows",
                pos - BLOCK as u64
            );
        }
    }
}

#[cfg(test)]
mod tests;
