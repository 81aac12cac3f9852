//! Mounting: option parsing, mount point checks, and running the FUSE session until it is
//! unmounted or the daemon is told to stop (SIGTERM/SIGINT/SIGHUP unmount cleanly).

use crate::cache::Cache;
use crate::fs::Fs;
use crate::fuse::ImgFs;
use crate::one_image::Choice;
use crate::registry::RegistryOptions;
use fuser::{Config, MountOption, Session, SessionACL};
use std::path::{Path, PathBuf};

/// Worker threads serving FUSE requests: reads may wait on decompression, so more than cores.
pub const FUSE_THREADS: usize = 4;

/// Why a mount cannot be made. One line each, naming the mount point.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The mount point is missing or not a directory.
    #[error("mount point {}: {reason}", path.display())]
    BadMountPoint { path: PathBuf, reason: String },
    /// An option we do not know or cannot honour.
    #[error("mount option {option:?}: {reason}")]
    BadOption { option: String, reason: String },
    /// FUSE is not usable on this machine.
    #[error("{reason}")]
    NoFuse { reason: String },
    /// The kernel or fusermount refused.
    #[error("cannot mount on {}: {source}", path.display())]
    Mount { path: PathBuf, source: std::io::Error },
}

/// Everything that says how to mount, from the command line's flags and its `-o a,b=c` lists
/// alike (the CLI fills the fields from its flags, then [`Options::parse_into`] reads each `-o`
/// list over them: an `-o` option wins over the flag of the same meaning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Let other users access the mount.
    pub allow_other: bool,
    /// Let root access the mount.
    pub allow_root: bool,
    /// Have the kernel check permissions from the modes shown.
    pub default_permissions: bool,
    /// Honour device files (`-o devices`; off by default: nodev).
    pub dev: bool,
    /// Honour setuid bits (`-o setuid`; off by default: nosuid).
    pub suid: bool,
    /// Allow mounting over a non-empty directory.
    pub nonempty: bool,
    /// fsname shown in /proc/mounts.
    pub fsname: Option<String>,
    /// Cache directory (`cache_dir=`).
    pub cache_dir: Option<PathBuf>,
    /// Disable the cache (`no_cache`).
    pub no_cache: bool,
    /// Log file for the daemon (`log=`).
    pub log_file: Option<PathBuf>,
    /// Show the OCI layout only, no `images/` views (`layout_only`, `--layout-only`).
    pub layout_only: bool,
    /// Show `containers-storage/`, an image store for podman and CRI-O
    /// (`containers_storage`, `--containers-storage`; docs/podman.md).
    pub containers_storage: bool,
    /// Show one image at the top (`image[=REF]`, `--image [REF]`; empty: the source's only one).
    pub image: Option<String>,
    /// One layer of that image instead of its rootfs (`layer=N`, `--layer N`; implies `image`).
    pub layer: Option<usize>,
    /// How to reach a registry: `platform=`, `authfile=`, `cert_dir=` (repeatable),
    /// `tls_verify=`, `registry_timeout=` and their flags. Credentials are never an option
    /// (fstab is world-readable): the CLI fills `creds` from `creds_file` and its other sources.
    pub registry: RegistryOptions,
    /// File whose first line is `USER:PASSWORD` (`creds_file=`, `--creds-file`).
    pub creds_file: Option<PathBuf>,
    /// Build every view before the mount is reported ready (`wait`, `--wait`).
    pub wait: bool,
    /// Prune the cache to this many bytes after building (`cache_max_size=`, `--cache-max-size`).
    pub cache_max_size: Option<u64>,
    /// Record checkpoints inside large zstd frames when indexing (`zstd_checkpoints`,
    /// `--zstd-checkpoints`; experimental: docs/index-format.md).
    pub zstd_checkpoints: bool,
    /// Opaque markers of `overlay/<n>/` directories (`overlay_opaque=both|trusted|user`).
    pub overlay_opaque: crate::fs::OpaqueXattrs,
}

/// Options that mount(8)/fstab pass along and that mean nothing for imgfs.
const IGNORED: &[&str] = &[
    "ro", "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser", "exec", "noexec", "atime",
    "noatime", "relatime", "nodev", "nosuid", "dev", "suid", "async", "sync", "dirsync",
];

