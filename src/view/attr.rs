//! Attributes of view inodes, from their tar entries: mode, owner, times, device numbers.

use crate::layer::entries::Meta;
use crate::merge::{Inode, InodeKind};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Permission bits shown for directories that no tar entry describes (implicit parents).
const IMPLICIT_DIR_MODE: u16 = 0o755;

/// What `stat` shows for an inode: of a view (from its tar entry, here) or of the static tree
/// (`crate::fs`), one type for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Kernel inode number (`crate::fs` numbers inodes).
    pub ino: u64,
    /// Inode kind.
    pub kind: InodeKind,
    /// Permission bits including setuid/setgid/sticky (07777).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (symlinks: length of the target).
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// Link count.
    pub nlink: u32,
    /// Device number in the kernel's encoding (devices only).
    pub rdev: u32,
}

impl Attr {
    /// Attributes of view `inode` numbered `ino`, described by `entry` (None for implicit
    /// directories).
    pub fn new(ino: u64, inode: &Inode, entry: Option<&Meta<'_>>, default_mtime: SystemTime) -> Attr {
        let Some(e) = entry else {
            // Implicit directories, and the whiteouts of overlay trees: character devices 0:0,
            // mode 0 as containers/storage and Docker create them, time 0 (never shown by
            // overlayfs; a fixed value keeps the tree a function of the image alone).
            let (perm, mtime) = match inode.kind() {
                InodeKind::Dir => (IMPLICIT_DIR_MODE, default_mtime),
                _ => (0, UNIX_EPOCH),
            };
            return Attr {
                ino,
                kind: inode.kind(),
                perm,
                uid: 0,
                gid: 0,
                size: 0,
                mtime,
                nlink: inode.nlink,
                rdev: 0,
            };
        };
        let size = match inode.kind() {
            InodeKind::File => e.size,
            InodeKind::Symlink => e.link.map_or(0, |l| l.len() as u64),
            _ => 0,
        };
        let rdev = match inode.kind() {
            InodeKind::CharDev | InodeKind::BlockDev => encode_dev(e.dev_major, e.dev_minor),
            _ => 0,
        };
        Attr {
            ino,
            kind: inode.kind(),
            perm: (e.mode & 0o7777) as u16,
            uid: e.uid,
            gid: e.gid,
            size,
            mtime: time_of(e.mtime, e.mtime_nsec),
            nlink: inode.nlink,
            rdev,
        }
    }
}

/// The kernel's 32-bit `new_encode_dev`: minor low 8 bits, major 12 bits, minor high 12 bits.
fn encode_dev(major: u32, minor: u32) -> u32 {
    ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12)
}

fn time_of(secs: i64, nsec: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nsec.min(999_999_999)));
    if secs >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(secs as u64) + nanos)
            .unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(nanos))
            .unwrap_or(UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_match_the_kernel_encoding() {
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(8, 0x12345), (8 << 8) | 0x45 | (0x12300 << 12));
    }

    #[test]
    fn negative_times() {
        assert_eq!(time_of(-1, 0), UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(time_of(1, 5), UNIX_EPOCH + Duration::from_nanos(1_000_000_005));
    }
}
