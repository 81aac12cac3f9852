//! Resolving a path of the mount's tree the way a process chrooted into the image would:
//! symlinks inside a view (`rootfs/`, `layers/<n>/`) are followed, an absolute target starts at
//! that view's root, and a `..` a link leads to stops at the view's root. So
//! `images/busybox:latest/rootfs/bin/sh -> /bin/busybox` reads the image's busybox, never a
//! file outside the image (docs/cli.md).

use crate::fs::{Fs, FsError, Kind};
use std::collections::VecDeque;

/// Most symlinks one resolution follows, as Linux's `ELOOP` limit.
pub const MAX_LINKS: usize = 40;

/// Why a path does not resolve; Display is the end of one line that starts with the path.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// A component is missing.
    #[error("no such file or directory")]
    NotFound,
    /// A component before the last is not a directory.
    #[error("not a directory")]
    NotDir,
    /// More than [`MAX_LINKS`] symlinks (a loop in the image).
    #[error("too many levels of symbolic links (a symlink loop in the image)")]
    Loop,
    /// Anything else the filesystem reports (a layer that cannot be indexed).
    #[error("{0}")]
    Fs(FsError),
}

impl From<FsError> for WalkError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::NotFound => WalkError::NotFound,
            FsError::NotDir => WalkError::NotDir,
            e => WalkError::Fs(e),
        }
    }
}

/// One component still to resolve, and whether a symlink target produced it (only those are
/// clamped at the view's root: a `..` the user typed leaves `rootfs/` as it does in a mount).
struct Part {
    name: Vec<u8>,
    from_link: bool,
}

/// Resolves `path` from the root of `fs`, following symlinks in every component but the last,
/// and in the last too when `follow_last` (`cat` does, `ls` does not: `ls -l` shows the link).
pub fn resolve(fs: &Fs, path: &str, follow_last: bool) -> Result<u64, WalkError> {
    let mut queue: VecDeque<Part> = parts(path.as_bytes(), false).collect();
    // Inodes from the root to the current directory: `..` pops (views' parents need no lookup).
    let mut stack = vec![Fs::ROOT];
    let mut links = 0;
    while let Some(part) = queue.pop_front() {
        match part.name.as_slice() {
            b"" | b"." => continue,
            b".." => {
                let floor = if part.from_link { chroot(fs, &stack) } else { 0 };
                if stack.len() > floor + 1 {
                    stack.pop();
                }
                continue;
            }
            _ => {}
        }
        let dir = *stack.last().unwrap_or(&Fs::ROOT);
        let attr = fs.lookup(dir, &part.name)?;
        let last = queue.is_empty();
        if attr.kind == Kind::Symlink && (follow_last || !last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(WalkError::Loop);
            }
            let target = fs.readlink(attr.ino)?;
            if target.starts_with(b"/") {
                stack.truncate(chroot(fs, &stack) + 1);
            }
            for p in parts(&target, true).collect::<Vec<_>>().into_iter().rev() {
                queue.push_front(p);
            }
            continue;
        }
        if !last && attr.kind != Kind::Dir {
            return Err(WalkError::NotDir);
        }
        stack.push(attr.ino);
    }
    Ok(*stack.last().unwrap_or(&Fs::ROOT))
}

fn parts(bytes: &[u8], from_link: bool) -> impl Iterator<Item = Part> + '_ {
    bytes.split(|&b| b == b'/').map(move |n| Part {
        name: n.to_vec(),
        from_link,
    })
}

/// Index in `stack` of the innermost view root (the image root a link resolves in), or 0.
fn chroot(fs: &Fs, stack: &[u64]) -> usize {
    stack.iter().rposition(|&ino| fs.is_view_root(ino)).unwrap_or(0)
}
