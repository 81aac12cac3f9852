//! `imgfs cat`: one file of the tree a mount shows, written out as a read of the mount would
//! return it (symlinks followed inside the image, `crate::show::walk`).

use super::ShowError;
use crate::fs::{Fs, Kind};
use std::io::Write;

/// Writes the file at `path` (in the tree of source `reference`) to `out`. A reader that
/// goes away (`| head`) ends the copy without an error.
pub fn cat(fs: &Fs, reference: &str, path: &str, out: &mut impl Write) -> Result<(), ShowError> {
    let ino = super::resolve(fs, reference, path, true)?;
    let attr = fs.getattr(ino)?;
    if attr.kind == Kind::Dir {
        return Err(ShowError::IsDir {
            path: path.to_owned(),
            reference: reference.to_owned(),
        });
    }
    fs.open(ino)?;
    let mut off = 0;
    while off < attr.size {
        let data = fs.read(ino, off, 1 << 20).map_err(|source| ShowError::Read {
            path: path.to_owned(),
            offset: off,
            source,
        })?;
        if data.is_empty() {
            return Err(ShowError::Short {
                path: path.to_owned(),
                offset: off,
                size: attr.size,
            });
        }
        match out.write_all(&data) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
        off += data.len() as u64;
    }
    Ok(())
}
