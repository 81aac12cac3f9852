//! `imgfs ls -l` lines, laid out like GNU `ls -ln --time-style=long-iso` (numeric owners: the
//! image's users are not this host's; times in UTC), so a listing without a mount reads like
//! `ls -l` of the mount. The column widths follow coreutils': numbers right-aligned to the
//! widest in the listing, device numbers as `major, minor`.

use super::ShowError;
use crate::fs::{Attr, Fs, Kind};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// One entry to list: its attributes, its name, and its target when it is a symlink.
pub struct Entry {
    /// Attributes as `stat` shows them.
    pub attr: Attr,
    /// The name to print (a path for `-R`).
    pub name: Vec<u8>,
    /// The link target of a symlink.
    pub target: Option<Vec<u8>>,
}

/// `drwxr-xr-x` and friends, with setuid/setgid/sticky as `s`/`S`/`t`/`T`.
pub fn mode_string(kind: Kind, perm: u16) -> String {
    let type_char = match kind {
        Kind::Dir => 'd',
        Kind::File => '-',
        Kind::Symlink => 'l',
        Kind::CharDev => 'c',
        Kind::BlockDev => 'b',
        Kind::Fifo => 'p',
    };
    let mut s = String::with_capacity(10);
    s.push(type_char);
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (who, (bit, set_x, set_no_x)) in special.into_iter().enumerate() {
        let shift = 6 - 3 * who;
        let rwx = (perm >> shift) & 7;
        s.push(if rwx & 4 != 0 { 'r' } else { '-' });
        s.push(if rwx & 2 != 0 { 'w' } else { '-' });
        let x = rwx & 1 != 0;
        s.push(match (perm & bit != 0, x) {
            (true, true) => set_x,
            (true, false) => set_no_x,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD HH:MM` in UTC (times before 1970 included).
pub fn long_iso(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm: 400-year eras of 146,097 days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The kernel's 32-bit device encoding back to (major, minor).
fn dev_parts(rdev: u32) -> (u32, u32) {
    ((rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00))
}

/// The long lines of `entries`, in the order given, aligned as one listing.
pub fn long_lines(entries: &[Entry]) -> Vec<Vec<u8>> {
    let is_dev = |a: &Attr| matches!(a.kind, Kind::CharDev | Kind::BlockDev);
    let width = |f: &dyn Fn(&Attr) -> String| entries.iter().map(|e| f(&e.attr).len()).max().unwrap_or(0);
    let nlink_w = width(&|a| a.nlink.to_string());
    let uid_w = width(&|a| a.uid.to_string());
    let gid_w = width(&|a| a.gid.to_string());
    let devs = entries
        .iter()
        .filter(|e| is_dev(&e.attr))
        .map(|e| dev_parts(e.attr.rdev));
    let (major_w, minor_w) = devs.fold((0, 0), |(mw, nw), (ma, mi)| {
        (mw.max(ma.to_string().len()), nw.max(mi.to_string().len()))
    });
    let mut size_w = width(&|a| if is_dev(a) { String::new() } else { a.size.to_string() });
    if major_w > 0 {
        size_w = size_w.max(major_w + 2 + minor_w);
    }
    entries
        .iter()
        .map(|e| {
            let a = &e.attr;
            let size = if is_dev(a) {
                let (ma, mi) = dev_parts(a.rdev);
                let pad = size_w - (major_w + 2 + minor_w) + major_w;
                format!("{ma:>pad$}, {mi:>minor_w$}")
            } else {
                format!("{:>size_w$}", a.size)
            };
            let mut line = format!(
                "{} {:>nlink_w$} {:>uid_w$} {:>gid_w$} {size} {} ",
                mode_string(a.kind, a.perm),
                a.nlink,
                a.uid,
                a.gid,
                long_iso(a.mtime)
            )
            .into_bytes();
            line.extend_from_slice(&e.name);
            if let Some(t) = &e.target {
                line.extend_from_slice(b" -> ");
                line.extend_from_slice(t);
            }
            line
        })
        .collect()
}

/// How `imgfs ls` prints.
pub struct Listing {
    /// `-l`: [`long_lines`].
    pub long: bool,
    /// `-R`: every directory below, names as paths.
    pub recursive: bool,
}

impl Listing {
    /// `imgfs ls [-l] [-R] PATH` in the tree of source `reference`.
    pub fn list(&self, fs: &Fs, reference: &str, path: &str, out: &mut impl Write) -> Result<(), ShowError> {
        // Like ls(1): `-l` shows a symlink itself, unless the path ends with `/`.
        let follow_last = !self.long || path.ends_with('/');
        let ino = super::resolve(fs, reference, path, follow_last)?;
        if fs.getattr(ino)?.kind == Kind::Dir {
            self.dir(fs, ino, "", out)
        } else {
            self.write(fs, vec![(ino, path.trim_end_matches('/').as_bytes().to_vec())], out)
        }
    }

    /// Lists directory `ino`, whose path (for `-R`) is `prefix`.
    pub fn dir(&self, fs: &Fs, ino: u64, prefix: &str, out: &mut impl Write) -> Result<(), ShowError> {
        let mut entries = Vec::new();
        fs.readdir(ino, 2, |child, kind, name| {
            entries.push((child, kind, name.to_vec()));
            false
        })?;
        let shown = entries
            .iter()
            .map(|(child, _, name)| {
                let name = String::from_utf8_lossy(name);
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                (
                    *child,
                    if self.recursive { path } else { name.to_string() }.into_bytes(),
                )
            })
            .collect();
        self.write(fs, shown, out)?;
        if self.recursive {
            for (child, kind, name) in entries {
                if kind == Kind::Dir {
                    let name = String::from_utf8_lossy(&name);
                    let path = if prefix.is_empty() {
                        name.to_string()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    self.dir(fs, child, &path, out)?;
                }
            }
        }
        Ok(())
    }

    /// Writes one listing: names with a type suffix (`/`, `@`), or `-l` lines aligned together.
    pub fn write(&self, fs: &Fs, entries: Vec<(u64, Vec<u8>)>, out: &mut impl Write) -> Result<(), ShowError> {
        if self.long {
            let mut long = Vec::with_capacity(entries.len());
            for (ino, name) in entries {
                let attr = fs.getattr(ino)?;
                let target = (attr.kind == Kind::Symlink).then(|| fs.readlink(ino)).transpose()?;
                long.push(Entry { attr, name, target });
            }
            for line in long_lines(&long) {
                out.write_all(&line)?;
                out.write_all(b"\n")?;
            }
            return Ok(());
        }
        for (ino, name) in entries {
            let suffix: &[u8] = match fs.getattr(ino)?.kind {
                Kind::Dir => b"/",
                Kind::Symlink => b"@",
                _ => b"",
            };
            out.write_all(&name)?;
            out.write_all(suffix)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn modes() {
        assert_eq!(mode_string(Kind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(Kind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(Kind::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(Kind::CharDev, 0o1666), "crw-rw-rwT");
    }

    #[test]
    fn times() {
        let t = |s: i64| {
            if s >= 0 {
                UNIX_EPOCH + Duration::from_secs(s as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs((-s) as u64)
            }
        };
        assert_eq!(long_iso(t(0)), "1970-01-01 00:00");
        assert_eq!(long_iso(t(951_782_400)), "2000-02-29 00:00");
        assert_eq!(long_iso(t(1_700_000_000)), "2023-11-14 22:13");
        assert_eq!(long_iso(t(-60)), "1969-12-31 23:59");
    }

    #[test]
    fn devices_align_like_ls() {
        let attr = |kind, size, rdev| Attr {
            ino: 2,
            kind,
            perm: 0o666,
            uid: 0,
            gid: 0,
            size,
            mtime: UNIX_EPOCH,
            nlink: 1,
            rdev,
        };
        let e = |a, n: &str| Entry {
            attr: a,
            name: n.into(),
            target: None,
        };
        let lines = long_lines(&[
            e(attr(Kind::CharDev, 0, (1 << 8) | 3), "null"),
            e(attr(Kind::File, 5, 0), "f"),
        ]);
        let text: Vec<String> = lines.into_iter().map(|l| String::from_utf8(l).unwrap()).collect();
        assert_eq!(text[0], "crw-rw-rw- 1 0 0 1, 3 1970-01-01 00:00 null");
        assert_eq!(text[1], "-rw-rw-rw- 1 0 0    5 1970-01-01 00:00 f");
    }
}