impl Options {
    /// Parses a comma-separated `-o` list, adding to `self`.
    pub fn parse_into(&mut self, list: &str) -> Result<(), MountError> {
        for opt in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let bad = |reason: &str| MountError::BadOption {
                option: opt.to_owned(),
                reason: reason.to_owned(),
            };
            match (key, value) {
                ("allow_other", None) => self.allow_other = true,
                ("allow_root", None) => self.allow_root = true,
                ("default_permissions", None) => self.default_permissions = true,
                // mount(8) and mount.fuse3 pass `dev,suid` as their defaults, so those words cannot
                // mean consent: device files and setuid bits need imgfs's own option names.
                ("devices", None) => self.dev = true,
                ("setuid", None) => self.suid = true,
                ("nonempty", None) => self.nonempty = true,
                ("no_cache", None) => self.no_cache = true,
                ("layout_only", None) => self.layout_only = true,
                ("containers_storage", None) => self.containers_storage = true,
                ("wait", None) => self.wait = true,
                ("zstd_checkpoints", None) => self.zstd_checkpoints = true,
                ("published_index", None) => self.registry.published_index = true,
                ("cache_max_size", Some(v)) => {
                    self.cache_max_size =
                        Some(crate::cache::parse_size(v).ok_or_else(|| bad("expected a size such as 500M or 2G"))?)
                }
                ("fsname", Some(v)) => self.fsname = Some(v.to_owned()),
                ("cache_dir", Some(v)) => self.cache_dir = Some(v.into()),
                ("log", Some(v)) => self.log_file = Some(v.into()),
                ("image", None) => self.image = Some(String::new()),
                ("image", Some(v)) => self.image = Some(v.to_owned()),
                ("layer", Some(v)) => self.layer = Some(v.parse().map_err(|_| bad("expected a layer number"))?),
                ("platform", Some(v)) => self.registry.platform = Some(v.to_owned()),
                ("authfile", Some(v)) => self.registry.authfile = Some(v.into()),
                ("creds_file", Some(v)) => self.creds_file = Some(v.into()),
                ("cert_dir", Some(v)) => self.registry.cert_dirs.push(v.into()),
                ("tls_verify", Some(v)) => {
                    self.registry.tls_verify = v.parse().map_err(|_| bad("expected true or false"))?
                }
                ("registry_timeout", Some(v)) => {
                    self.registry.timeout =
                        crate::registry::parse_timeout(v).map_err(|_| bad("expected a positive number of seconds"))?
                }
                ("overlay_opaque", Some(v)) => {
                    use crate::fs::OpaqueXattrs;
                    self.overlay_opaque = match v {
                        "both" => OpaqueXattrs::Both,
                        "trusted" => OpaqueXattrs::Trusted,
                        "user" => OpaqueXattrs::User,
                        _ => return Err(bad("expected both, trusted or user")),
                    }
                }
                ("rw", None) => log::warn!("imgfs mounts are always read-only; ignoring rw"),
                (k, None) if IGNORED.contains(&k) || k.starts_with("x-") => {}
                (k, _) if k.starts_with("x-") || k == "subtype" => {}
                _ => return Err(bad("unknown option")),
            }
        }
        Ok(())
    }

    /// Makes every path option absolute (against the working directory), for a daemon that
    /// leaves it.
    pub fn make_absolute(&mut self) {
        for p in [
            &mut self.cache_dir,
            &mut self.log_file,
            &mut self.registry.authfile,
            &mut self.creds_file,
        ]
        .into_iter()
        .flatten()
        {
            *p = absolute(p);
        }
        for d in &mut self.registry.cert_dirs {
            *d = absolute(d);
        }
    }

    /// The index cache these options ask for (`no_cache`, `cache_dir=`, else the default).
    pub fn cache(&self) -> Cache {
        if self.no_cache {
            Cache::new(None)
        } else {
            Cache::new(self.cache_dir.clone().or_else(Cache::default_dir))
        }
    }

    /// The one image to show (`image`, `layer`), if any; the platform is the registry's.
    pub fn choice(&self) -> Option<Choice> {
        if self.image.is_none() && self.layer.is_none() {
            return None;
        }
        Some(Choice {
            image: self.image.clone().filter(|r| !r.is_empty()),
            layer: self.layer,
            platform: None,
        })
    }

    fn fuser_config(&self, source: &str) -> Config {
        let mut opts = vec![
            MountOption::RO,
            MountOption::FSName(self.fsname.clone().unwrap_or_else(|| source.to_owned())),
            MountOption::Subtype("imgfs".into()),
            if self.dev { MountOption::Dev } else { MountOption::NoDev },
            if self.suid {
                MountOption::Suid
            } else {
                MountOption::NoSuid
            },
        ];
        if self.default_permissions {
            opts.push(MountOption::DefaultPermissions);
        }
        let mut config = Config::default();
        config.mount_options = opts;
        config.acl = if self.allow_other {
            SessionACL::All
        } else if self.allow_root {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(FUSE_THREADS);
        config.clone_fd = true;
        config
    }
}

