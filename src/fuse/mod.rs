//! The FUSE adapter: translates kernel requests into lookups in the immutable [`Tree`].
//!
//! ID spaces: a [`NodeId`] is an arena index (root 0); the kernel sees `INodeNo = NodeId + 1`
//! (FUSE's root is 1). Both are fixed by the tree's deterministic layout, so the same source gives
//! the same inode numbers on every mount, and FORGET needs no bookkeeping: every node lives as
//! long as the mount. File handles are 0 (no per-open state beyond what the kernel keeps).
//! Everything is read-only; the kernel refuses writes on the `ro` mount before they reach us,
//! and the default trait methods answer the rest with an error.

mod attr;

use crate::tree::{Content, NodeId, NodeKind, Tree};
use crate::verify::Verifier;
use attr::{file_attr, kind_of};
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

/// The tree never changes while mounted, so the kernel may cache names and attributes for long.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Constant generation: inode numbers are never reused within or across mounts of one source.
const GENERATION: Generation = Generation(0);
/// Readahead the kernel may do on our files (bytes).
const MAX_READAHEAD: u32 = 1 << 20;
/// Largest read served in one piece.
const MAX_READ: usize = 1 << 20;

/// A mounted image.
pub struct ImgFs {
    tree: Arc<Tree>,
    verifier: Arc<Verifier>,
}

impl ImgFs {
    /// Serves `tree`.
    pub fn new(tree: Arc<Tree>) -> ImgFs {
        let verifier = Verifier::new(tree.image_set().clone());
        ImgFs { tree, verifier }
    }

    fn node_id(ino: INodeNo) -> Option<NodeId> {
        u64::from(ino).checked_sub(1).and_then(|i| u32::try_from(i).ok()).map(NodeId)
    }

    fn ino(id: NodeId) -> INodeNo {
        INodeNo(u64::from(id.0) + 1)
    }

    fn attr_of(&self, id: NodeId) -> Option<fuser::FileAttr> {
        Some(file_attr(&self.tree, id, Self::ino(id)))
    }

    fn read_node(&self, id: NodeId, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let Some(node) = self.tree.get(id) else { return Err(Errno::ENOENT) };
        let NodeKind::File { content, size: len } = &node.kind else { return Err(Errno::EISDIR) };
        if let Content::Blob(d) = content {
            // A read that reaches the end waits for the blob's verification.
            let at_end = offset.saturating_add(u64::from(size)) >= *len;
            self.verifier.check(d, at_end).map_err(|e| {
                log::error!("read of {}: {e}", String::from_utf8_lossy(&node.name));
                Errno::EIO
            })?;
        }
        let reader = self.tree.reader(content).map_err(|_| Errno::EIO)?;
        let want = (size as usize).min(MAX_READ).min(len.saturating_sub(offset) as usize);
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match reader.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    log::error!("read of {} at {}: {e}", String::from_utf8_lossy(&node.name), offset + filled as u64);
                    return Err(Errno::EIO);
                }
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }
}

impl Filesystem for ImgFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Export support lets the kernel (and so an NFS server) resolve inodes from handles.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_EXPORT_SUPPORT) {
            log::warn!("kernel lacks FUSE capabilities {missing:?}");
        }
        let _ = config.set_max_readahead(MAX_READAHEAD);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = Self::node_id(parent).filter(|d| self.tree.get(*d).is_some()) else {
            return reply.error(Errno::ENOENT);
        };
        let found = match name.as_bytes() {
            b"." => Some(dir),
            b".." => self.tree.get(dir).map(|n| n.parent),
            n => self.tree.lookup(dir, n),
        };
        match found.and_then(|id| self.attr_of(id)) {
            Some(attr) => reply.entry(&TTL, &attr, GENERATION),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match Self::node_id(ino).filter(|d| self.tree.get(*d).is_some()).and_then(|id| self.attr_of(id)) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(node) = Self::node_id(ino).and_then(|id| self.tree.get(id)) else {
            return reply.error(Errno::ENOENT);
        };
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match &node.kind {
            NodeKind::File { content: Content::Blob(d), .. } => self.verifier.start(d),
            NodeKind::File { .. } => {}
            NodeKind::Dir { .. } => return reply.error(Errno::EISDIR),
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(id) = Self::node_id(ino) else { return reply.error(Errno::ENOENT) };
        match self.read_node(id, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match Self::node_id(ino).and_then(|id| self.tree.get(id)).map(|n| &n.kind) {
            Some(NodeKind::Dir { .. }) => reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE),
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(id) = Self::node_id(ino) else { return reply.error(Errno::ENOENT) };
        let Some(node) = self.tree.get(id) else { return reply.error(Errno::ENOENT) };
        let NodeKind::Dir { children } = &node.kind else { return reply.error(Errno::ENOTDIR) };
        let dots = [(id, fuser::FileType::Directory, &b"."[..]), (node.parent, fuser::FileType::Directory, &b".."[..])];
        let entries = dots.into_iter().chain(children.iter().filter_map(|c| {
            let n = self.tree.get(*c)?;
            Some((*c, kind_of(&n.kind), n.name.as_ref()))
        }));
        for (i, (child, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(Self::ino(child), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = self.tree.total_bytes().div_ceil(4096);
        reply.statfs(blocks, 0, 0, self.tree.len() as u64, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        match Self::node_id(ino).and_then(|id| self.tree.get(id)) {
            Some(_) => reply.error(Errno::ENODATA),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match Self::node_id(ino).and_then(|id| self.tree.get(id)) {
            Some(_) if size == 0 => reply.size(0),
            Some(_) => reply.data(&[]),
            None => reply.error(Errno::ENOENT),
        }
    }
}
