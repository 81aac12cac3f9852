//! The status file of a mount daemon, which `imgfs status` reads: source, PID, start time, log
//! file, images, and each layer's progress (`progress.rs`). A file the daemon rewrites once a
//! second (atomically) rather than a socket: nothing to serve, readable with `cat`, and the
//! mounted tree stays a clean OCI layout. It lives in the runtime directory: `/run/imgfs` for
//! root, `$XDG_RUNTIME_DIR/imgfs` otherwise, named like the mount's systemd unit.

use crate::progress::{LayerReport, Progress};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// Starts the thread that keeps `path` up to date for the life of the process. Failures to
/// write are logged once.
pub fn spawn_writer(path: PathBuf, base: MountStatus, progress: Arc<Progress>) {
    let spawned = std::thread::Builder::new().name("imgfs-status".into()).spawn(move || {
        let mut logged = false;
        let mut last = Vec::new();
        loop {
            let mut status = base.clone();
            status.layers = progress.report();
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

/// Removes the status file of `mount_point` (the daemon is exiting).
pub fn remove(mount_point: &Path) {
    if let Some(f) = file_for(mount_point) {
        let _ = std::fs::remove_file(f);
    }
}
