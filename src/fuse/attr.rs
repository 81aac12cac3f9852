//! Tree nodes -> FUSE attributes. Metadata files are root-owned and read-only (0444 files,
//! 0555 directories); times are the source's mtime so remounts show the same values.

use crate::tree::{NodeId, NodeKind, Tree};
use fuser::{FileAttr, FileType, INodeNo};

/// The FUSE file type of a node.
pub fn kind_of(kind: &NodeKind) -> FileType {
    match kind {
        NodeKind::Dir { .. } => FileType::Directory,
        NodeKind::File { .. } => FileType::RegularFile,
    }
}

/// Attributes of a node.
pub fn file_attr(tree: &Tree, id: NodeId, ino: INodeNo) -> FileAttr {
    let mtime = tree.image_set().mtime;
    let (kind, perm, size, nlink) = match tree.get(id).map(|n| &n.kind) {
        Some(NodeKind::File { size, .. }) => (FileType::RegularFile, 0o444, *size, 1),
        _ => (FileType::Directory, 0o555, 0, 2 + tree.subdir_count(id)),
    };
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}
