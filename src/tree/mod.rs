//! The immutable tree a mount shows, as an arena of nodes.
//!
//! Built once from an [`ImageSet`] and never changed, so FUSE threads read it without locks and
//! the kernel may cache everything. Children are sorted by name bytes (lookup is a binary
//! search, readdir order is stable). A node's [`NodeId`] is its position in a fixed walk, which
//! makes inode numbers the same on every mount of the same source.

mod build;
pub mod escape;

use crate::blob::ReadAt;
use crate::digest::Digest;
use crate::image::ImageSet;
use std::io;
use std::sync::Arc;

pub use build::{build, build_one, build_with, Shown};

/// Index of a node in the arena; the root is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The root directory.
    pub const ROOT: NodeId = NodeId(0);
}

/// Where a file's bytes come from.
#[derive(Clone)]
pub enum Content {
    /// Bytes held in memory (oci-layout, index.json).
    Bytes(Arc<Vec<u8>>),
    /// A blob of the image set, by digest.
    Blob(Digest),
    /// A file passed through from the source (docker's manifest.json).
    Source(Arc<dyn ReadAt>),
    /// The tar-split data of a layer (digest, diff_id), made by `crate::fs` on first read from
    /// the layer's index (`crate::containers_storage::tarsplit`); its size is unknown before.
    TarSplit(Digest, Option<String>),
}

/// What a node is.
#[derive(Clone)]
pub enum NodeKind {
    /// A directory; children sorted by name.
    Dir {
        /// Child ids, sorted by their names' bytes.
        children: Vec<NodeId>,
    },
    /// Where a lazily built view (rootfs, a layer tree) appears; see `crate::view`.
    View(crate::view::PlacementId),
    /// A symbolic link (`containers-storage/overlay/l/`).
    Symlink {
        /// Where it points.
        target: Box<[u8]>,
    },
    /// A regular file.
    File {
        /// Its bytes.
        content: Content,
        /// Its size.
        size: u64,
    },
}

/// One file or directory.
#[derive(Clone)]
pub struct Node {
    /// Name in its parent (empty for the root).
    pub name: Box<[u8]>,
    /// Parent directory (the root is its own parent).
    pub parent: NodeId,
    /// File or directory.
    pub kind: NodeKind,
}

/// The whole tree plus the image set its files read from.
pub struct Tree {
    nodes: Vec<Node>,
    set: Arc<ImageSet>,
    views: Vec<crate::view::ViewSpec>,
    /// The node where each placement is shown, indexed by `PlacementId`.
    view_nodes: Vec<NodeId>,
    /// Where each ref of the image set is shown (`images/busybox:latest`), in the refs' order.
    ref_paths: Vec<String>,
}

impl Tree {
    /// The node with this id, if any.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0 as usize)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a tree without nodes (never built: the root always exists).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// What each view placement shows, indexed by `PlacementId`.
    pub fn view_specs(&self) -> &[crate::view::ViewSpec] {
        &self.views
    }

    /// The node where placement `p` is shown.
    pub fn placement_node(&self, p: crate::view::PlacementId) -> Option<NodeId> {
        self.view_nodes.get(p.0 as usize).copied()
    }

    /// The path of each ref's directory (`images/...`), in the order of the image set's refs.
    pub fn ref_paths(&self) -> &[String] {
        &self.ref_paths
    }

    /// The image set behind the tree.
    pub fn image_set(&self) -> &Arc<ImageSet> {
        &self.set
    }

    /// Looks a name up in a directory.
    pub fn lookup(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let NodeKind::Dir { children } = &self.get(dir)?.kind else {
            return None;
        };
        children
            .binary_search_by(|c| self.nodes[c.0 as usize].name.as_ref().cmp(name))
            .ok()
            .map(|i| children[i])
    }

    /// Resolves a slash-separated path from the root (for `imgfs ls` / `cat`).
    pub fn resolve(&self, path: &str) -> Option<NodeId> {
        let mut id = NodeId::ROOT;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            id = if part == ".." {
                self.get(id)?.parent
            } else {
                self.lookup(id, part.as_bytes())?
            };
        }
        Some(id)
    }

    /// Number of subdirectories of a directory (for its nlink).
    pub fn subdir_count(&self, id: NodeId) -> u32 {
        match self.get(id).map(|n| &n.kind) {
            Some(NodeKind::Dir { children }) => children
                .iter()
                .filter(|c| matches!(self.nodes[c.0 as usize].kind, NodeKind::Dir { .. } | NodeKind::View(_)))
                .count() as u32,
            _ => 0,
        }
    }

    /// The reader behind a file's content.
    pub fn reader(&self, content: &Content) -> io::Result<Arc<dyn ReadAt>> {
        match content {
            Content::Bytes(b) => Ok(b.clone() as Arc<dyn ReadAt>),
            Content::Source(r) => Ok(r.clone()),
            Content::TarSplit(d, _) => Err(io::Error::other(format!("tar-split of {d} is made by the filesystem"))),
            Content::Blob(d) => self
                .set
                .blobs
                .get(d)
                .map(|b| b.data.clone())
                .ok_or_else(|| io::Error::other(format!("blob {d} vanished"))),
        }
    }

    /// Total bytes of all blobs (for statfs).
    pub fn total_bytes(&self) -> u64 {
        self.set
            .blobs
            .values()
            .map(|b| b.data.len())
            .fold(0u64, u64::saturating_add)
    }
}

impl ReadAt for Arc<Vec<u8>> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_ref().read_at(buf, offset)
    }
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
}
