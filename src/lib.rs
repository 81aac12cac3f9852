//! imgfs: mount a container image read-only as a directory tree.
//!
//! Data flows top to bottom, one module per stage:
//!
//! ```text
//! source::SourceRef::parse     what the user typed (oci:, oci-archive:, docker-archive:, dir:, path)
//!   -> source::open            files (dir or tar, maybe gzip/zstd as a whole) -> format -> RawLayout
//!        uses blob::*          random-access bytes: pread, ranges, seekable gzip/zstd
//!        uses tarindex         tar headers only -> member offsets
//!   -> image::ImageSet::load   walk index.json, verify documents -> refs, manifests, layers, blobs
//!   -> tree::build             the immutable arena of nodes the mount shows (docs/layout.md)
//!   -> fuse::ImgFs             FUSE adapter over the tree; verify:: checks layer blobs on read
//! ```
//! `mount` wires a tree to the kernel; `cache` keeps indexes on disk between mounts.

pub mod blob;
pub mod cache;
pub mod digest;
pub mod fs;
pub mod fuse;
pub mod image;
pub mod layer;
pub mod merge;
pub mod mount;
pub mod oci;
pub mod source;
pub mod tarindex;
pub mod tree;
pub mod varint;
pub mod verify;
pub mod view;

use std::sync::Arc;

/// Opens a source reference all the way to the tree a mount shows.
pub fn open_tree(reference: &str, cache: &cache::Cache) -> Result<Arc<tree::Tree>, source::SourceError> {
    let r = source::SourceRef::parse(reference)?;
    let raw = source::open(&r, cache)?;
    let set = image::ImageSet::load(raw)?;
    Ok(Arc::new(tree::build(Arc::new(set))))
}
