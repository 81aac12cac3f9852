//! imgfs: mount a container image read-only as a directory tree.
//!
//! Data flows top to bottom, one module per stage:
//!
//! ```text
//! source::SourceRef::parse     what the user typed (oci:, oci-archive:, docker-archive:, dir:,
//!                              docker://, path or bare registry reference)
//!   -> source::open            files (dir or tar, maybe gzip/zstd as a whole) -> format -> RawLayout
//!                              or, for docker://, the ImageRef parsed above: the manifest it names
//!                              fetched -> RawLayout with a fetcher instead of files
//!        uses blob::*          random-access bytes: pread, ranges, seekable gzip/zstd
//!        uses tarindex         tar headers only -> member offsets
//!   -> image::ImageSet::load   walk index.json, verify documents -> refs, manifests, layers, blobs
//!                              (the one walk: blobs asked from the RawLayout by descriptor, a
//!                              registry's fetched a level at a time on prefetch hints)
//!   -> published::install      (--published-index) a registry image's published layer indexes
//!                              fetched, checked and put in the cache
//!   -> tree::build             the immutable arena of nodes the mount shows (docs/layout.md)
//!   -> fuse::ImgFs             FUSE adapter over the tree; verify:: checks layer blobs on read
//! ```
//! `mount` wires a tree to the kernel; `cache` keeps indexes on disk between mounts.

pub mod blob;
pub mod cache;
pub mod cache_admin;
pub mod containers_storage;
pub mod daemon;
pub mod digest;
pub mod error_chain;
pub mod fs;
pub mod fuse;
pub mod image;
pub mod layer;
pub mod merge;
pub mod mount;
pub mod oci;
pub mod one_image;
pub mod progress;
pub mod published;
pub mod refname;
pub mod registry;
pub mod show;
pub mod source;
pub mod status;
pub mod tarindex;
pub mod tree;
pub mod varint;
pub mod verify;
pub mod view;

use std::sync::Arc;

/// Opens a source reference all the way to the tree a mount shows.
pub fn open_tree(reference: &str, cache: &cache::Cache) -> Result<Arc<tree::Tree>, source::SourceError> {
    open_tree_with(reference, cache, &registry::RegistryOptions::default())
}

/// [`open_tree`] with options for registry references.
pub fn open_tree_with(
    reference: &str,
    cache: &cache::Cache,
    registry: &registry::RegistryOptions,
) -> Result<Arc<tree::Tree>, source::SourceError> {
    open_tree_shown(reference, cache, registry, tree::Shown::default())
}

/// [`open_tree_with`], showing what `shown` asks for (`--layout-only`, `--containers-storage`).
pub fn open_tree_shown(
    reference: &str,
    cache: &cache::Cache,
    registry: &registry::RegistryOptions,
    shown: tree::Shown,
) -> Result<Arc<tree::Tree>, source::SourceError> {
    let set = load_set(reference, cache, registry)?;
    Ok(Arc::new(tree::build_with(Arc::new(set), shown, cache)))
}

/// Opens and walks a source. With `--published-index`, the published layer indexes of a
/// registry image are installed into the cache before anything looks for them there
/// (`published::install`).
fn load_set(
    reference: &str,
    cache: &cache::Cache,
    registry: &registry::RegistryOptions,
) -> Result<image::ImageSet, source::SourceError> {
    let r = source::SourceRef::parse(reference)?;
    let raw = source::open_with(&r, cache, registry)?;
    let set = image::ImageSet::load(raw)?;
    if registry.published_index {
        match &r.transport {
            source::Transport::Docker(image) => {
                published::install::install(image, &set, cache, registry);
            }
            _ => log::warn!("{reference}: --published-index applies to registry images only; ignored"),
        }
    }
    Ok(set)
}

/// [`open_tree_with`], then `choice` (`--image`): a tree whose root is that one image's rootfs
/// (or layer). Without a choice, `--platform` must name a registry source: a local source shows
/// every platform, so the option would do nothing, and is refused.
pub fn open_tree_choosing(
    reference: &str,
    cache: &cache::Cache,
    registry: &registry::RegistryOptions,
    choice: Option<&one_image::Choice>,
) -> Result<Arc<tree::Tree>, source::SourceError> {
    let set = load_set(reference, cache, registry)?;
    match choice {
        Some(c) => {
            let c = one_image::Choice {
                platform: c.platform.clone().or_else(|| registry.platform.clone()),
                ..c.clone()
            };
            let chosen = one_image::choose(&set, &c)?;
            Ok(Arc::new(tree::build_one(Arc::new(set), &chosen)))
        }
        None if registry.platform.is_some() && set.format != source::Format::Registry => {
            Err(source::SourceError::Unsupported {
                path: set.path.clone(),
                reason: "--platform has no effect here: a local source shows every platform under \
                         images/<ref>/; add --image [REF] to mount one platform's image"
                    .into(),
            })
        }
        None => Ok(Arc::new(tree::build(Arc::new(set)))),
    }
}
