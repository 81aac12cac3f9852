//! Tar indexing: turns a tar stream into a list of [`Entry`] values (metadata plus where each
//! member's data lies in the stream) without copying member data.
//!
//! It sits between the sources and the merge: outer archives (`docker save`, oci-archive) are
//! indexed in place with [`index_seekable`], which reads only header blocks and jumps over
//! data; image layers are indexed with [`StreamIndexer`] in the same pass that inflates and
//! hashes them, being fed the decompressed bytes in whatever chunks the decompressor yields.
//! Both drivers share one header-decoding state machine (`header.rs`), so ustar, v7, GNU and
//! PAX dialects, long names, GNU and PAX sparse files and global headers mean the same in both.
//! The resulting entries go to the layer merge, which builds the mounted tree and later reads
//! file data at `data_offset` (expanded through the sparse map where there is one). Archives
//! are untrusted: every number is checked, extension data is capped, and nothing is allocated
//! from a size field.

pub mod entry;
mod header;
mod pax;
pub mod seek;
mod sparse;
pub mod stream;

#[cfg(test)]
mod testutil;

pub use entry::{Entry, EntryKind, Result, SparseChunk, TarError};
pub use pax::PaxError;
pub use seek::index_seekable;
pub use sparse::SparseError;
pub use stream::StreamIndexer;