/// `p` made absolute against the working directory (not resolved: symlinks stay as given).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The name systemd gives the mount unit of an absolute path (`systemd-escape --path`):
/// `/mnt/my img` -> `mnt-my\x20img`. Names per-mount files (log, status).
pub fn unit_name(path: &Path) -> String {
    let text = path.to_string_lossy();
    let trimmed = text.trim_matches('/');
    if trimmed.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for (i, part) in trimmed.split('/').filter(|p| !p.is_empty()).enumerate() {
        if i > 0 {
            out.push('-');
        }
        for (j, b) in part.bytes().enumerate() {
            let plain = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || (b == b'.' && (i, j) != (0, 0));
            if plain {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out
}

/// The source reference with a relative path made absolute (what /proc/self/mounts records
/// and what a daemon that left its working directory opens): `oci1` run in /srv becomes
/// `/srv/oci1`, `oci:img:v1` becomes `oci:/srv/img:v1`. Registry references are unchanged.
pub fn absolute_source(text: &str) -> String {
    use crate::source::{SourceRef, Transport};
    let Ok(parsed) = SourceRef::parse(text) else {
        return text.to_owned();
    };
    if parsed.transport.is_registry() || parsed.path.is_absolute() {
        return text.to_owned();
    }
    let Ok(cwd) = std::env::current_dir() else {
        return text.to_owned();
    };
    // Resolved when it exists, so `../../img` is recorded as the directory it names.
    let abs = cwd.join(&parsed.path);
    let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
    let abs = abs.to_string_lossy();
    let prefix = match parsed.transport {
        Transport::Oci => "oci:",
        Transport::OciArchive => "oci-archive:",
        Transport::DockerArchive => "docker-archive:",
        Transport::Dir => "dir:",
        _ => "",
    };
    match &parsed.selector {
        Some(sel) => format!("{prefix}{abs}:{sel}"),
        None => format!("{prefix}{abs}"),
    }
}

/// Checks that this machine can mount FUSE: /dev/fuse exists, and without root, fusermount3 is
/// on PATH (fuser mounts directly as root and through fusermount3 otherwise).
pub fn check_fuse_available() -> Result<(), MountError> {
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::NoFuse {
            reason: "/dev/fuse does not exist: load the fuse kernel module (modprobe fuse) or, in a container, \
                     pass the device in (--device /dev/fuse)"
                .into(),
        });
    }
    let root = rustix::process::geteuid().is_root();
    let on_path = |name: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if !root && !on_path("fusermount3") {
        return Err(MountError::NoFuse {
            reason: "fusermount3 is not installed (package fuse3); it is needed to mount without root".into(),
        });
    }
    Ok(())
}

/// Checks that `path` is an empty directory that is not a mount point already.
pub fn check_mount_point(path: &Path, nonempty: bool) -> Result<PathBuf, MountError> {
    let bad = |reason: &str| MountError::BadMountPoint {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad("does not exist"),
        std::io::ErrorKind::NotConnected => {
            bad("is a dead FUSE mount (transport endpoint is not connected); run imgfs umount on it")
        }
        _ => bad(&e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(bad("is not a directory"));
    }
    let canonical = path.canonicalize().map_err(|e| bad(&e.to_string()))?;
    if is_mounted(&canonical) {
        return Err(bad("is already a mount point"));
    }
    let mut entries = std::fs::read_dir(&canonical).map_err(|e| bad(&e.to_string()))?;
    if !nonempty && entries.next().is_some() {
        return Err(bad("is not empty (use -o nonempty to mount over it)"));
    }
    Ok(canonical)
}

/// True if `path` (canonical) is a mount point, from /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    mount_at(path).is_some()
}

/// What /proc/self/mountinfo says of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// "major:minor".
    pub device: String,
    /// The filesystem type (`fuse.imgfs` for imgfs mounts).
    pub fstype: String,
    /// The mount source (imgfs records the image reference, paths absolute).
    pub source: String,
}

