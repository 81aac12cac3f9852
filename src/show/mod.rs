//! What the CLI prints without mounting (`imgfs inspect`, `ls`, `cat`): path resolution that
//! follows symlinks inside an image the way `chroot` would, `ls -l` lines, and the inspect JSON.
//! Everything reads through [`crate::fs::Fs`], so it shows exactly what a mount shows.

pub mod cat;
pub mod inspect;
pub mod ls;
pub mod walk;

use crate::fs::{Fs, FsError};

/// Why `imgfs ls` or `cat` fails: one line naming the path and the source.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShowError {
    /// The path does not resolve.
    #[error("{path} in {reference}")]
    Walk {
        path: String,
        reference: String,
        #[source]
        source: walk::WalkError,
    },
    /// `cat` of a directory.
    #[error("{path}: is a directory in {reference}")]
    IsDir { path: String, reference: String },
    /// A read of the file failed.
    #[error("{path}: read at {offset}")]
    Read {
        path: String,
        offset: u64,
        #[source]
        source: FsError,
    },
    /// The file ended before its size.
    #[error("{path}: ends at {offset} of {size} bytes")]
    Short { path: String, offset: u64, size: u64 },
    /// Any other failure of the tree (a layer that cannot be indexed).
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ShowError {
    /// The reader of the output went away (`imgfs ls | head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ShowError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// [`walk::resolve`], its error naming `path` and the source `reference`.
pub fn resolve(fs: &Fs, reference: &str, path: &str, follow_last: bool) -> Result<u64, ShowError> {
    walk::resolve(fs, path, follow_last).map_err(|source| ShowError::Walk {
        path: path.to_owned(),
        reference: reference.to_owned(),
        source,
    })
}
