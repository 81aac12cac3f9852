//! The status file of a mount daemon, which `imgfs status` reads: source, PID, start time, log
//! file, images, and each layer's progress (`progress.rs`). A file the daemon rewrites once a
//! second (atomically) rather than a socket: nothing to serve, readable with `cat`, and the
//! mounted tree stays a clean OCI layout. It lives in the runtime directory: `/run/imgfs` for
//! root, `$XDG_RUNTIME_DIR/imgfs` otherwise, named like the mount's systemd unit.

use crate::cache::CacheUse;
use crate::progress::LayerReport;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the daemon rewrites its status file.
pub const EVERY: Duration = Duration::from_secs(1);

/// What `imgfs status` shows of one mount.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MountStatus {
    /// The mount point.
    pub mount_point: PathBuf,
    /// The source reference (paths absolute).
    pub source: String,
    /// The daemon's PID.
    pub pid: u32,
    /// When the daemon started, in seconds since the Unix epoch.
    pub started: u64,
    /// The daemon's log file (none: stderr, e.g. `-f` under systemd).
    pub log: Option<PathBuf>,
    /// The image names under `images/`.
    pub images: Vec<String>,
    /// Every layer of the source.
    pub layers: Vec<LayerReport>,
    /// The cache directory (none: `--no-cache`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The files of the cache directory this mount uses or will use: `imgfs cache prune`
    /// never removes them while the daemon runs.
    #[serde(default)]
    pub cache_files: Vec<CacheUse>,
}

/// `imgfs status MNT` names a path that is not an imgfs mount.
#[derive(Debug, thiserror::Error)]
#[error("{}: not an imgfs mount", .0.display())]
pub struct NotAMount(pub PathBuf);

/// What `imgfs status` shows: every imgfs mount (or the one at `only`), each as its daemon last
/// wrote it, or with only its source when no status file can be read.
pub fn of_mounts(only: Option<&Path>) -> Result<Vec<MountStatus>, NotAMount> {
    let mut mounts = crate::mount::imgfs_mounts();
    if let Some(mp) = only {
        let mp = mp.canonicalize().unwrap_or_else(|_| crate::mount::absolute(mp));
        mounts.retain(|(p, _)| *p == mp);
        if mounts.is_empty() {
            return Err(NotAMount(mp));
        }
    }
    Ok(mounts
        .into_iter()
        .map(|(mp, entry)| {
            read(&mp).unwrap_or(MountStatus {
                mount_point: mp,
                source: entry.source,
                pid: 0,
                started: 0,
                log: None,
                images: Vec::new(),
                layers: Vec::new(),
                cache_dir: None,
                cache_files: Vec::new(),
            })
        })
        .collect())
}

/// `imgfs status` as text: per mount, its daemon, images and each layer's state (`now`: the
/// time the uptimes and error ages are counted to).
pub fn write_text(out: &mut impl Write, mounts: &[MountStatus], now: u64) -> std::io::Result<()> {
    for m in mounts {
        writeln!(out, "{}: {}", m.mount_point.display(), m.source)?;
        if m.pid == 0 {
            writeln!(
                out,
                "  daemon: unknown (no status file: another user's mount, or an older imgfs)"
            )?;
            continue;
        }
        let up = now.saturating_sub(m.started);
        writeln!(
            out,
            "  daemon PID {}, up {}h{:02}m{:02}s, log {}",
            m.pid,
            up / 3600,
            up / 60 % 60,
            up % 60,
            m.log.as_ref().map_or("stderr".into(), |l| l.display().to_string())
        )?;
        writeln!(out, "  images: {}", m.images.join(", "))?;
        for l in &m.layers {
            let mib = |b: u64| b as f64 / 1048576.0;
            write!(
                out,
                "  layer {}: {} {:.1}/{:.1} MiB",
                l.digest,
                l.state.text(),
                mib(l.done),
                mib(l.total)
            )?;
            if let Some(e) = &l.error {
                let kind = if e.transient {
                    "retried on next access"
                } else {
                    "permanent"
                };
                write!(
                    out,
                    "; last error ({kind}, {}s ago): {}",
                    now.saturating_sub(e.at),
                    e.message
                )?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

/// The runtime directory for status files.
pub fn dir() -> Option<PathBuf> {
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/run/imgfs"));
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join("imgfs"))
}

/// The status file of the mount at `mount_point` (absolute).
pub fn file_for(mount_point: &Path) -> Option<PathBuf> {
    Some(dir()?.join(format!("{}.json", crate::mount::unit_name(mount_point))))
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts the thread that keeps `path` up to date for the life of the process: `base` with
/// what `refresh` fills in (layers, cache files) each time. Failures to write are logged once.
pub fn spawn_writer(path: PathBuf, base: MountStatus, refresh: impl Fn(&mut MountStatus) + Send + 'static) {
    let spawned = std::thread::Builder::new().name("imgfs-status".into()).spawn(move || {
        let mut logged = false;
        let mut last = Vec::new();
        loop {
            let mut status = base.clone();
            refresh(&mut status);
            if let Ok(text) = serde_json::to_vec_pretty(&status) {
                if text != last {
                    match write(&path, &text) {
                        Ok(()) => last = text,
                        Err(e) if !logged => {
                            logged = true;
                            log::warn!(
                                "cannot write status file {}: {e}; imgfs status will not see this mount",
                                path.display()
                            );
                        }
                        Err(_) => {}
                    }
                }
            }
            std::thread::sleep(EVERY);
        }
    });
    if let Err(e) = spawned {
        log::warn!("no status thread ({e}); imgfs status will not see this mount");
    }
}

/// Writes the status file `path` once, now (the writer thread then keeps it up to date).
pub fn write_now(path: &Path, status: &MountStatus) -> std::io::Result<()> {
    write(path, &serde_json::to_vec_pretty(status).map_err(std::io::Error::from)?)
}

fn write(path: &Path, text: &[u8]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The status a daemon wrote for `mount_point`, if that daemon still runs.
pub fn read(mount_point: &Path) -> Option<MountStatus> {
    let text = std::fs::read(file_for(mount_point)?).ok()?;
    let status: MountStatus = serde_json::from_slice(&text).ok()?;
    Path::new(&format!("/proc/{}", status.pid)).exists().then_some(status)
}

/// The status of every live daemon whose file this user can read: the runtime directory's,
/// and for root also every user's (`/run/user/*/imgfs`). Files of daemons that no longer run
/// (killed with SIGKILL) are removed on the way, where allowed.
pub fn all_live() -> Vec<MountStatus> {
    let mut dirs: Vec<PathBuf> = dir().into_iter().collect();
    if rustix::process::geteuid().is_root() {
        if let Ok(users) = std::fs::read_dir("/run/user") {
            dirs.extend(users.flatten().map(|u| u.path().join("imgfs")));
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        let Ok(files) = std::fs::read_dir(&d) else { continue };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(status) = std::fs::read(&path)
                .ok()
                .and_then(|t| serde_json::from_slice::<MountStatus>(&t).ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{}", status.pid)).exists() {
                out.push(status);
            } else {
                log::info!(
                    "removing the status file {} of daemon PID {}, which no longer runs",
                    path.display(),
                    status.pid
                );
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out
}

/// Removes the status file of `mount_point` (the daemon is exiting).
pub fn remove(mount_point: &Path) {
    if let Some(f) = file_for(mount_point) {
        let _ = std::fs::remove_file(f);
    }
}