impl MountEntry {
    /// True for a mount made by imgfs (root mounts included: they carry the subtype too).
    pub fn is_imgfs(&self) -> bool {
        self.fstype == FSTYPE
    }
}

/// The type imgfs mounts show in /proc/self/mounts.
pub const FSTYPE: &str = "fuse.imgfs";

/// The topmost mount at `path` (canonical), from mountinfo: no access to the mount itself, so
/// it cannot hang on a FUSE mount nobody serves.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_string_lossy();
    // Later lines are mounted on top of earlier ones: the last match is the visible mount.
    info.lines().rev().find_map(|l| {
        let (before, after) = l.split_once(" - ")?;
        let f: Vec<&str> = before.split(' ').collect();
        if unescape_mountinfo(f.get(4)?) != want {
            return None;
        }
        let mut a = after.split(' ');
        Some(MountEntry {
            device: f.get(2)?.to_string(),
            fstype: a.next()?.to_owned(),
            source: unescape_mountinfo(a.next().unwrap_or("")),
        })
    })
}

/// Every imgfs mount of this mount namespace, as (mount point, entry).
pub fn imgfs_mounts() -> Vec<(PathBuf, MountEntry)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, MountEntry)> = Vec::new();
    for l in info.lines() {
        let Some((before, after)) = l.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = before.split(' ').collect();
        let mut a = after.split(' ');
        let (Some(dev), Some(mp), Some(fstype)) = (f.get(2), f.get(4), a.next()) else {
            continue;
        };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        // A later mount on the same path hides the earlier one.
        found.retain(|(p, _)| *p != mp);
        found.push((
            mp,
            MountEntry {
                device: dev.to_string(),
                fstype: fstype.to_owned(),
                source: unescape_mountinfo(a.next().unwrap_or("")),
            },
        ));
    }
    found.retain(|(_, e)| e.is_imgfs());
    found
}

