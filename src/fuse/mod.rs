//! The FUSE adapter: kernel requests -> [`Fs`] calls -> replies. No filesystem logic lives here;
//! `crate::fs` explains the inode numbers. Everything is read-only: the kernel refuses writes
//! on the `ro` mount before they reach us, and fuser's defaults answer the rest with errors.

mod attr;

use crate::fs::{Fs, FsError};
use attr::{file_attr, file_type};
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// The tree never changes while mounted, so the kernel may cache names and attributes for long.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Constant generation: inode numbers are never reused within or across mounts of one source.
const GENERATION: Generation = Generation(0);
/// Readahead the kernel may do on our files (bytes).
const MAX_READAHEAD: u32 = 1 << 20;
/// Largest read served in one piece.
const MAX_READ: usize = 1 << 20;

/// The one place that chooses errno values.
fn errno(e: &FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotLink => Errno::EINVAL,
        FsError::Interrupted => Errno::EINTR,
        _ => Errno::EIO,
    }
}

/// Answers whether the mount point still holds our mount: (mount point, our device number as
/// "major:minor"). Given by whoever mounts (`mount.rs`), so this adapter needs nothing of it.
pub type StillMounted = fn(&std::path::Path, &str) -> bool;

/// A mounted image.
pub struct ImgFs {
    fs: Fs,
    /// The mount point and our mount's device number ("major:minor" in mountinfo), once mounted.
    mounted: std::sync::Arc<std::sync::OnceLock<(std::path::PathBuf, String)>>,
    still_mounted: StillMounted,
}

impl ImgFs {
    /// Serves `fs`; `still_mounted` is asked at the end of the session (see `destroy`).
    pub fn new(fs: Fs, still_mounted: StillMounted) -> ImgFs {
        ImgFs {
            fs,
            mounted: Default::default(),
            still_mounted,
        }
    }

    /// Where the mount is recorded once made (see `destroy`).
    pub fn mount_record(&self) -> std::sync::Arc<std::sync::OnceLock<(std::path::PathBuf, String)>> {
        self.mounted.clone()
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

    fn destroy(&mut self) {
        // The session has ended. fuser 0.18 now umount(2)s the mount point by path, even when the
        // kernel already let go of our mount: its "already unmounted" test reads POLLERR the wrong
        // way round (fixed upstream in cberner/fuser#703, not released). After `umount -l` and a
        // new mount at the same path, that would unmount the new mount. So when the mount point no
        // longer holds our mount, leave without letting fuser unmount anything.
        if let Some((path, dev)) = self.mounted.get() {
            if !(self.still_mounted)(path, dev) {
                log::info!("{} no longer holds this mount; exiting", path.display());
                std::process::exit(0);
            }
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        crate::fs::set_caller(req.pid());
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        crate::fs::set_caller(req.pid());
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        crate::fs::set_caller(req.pid());
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        crate::fs::set_caller(req.pid());
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.fs.open(ino.0) {
            Ok(()) if self.fs.direct_io(ino.0) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        crate::fs::set_caller(req.pid());
        match self.fs.read(ino.0, offset, (size as usize).min(MAX_READ)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        crate::fs::set_caller(req.pid());
        match self.fs.getattr(ino.0) {
            Ok(a) if a.kind == crate::fs::Kind::Dir => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(&self, req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        crate::fs::set_caller(req.pid());
        let mut next = offset;
        let result = self.fs.readdir(ino.0, offset, |child, kind, name| {
            next += 1;
            reply.add(INodeNo(child), next, file_type(kind), OsStr::from_bytes(name))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (bytes, nodes) = self.fs.usage();
        reply.statfs(bytes.div_ceil(4096), 0, 0, nodes, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        crate::fs::set_caller(req.pid());
        let xattrs = match self.fs.xattrs(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        match xattrs.iter().find(|(k, _)| k.as_slice() == name.as_bytes()) {
            None => reply.error(Errno::ENODATA),
            Some((_, v)) if size == 0 => reply.size(v.len() as u32),
            Some((_, v)) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Some((_, v)) => reply.data(v),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        crate::fs::set_caller(req.pid());
        let xattrs = match self.fs.xattrs(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut list = Vec::new();
        for (k, _) in &xattrs {
            list.extend_from_slice(k);
            list.push(0);
        }
        if size == 0 {
            reply.size(list.len() as u32);
        } else if list.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(&list);
        }
    }
}
