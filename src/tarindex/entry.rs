//! What the indexer produces: one [`Entry`] per archive member, plus the error type.
//!
//! An entry records where a member's bytes live in the archive stream instead of the bytes
//! themselves, so an index of a multi-GB archive costs memory proportional to its entry count.

use super::pax::PaxError;
use super::sparse::SparseError;

/// The kind of filesystem object a member describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file: typeflags '0', '\0', '7' (contiguous file) and GNU sparse 'S'.
    File,
    /// Directory: typeflag '5', GNU dumpdir 'D', or an old-style regular entry whose name ends
    /// in '/'.
    Dir,
    /// Symbolic link ('2'); [`Entry::link`] holds the target.
    Symlink,
    /// Hard link ('1') to an earlier member; [`Entry::link`] holds the target's path.
    Hardlink,
    /// Character device ('3').
    CharDev,
    /// Block device ('4').
    BlockDev,
    /// Named pipe ('6').
    Fifo,
}

/// One run of real data in a sparse file. Runs are stored back-to-back in the archive starting
/// at [`Entry::data_offset`]; everything between runs reads as zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseChunk {
    /// Logical offset of the run in the expanded file.
    pub offset: u64,
    /// Length of the run in bytes.
    pub len: u64,
}

/// One member of a tar archive: its metadata and where its data lies in the archive stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Raw path bytes as stored, after applying GNU 'L' / PAX `path` / `GNU.sparse.name`;
    /// ustar `prefix` and `name` are joined with '/'. Directories may end with '/'.
    pub path: Vec<u8>,
    /// What the member is.
    pub kind: EntryKind,
    /// Permission bits plus setuid/setgid/sticky (masked with 0o7777).
    pub mode: u32,
    /// Owner id (PAX `uid` overrides the header).
    pub uid: u64,
    /// Group id (PAX `gid` overrides the header).
    pub gid: u64,
    /// Modification time in whole seconds since the epoch, rounded down (may be negative).
    pub mtime: i64,
    /// Sub-second part of the modification time, `0..1_000_000_000`; only PAX carries it.
    pub mtime_nsec: u32,
    /// Logical size: the expanded size for sparse files, 0 for directories, otherwise the
    /// number of stored data bytes.
    pub size: u64,
    /// Offset of the member's data in the archive stream, after all of its headers (and after
    /// the in-data sparse map of PAX sparse 1.0).
    pub data_offset: u64,
    /// Number of data bytes stored in the archive from `data_offset`, padding excluded.
    pub stored_size: u64,
    /// Symlink or hardlink target (GNU 'K' / PAX `linkpath` applied); `None` for other kinds.
    pub link: Option<Vec<u8>>,
    /// Device major number (character and block devices only, else 0).
    pub dev_major: u32,
    /// Device minor number (character and block devices only, else 0).
    pub dev_minor: u32,
    /// Extended attributes from PAX `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`, in archive order;
    /// a name given twice keeps its first position and its last value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For sparse files, the data runs (sorted, non-overlapping, empty runs dropped); their
    /// lengths add up to `stored_size`.
    pub sparse: Option<Vec<SparseChunk>>,
    /// Offset of the first header block of this member, including its PAX/GNU extension headers.
    pub header_offset: u64,
}

#[cfg(test)]
impl Entry {
    /// A member with this path and kind and every other field zero or empty (a base for tests).
    pub fn for_test(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            path: path.to_vec(),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            data_offset: 0,
            stored_size: 0,
            link: None,
            dev_major: 0,
            dev_minor: 0,
            xattrs: vec![],
            sparse: None,
            header_offset: 0,
        }
    }
}

/// Why an archive could not be indexed. Offsets are byte offsets in the archive stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A header block's checksum matches neither the unsigned nor the signed byte sum.
    #[error("bad tar header checksum in block at offset {offset}")]
    BadChecksum {
        /// Offset of the header block.
        offset: u64,
    },
    /// A numeric header field is neither octal nor GNU base-256, or out of range.
    #[error("bad numeric field `{field}` in tar header at offset {offset}")]
    BadNumber {
        /// Offset of the header block.
        offset: u64,
        /// Name of the field.
        field: &'static str,
    },
    /// The stream ended inside a header or inside member data.
    #[error("tar archive truncated inside the entry starting at offset {offset}")]
    Truncated {
        /// Offset of the first header of the incomplete entry (or of the partial block).
        offset: u64,
    },
    /// A size or offset computation overflowed 64 bits.
    #[error("size of tar entry at offset {offset} overflows")]
    SizeOverflow {
        /// Offset of the entry's first header.
        offset: u64,
    },
    /// A PAX extended header is malformed.
    #[error("bad PAX extended header at offset {offset}")]
    BadPax {
        /// Offset of the PAX header block.
        offset: u64,
        /// What is wrong with it.
        #[source]
        reason: PaxError,
    },
    /// A GNU sparse map is malformed or inconsistent with the stored data.
    #[error("bad sparse map in tar entry at offset {offset}")]
    BadSparse {
        /// Offset of the entry's first header.
        offset: u64,
        /// What is wrong with it.
        #[source]
        reason: SparseError,
    },
    /// A PAX/GNU extension (or sparse map) is larger than the indexer accepts.
    #[error("tar extension header at offset {offset} is {size} bytes, over the {limit}-byte limit")]
    ExtensionTooLarge {
        /// Offset of the extension header.
        offset: u64,
        /// Size it claims (or has reached).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Extension headers (PAX 'x', GNU 'L'/'K') were followed by the end of the archive.
    #[error("tar extension headers at offset {offset} are not followed by a member")]
    OrphanExtension {
        /// Offset of the first dangling extension header.
        offset: u64,
    },
    /// [`crate::tarindex::StreamIndexer::feed`] was called again after it had failed.
    #[error("tar stream indexer was used after an earlier error")]
    Poisoned,
    /// Reading the archive failed. Transparent, so an error-chain printer does not show the
    /// I/O error twice.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, TarError>;