/// The device ("major:minor") of the topmost mount at `path` (canonical).
pub fn mounted_device(path: &Path) -> Option<String> {
    mount_at(path).map(|e| e.device)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mounts `fs` on `mountpoint` and serves it until unmounted or signalled. `ready` is called
/// once the kernel has the mount (the background `imgfs mount` returns then).
pub fn serve(
    fs: Fs,
    source: &str,
    mountpoint: &Path,
    options: &Options,
    ready: impl FnOnce(),
) -> Result<(), MountError> {
    let config = options.fuser_config(source);
    let mount_err = |source| MountError::Mount {
        path: mountpoint.to_path_buf(),
        source,
    };
    let imgfs = ImgFs::new(fs, |path, dev| mounted_device(path).as_deref() == Some(dev));
    let record = imgfs.mount_record();
    let root = rustix::process::geteuid().is_root();
    // As root fuser would mount(2) with type "fuse" and drop the subtype (only fusermount3
    // sets it), so root mounts are made here with type "fuse.imgfs": `findmnt -t fuse.imgfs`,
    // `umount -t fuse.imgfs` and `imgfs umount`'s own check then see every imgfs mount.
    let (session, mut unmounter) = if root {
        let fd = mount_direct(mountpoint, options, &config).map_err(mount_err)?;
        let session = Session::from_fd(imgfs, fd, config.acl, config.clone()).map_err(|e| {
            let _ = detach(mountpoint);
            mount_err(e)
        })?;
        (session, Unmounter::Direct(mountpoint.to_path_buf()))
    } else {
        let mut session = Session::new(imgfs, mountpoint, &config).map_err(mount_err)?;
        let u = Unmounter::Fuser(session.unmount_callable());
        (session, u)
    };
    if let Some(dev) = mounted_device(mountpoint) {
        let _ = record.set((mountpoint.to_path_buf(), dev));
    }
    let mut signals = signal_hook::iterator::SignalsInfo::<signal_hook::iterator::exfiltrator::WithOrigin>::new([
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
    ])
    .map_err(mount_err)?;
    let mp = mountpoint.to_path_buf();
    std::thread::Builder::new()
        .name("imgfs-signals".into())
        .spawn(move || {
            let mut signalled = false;
            for origin in signals.forever() {
                let sig = signal_name(origin.signal);
                let from = match &origin.process {
                    Some(p) => format!("from PID {} (uid {})", p.pid, p.uid),
                    None => "from the kernel".to_owned(),
                };
                if signalled {
                    log::warn!(
                        "{sig} {from}: {} is unmounted already; exiting once its open files are closed",
                        mp.display()
                    );
                    continue;
                }
                signalled = true;
                // After `umount -z` and a new mount at the same path, the path is someone else's
                // mount: unmounting it by path would take the new mount down.
                let ours = record.get().map(|(_, dev)| dev.clone());
                if ours.is_some() && mounted_device(&mp) != ours {
                    log::warn!(
                        "{sig} {from}: {} no longer holds this mount; exiting once its open files are closed",
                        mp.display()
                    );
                    continue;
                }
                log::warn!("{sig} {from}: unmounting {}", mp.display());
                let Err(e) = unmounter.unmount() else { continue };
                // Busy (a file or a working directory is open in it): detach the mount now, so
                // no stale mount point is left, and serve the open files until they are closed;
                // the session then ends and the daemon exits.
                let ours = record.get().map(|(_, dev)| dev.clone());
                if ours.is_none() || mounted_device(&mp) != ours {
                    // Never detach what may be another mount made at the same path since.
                    log::warn!(
                        "unmount of {} failed: {e}; not detaching it: it does not hold this mount, or its device \
                         is unknown",
                        mp.display()
                    );
                    continue;
                }
                match detach(&mp) {
                    Ok(()) => log::warn!(
                        "{} was busy ({e}): detached it; exiting once its open files are closed",
                        mp.display()
                    ),
                    Err(e2) => log::error!("unmount of {} failed: {e}; lazy unmount failed too: {e2}", mp.display()),
                }
            }
        })
        .map_err(mount_err)?;
    ready();
    session.run().map_err(mount_err)
}

/// How the signal thread unmounts: through fuser (fusermount3) or, for a mount made here as
/// root, with umount(2).
enum Unmounter {
    Fuser(fuser::SessionUnmounter),
    Direct(PathBuf),
}

impl Unmounter {
    fn unmount(&mut self) -> std::io::Result<()> {
        match self {
            Unmounter::Fuser(u) => u.unmount(),
            Unmounter::Direct(path) => {
                rustix::mount::unmount(path.as_path(), rustix::mount::UnmountFlags::empty()).map_err(Into::into)
            }
        }
    }
}

/// The usual name of a signal imgfs handles.
fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// Mounts /dev/fuse on `mountpoint` with mount(2) as root, type `fuse.imgfs`, with the same
/// options fuser would use. Returns the FUSE device to serve.
fn mount_direct(mountpoint: &Path, options: &Options, config: &Config) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    let dev: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?
        .into();
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    let mut data = format!("fd={},rootmode={mode:o},user_id={uid},group_id={gid}", dev.as_raw_fd());
    if options.default_permissions {
        data.push_str(",default_permissions");
    }
    if config.acl != SessionACL::Owner {
        data.push_str(",allow_other");
    }
    let mut flags = rustix::mount::MountFlags::RDONLY;
    if !options.dev {
        flags |= rustix::mount::MountFlags::NODEV;
    }
    if !options.suid {
        flags |= rustix::mount::MountFlags::NOSUID;
    }
    let fsname = config
        .mount_options
        .iter()
        .find_map(|o| match o {
            MountOption::FSName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "imgfs".into());
    let data = std::ffi::CString::new(data).map_err(std::io::Error::other)?;
    rustix::mount::mount(fsname.as_str(), mountpoint, FSTYPE, flags, data.as_c_str())?;
    Ok(dev)
}

/// Detaches a mount now (`umount -l`): open files keep working until they are closed.
fn detach(path: &Path) -> std::io::Result<()> {
    if rustix::process::geteuid().is_root() {
        return rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH).map_err(std::io::Error::from);
    }
    let out = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Unmounts an imgfs mount point through fusermount3 (umount(8) when it is missing). A busy
/// mount is refused, as umount(8) does, unless `lazy`: then it is detached at once and its
/// daemon exits once the files open in it are closed.
pub fn unmount(path: &Path, lazy: bool) -> Result<(), MountError> {
    let bad = |reason: String| MountError::BadMountPoint {
        path: path.to_path_buf(),
        reason,
    };
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Some(entry) = mount_at(&canonical) else {
        return Err(bad("is not mounted".into()));
    };
    // Only our own mounts: a tmpfs, a bind mount or /proc is never imgfs's to take down.
    if !entry.is_imgfs() {
        return Err(bad(format!(
            "is not an imgfs mount ({} {} is mounted there); nothing unmounted",
            entry.fstype, entry.source
        )));
    }
    let flags: &[&str] = if lazy { &["-u", "-z", "--"] } else { &["-u", "--"] };
    let output = std::process::Command::new("fusermount3")
        .args(flags)
        .arg(&canonical)
        .stdin(std::process::Stdio::null())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(_) => {
            // No fusermount3: as root, umount(8) does the same.
            let mut cmd = std::process::Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&canonical)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| bad(e.to_string()))?
        }
    };
    if output.status.success() {
        return Ok(());
    }
    // One line: the tool's own reason, without its name and the path we already give.
    let text = String::from_utf8_lossy(&output.stderr);
    let reason = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let reason = reason.rsplit(": ").next().unwrap_or(reason).to_owned();
    let busy = reason.to_lowercase().contains("busy");
    Err(bad(if busy {
        format!(
            "cannot unmount: {reason} (a file or working directory is open in it; `imgfs umount --lazy` \
             detaches it now and the daemon exits once those are closed)"
        )
    } else if reason.is_empty() {
        format!("cannot unmount ({})", output.status)
    } else {
        format!("cannot unmount: {reason}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_table() {
        let mut o = Options::default();
        o.parse_into("ro,allow_other,nofail,cache_dir=/tmp/c,x-systemd.automount,dev,suid")
            .unwrap();
        assert!(o.allow_other);
        assert!(
            !o.dev && !o.suid,
            "mount(8)'s dev,suid defaults must not turn off nodev,nosuid"
        );
        o.parse_into("devices,setuid,layout_only,containers_storage,zstd_checkpoints,published_index")
            .unwrap();
        assert!(o.dev && o.suid && o.layout_only && o.containers_storage && o.zstd_checkpoints);
        assert!(o.registry.published_index);
        assert_eq!(o.overlay_opaque, crate::fs::OpaqueXattrs::Both);
        o.parse_into("overlay_opaque=user").unwrap();
        assert_eq!(o.overlay_opaque, crate::fs::OpaqueXattrs::User);
        assert!(o.parse_into("overlay_opaque=yes").is_err());
        assert_eq!(o.cache_dir.as_deref(), Some(Path::new("/tmp/c")));
        assert!(Options::default().parse_into("bogus").is_err());
        // The registry and one-image options, which have flags too.
        let mut o = Options::default();
        o.parse_into("image,layer=2,platform=linux/arm64,cert_dir=/a,cert_dir=/b,tls_verify=false")
            .unwrap();
        o.parse_into("registry_timeout=2.5,creds_file=/c,authfile=/d,image=app:1")
            .unwrap();
        assert_eq!((o.image.as_deref(), o.layer), (Some("app:1"), Some(2)));
        assert_eq!(o.registry.platform.as_deref(), Some("linux/arm64"));
        assert_eq!(o.registry.cert_dirs, [Path::new("/a"), Path::new("/b")]);
        assert!(!o.registry.tls_verify);
        assert_eq!(o.registry.timeout, std::time::Duration::from_millis(2500));
        assert_eq!(o.creds_file.as_deref(), Some(Path::new("/c")));
        assert_eq!(o.registry.authfile.as_deref(), Some(Path::new("/d")));
        o.parse_into("wait,cache_max_size=1.5G").unwrap();
        assert!(o.wait);
        assert_eq!(o.cache_max_size, Some(3 << 29));
        for bad in [
            "cache_max_size=lots",
            "layer=x",
            "tls_verify=yes",
            "registry_timeout=0",
            "registry_timeout=nan",
            "creds=u:p",
        ] {
            assert!(Options::default().parse_into(bad).is_err(), "{bad}");
        }
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unit_name(Path::new("/mnt/my img/a-b")), "mnt-my\\x20img-a\\x2db");
        assert_eq!(unit_name(Path::new("/")), "-");
        assert_eq!(unit_name(Path::new("/srv/.hidden")), "srv-.hidden");
        assert_eq!(unit_name(Path::new("/.a")), "\\x2ea");
    }
}
