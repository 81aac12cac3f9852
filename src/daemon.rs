//! The process that serves a mount. `imgfs mount` without `-f` starts this program again in the
//! foreground with a readiness pipe on its stdout, and returns once the daemon says "ok" (or
//! passes on its one error line); the daemon opens the source, mounts, keeps its status file and
//! log, and serves until unmounted. Credentials given with `--creds` never stay in a long-lived
//! process's command line: they travel to the daemon (or to a `-f` process started again) on a
//! pipe.

use crate::fs::Fs;
use crate::mount::{self, MountError, Options};
use crate::source::SourceError;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// Set in the environment of the background daemon: its stdout is the readiness pipe.
const NOTIFY_ENV: &str = "IMGFS_NOTIFY_STDOUT";
/// Set for a process whose stdin carries the `--creds` its command line no longer has.
const CREDS_STDIN_ENV: &str = "IMGFS_CREDS_STDIN";

/// Why a mount could not be made or served. One line each.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The mount point, an option, FUSE or the kernel refused.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The source cannot be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// `--layout-only` with `--image`.
    #[error("--layout-only shows the OCI layout and --image one image's rootfs: give one of them")]
    LayoutOnlyAndImage,
    /// `--containers-storage` with `--image`.
    #[error("--containers-storage shows every image of the source and --image one image's rootfs: give one of them")]
    StoreAndImage,
    /// A file, pipe or process of our own (`what` says which).
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The daemon's own error line.
    #[error("{0}")]
    Daemon(String),
    /// The daemon ended without a word.
    #[error("mount daemon for {} exited before the mount was ready ({status})", mountpoint.display())]
    Exited {
        mountpoint: PathBuf,
        status: std::process::ExitStatus,
    },
    /// `--creds` was given but is not in the arguments handed over.
    #[error("--creds: cannot find it on the command line")]
    NoCreds,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Whether this process is a background mount daemon (its stdout is the readiness pipe).
pub fn is_daemon() -> bool {
    std::env::var_os(NOTIFY_ENV).is_some()
}

/// Writes the one readiness line (`ok`, or `error: ...`) to the waiting parent.
pub fn notify_parent(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The `USER:PASSWORD` line a parent passed on stdin in place of `--creds`, when it did.
pub fn creds_from_parent() -> Option<std::io::Result<String>> {
    std::env::var_os(CREDS_STDIN_ENV)?;
    let mut line = String::new();
    Some(
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map(|_| line.trim_end_matches(['\n', '\r']).to_owned()),
    )
}

/// Mounts `source` on `mountpoint`: in this process with `foreground` (or when this is the
/// daemon), else in a daemon started with `args` (this program's arguments, as `imgfs mount
/// ...`). `opts` holds the credentials already read.
pub fn mount(
    source: &str,
    mountpoint: &Path,
    mut opts: Options,
    foreground: bool,
    args: &[String],
) -> Result<(), DaemonError> {
    // Absolute paths everywhere: /proc/self/mounts records the source as given to the kernel,
    // and the daemon leaves its working directory (below).
    let source = mount::absolute_source(source);
    let mountpoint = mount::absolute(mountpoint);
    opts.make_absolute();
    if is_daemon() {
        // The daemon must not keep the caller's working directory busy (`umount` of the
        // filesystem it was started from would fail with "target is busy").
        std::env::set_current_dir("/").map_err(io("cannot change to /"))?;
    }
    if foreground && strip_creds(args.to_vec()).1.is_some() {
        // Serving for hours with the password in /proc/PID/cmdline: start again (same PID)
        // without it, the password on a pipe.
        return Err(reexec_without_creds(args));
    }
    if foreground || is_daemon() {
        serve(&source, &mountpoint, &opts)
    } else {
        start_daemon(&mountpoint, &opts, args)
    }
}

/// Opens the source, mounts it and serves until it is unmounted.
fn serve(source: &str, mountpoint: &Path, opts: &Options) -> Result<(), DaemonError> {
    mount::check_fuse_available()?;
    let mountpoint = mount::check_mount_point(mountpoint, opts.nonempty)?;
    let cache = opts.cache();
    let shown = crate::tree::Shown {
        layout_only: opts.layout_only,
        containers_storage: opts.containers_storage,
    };
    let tree = match (shown != crate::tree::Shown::default(), opts.choice()) {
        (true, Some(_)) if opts.layout_only => return Err(DaemonError::LayoutOnlyAndImage),
        (true, Some(_)) => return Err(DaemonError::StoreAndImage),
        (true, None) => crate::open_tree_shown(source, &cache, &opts.registry, shown)?,
        (false, choice) => crate::open_tree_choosing(source, &cache, &opts.registry, choice.as_ref())?,
    };
    let cache_dir = cache.dir().map(Path::to_path_buf);
    let wait = opts.wait;
    let fs = Fs::new(tree, cache)
        .with_overlay_opaque(opts.overlay_opaque)
        .with_zstd_checkpoints(opts.zstd_checkpoints)
        .with_published_index(opts.registry.published_index);
    fs.warm_up();
    let daemon = is_daemon();
    let base = crate::status::MountStatus {
        mount_point: mountpoint.clone(),
        source: source.to_owned(),
        pid: std::process::id(),
        started: crate::status::now(),
        log: opts
            .log_file
            .clone()
            .or_else(|| daemon.then(|| default_log_file(&mountpoint)).flatten()),
        images: fs.tree().image_set().refs.iter().map(|(n, _)| n.clone()).collect(),
        layers: Vec::new(),
        cache_dir: cache_dir.clone(),
        cache_files: Vec::new(),
    };
    let progress = fs.progress();
    let views = fs.views().clone();
    let status_file = crate::status::file_for(&mountpoint);
    let wait_failed: Arc<Mutex<Option<String>>> = Arc::default();
    let failed = wait_failed.clone();
    let cap = opts.cache_max_size.map(|max| (max, cache_dir.clone()));
    let refresh = {
        let (progress, views) = (progress.clone(), views.clone());
        Arc::new(move |s: &mut crate::status::MountStatus| {
            s.layers = progress.report();
            s.cache_files = views.cache_files();
        })
    };
    // The status file as of now (the writer thread rewrites it once a second): `--wait`
    // answers only once `imgfs status` shows what it built.
    let publish: Box<dyn Fn() + Send> = match &status_file {
        Some(f) => {
            let (f, base, refresh) = (f.clone(), base.clone(), refresh.clone());
            Box::new(move || {
                let mut s = base.clone();
                refresh(&mut s);
                if let Err(e) = crate::status::write_now(&f, &s) {
                    log::warn!("cannot write status file {}: {e}", f.display());
                }
            })
        }
        None => Box::new(|| {}),
    };
    let served = mount::serve(fs, source, &mountpoint, opts, || {
        log::info!("mounted {source} on {}", mountpoint.display());
        if let Some(f) = status_file {
            crate::status::spawn_writer(f, base, move |s| refresh(s));
        }
        if let Some((max, Some(dir))) = cap {
            let v = views.clone();
            crate::cache_admin::spawn_size_cap(dir, max, progress.clone(), move || v.cache_files());
        }
        if wait {
            spawn_wait(views, progress, daemon, failed, publish);
        } else if daemon {
            notify_parent("ok");
        }
    });
    crate::status::remove(&mountpoint);
    served?;
    let failure = wait_failed.lock().unwrap_or_else(|p| p.into_inner()).take();
    match failure {
        Some(e) => Err(DaemonError::Daemon(e)),
        None => Ok(()),
    }
}

/// `--wait`: builds every view on a thread of its own while the mount serves (accesses meanwhile
/// wait for the same builds), then tells the parent (daemon) or the terminal (`-f`) what it
/// built and how long it took. Progress goes to the parent as `progress <JSON>` lines (it draws
/// them on its terminal), or straight to the terminal with `-f`. A view that cannot be built
/// fails the mount: its error is the answer, and the mount is taken down (SIGTERM to ourselves,
/// the same clean unmount as `kill`).
fn spawn_wait(
    views: Arc<crate::view::Views>,
    progress: Arc<crate::progress::Progress>,
    daemon: bool,
    failed: Arc<Mutex<Option<String>>>,
    publish: Box<dyn Fn() + Send>,
) {
    let work = move || {
        let started = std::time::Instant::now();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reporter = daemon.then(|| {
            let (p, done) = (progress.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(json) = serde_json::to_string(&p.report()) {
                        notify_parent(&format!("{PROGRESS_PREFIX}{json}"));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })
        });
        let bars = (!daemon)
            .then(|| crate::progress::bars::Follower::on_terminal(vec![crate::progress::bars::of(progress.clone())]))
            .flatten();
        let result = views.build_all();
        drop(bars);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = reporter {
            let _ = r.join();
        }
        publish();
        match result {
            Ok(summary) => {
                let line = format!("built {summary} in {:.1} s", started.elapsed().as_secs_f64());
                log::info!("--wait: {line}");
                if daemon {
                    notify_parent(&format!("ok {line}"));
                } else if std::io::stderr().is_terminal() {
                    eprintln!("imgfs: {line}");
                }
            }
            Err((what, e)) => {
                let line = format!("--wait: {what}: {e}; unmounting");
                log::error!("{line}");
                if daemon {
                    notify_parent(&format!("error: {line}"));
                }
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(line);
                let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new().name("imgfs-wait".into()).spawn(work) {
        log::error!("--wait: cannot start a thread ({e}); views build on first access");
        if daemon {
            notify_parent("ok");
        }
    }
}

/// Lines the daemon sends its parent while `--wait` builds: `progress ` and the layer reports
/// as JSON.
const PROGRESS_PREFIX: &str = "progress ";

/// Starts the daemon (this program again, in the foreground with a readiness pipe on its
/// stdout) and returns once it reports the mount ready or fails.
fn start_daemon(mountpoint: &Path, opts: &Options, args: &[String]) -> Result<(), DaemonError> {
    // The checks that need no image run here too, so their errors come before any daemon.
    mount::check_fuse_available()?;
    mount::check_mount_point(mountpoint, opts.nonempty)?;
    let exe = std::env::current_exe().map_err(io("cannot find the imgfs executable"))?;
    let stderr = match &opts.log_file {
        Some(f) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .map_err(io(format!("cannot open log file {}", f.display())))?,
        ),
        None => match default_log_file(mountpoint).map(|f| open_default_log(&f)) {
            Some(Ok(file)) => Stdio::from(file),
            Some(Err(e)) => {
                let cause = std::error::Error::source(&e).map_or(String::new(), |c| format!(": {c}"));
                eprintln!("imgfs: warning: {e}{cause}; the mount daemon logs nowhere (use --log-file)");
                Stdio::null()
            }
            None => Stdio::null(),
        },
    };
    // Same arguments but --creds (sent on stdin); the environment variable makes the child
    // serve in the foreground.
    let (args, creds) = strip_creds(args.to_vec());
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args.get(1..).unwrap_or_default())
        .env(NOTIFY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0);
    if creds.is_some() {
        cmd.env(CREDS_STDIN_ENV, "1").stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(io("cannot start the mount daemon"))?;
    if let (Some(c), Some(mut stdin)) = (creds, child.stdin.take()) {
        writeln!(stdin, "{c}").map_err(io("cannot pass the credentials to the mount daemon"))?;
    }
    // `progress` lines (with --wait) until the answer: `ok [what --wait built]` or `error: ...`.
    let reports: Arc<Mutex<Vec<crate::progress::LayerReport>>> = Arc::default();
    let bars = opts.wait.then(|| {
        let r = reports.clone();
        crate::progress::bars::Follower::on_terminal(vec![Box::new(move || {
            r.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })])
    });
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let mut out = std::io::BufReader::new(out);
        loop {
            line.clear();
            out.read_line(&mut line)
                .map_err(io("cannot read the mount daemon's answer"))?;
            match line.strip_prefix(PROGRESS_PREFIX) {
                Some(json) => {
                    if let Ok(r) = serde_json::from_str(json) {
                        *reports.lock().unwrap_or_else(|p| p.into_inner()) = r;
                    }
                }
                None => break,
            }
        }
    }
    drop(bars);
    match line.trim_end() {
        "ok" => Ok(()),
        l if l.starts_with("ok ") => {
            if std::io::stderr().is_terminal() {
                eprintln!("imgfs: {}: {}", mountpoint.display(), &l["ok ".len()..]);
            }
            Ok(())
        }
        l if l.starts_with("error: ") => Err(DaemonError::Daemon(l["error: ".len()..].to_owned())),
        _ => Err(DaemonError::Exited {
            mountpoint: mountpoint.to_path_buf(),
            status: child.wait().map_err(io("cannot wait for the mount daemon"))?,
        }),
    }
}

/// Where a background mount logs without `--log-file`: one file per mount point, named like
/// its systemd mount unit (`/mnt/img` -> `mnt-img.log`), in /var/log/imgfs for root and in
/// `$XDG_STATE_HOME/imgfs` (default `~/.local/state/imgfs`) for other users. A file, not
/// syslog: it works without a syslog daemon (containers, CI) and `imgfs status` can name it.
pub fn default_log_file(mountpoint: &Path) -> Option<PathBuf> {
    let dir = if rustix::process::geteuid().is_root() {
        PathBuf::from("/var/log/imgfs")
    } else {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        env("XDG_STATE_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".local/state")))?
            .join("imgfs")
    };
    Some(dir.join(format!("{}.log", mount::unit_name(mountpoint))))
}

/// Opens (creating its directory) the default log file of a background mount.
fn open_default_log(f: &Path) -> Result<std::fs::File, DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = f.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(io(format!("cannot create log directory {}", dir.display())))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(f)
        .map_err(io(format!("cannot open log file {}", f.display())))
}

/// The arguments without `--creds VALUE` / `--creds=VALUE`, and that value.
fn strip_creds(args: Vec<String>) -> (Vec<String>, Option<String>) {
    let mut out = Vec::with_capacity(args.len());
    let mut creds = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--" {
            out.push(a);
            out.extend(it.by_ref());
            break;
        }
        if a == "--creds" {
            creds = it.next();
        } else if let Some(v) = a.strip_prefix("--creds=") {
            creds = Some(v.to_owned());
        } else {
            out.push(a);
        }
    }
    (out, creds)
}

/// Replaces this process (same PID, so `-f` under systemd is unaffected) by imgfs run with
/// `args` less `--creds`, whose value it reads from a pipe on stdin. Returns only on failure.
fn reexec_without_creds(args: &[String]) -> DaemonError {
    let (args, creds) = strip_creds(args.to_vec());
    let Some(creds) = creds else {
        return DaemonError::NoCreds;
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return io("cannot find the imgfs executable")(e),
    };
    let (read, write) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(fds) => fds,
        Err(e) => return io("cannot make a pipe")(e.into()),
    };
    // One short line fits in the pipe's buffer: no reader is needed yet.
    let mut w = std::fs::File::from(write);
    if let Err(e) = writeln!(w, "{creds}") {
        return io("cannot pass the credentials on")(e);
    }
    drop(w);
    let e = std::process::Command::new(exe)
        .args(args.get(1..).unwrap_or_default())
        .env(CREDS_STDIN_ENV, "1")
        .stdin(Stdio::from(read))
        .exec();
    io("cannot start imgfs again without --creds on its command line")(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_leave_the_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            strip_creds(args(&["imgfs", "mount", "--creds", "u:p", "s", "m"])),
            (args(&["imgfs", "mount", "s", "m"]), Some("u:p".into()))
        );
        assert_eq!(
            strip_creds(args(&["imgfs", "mount", "--creds=u:p:q", "s", "--", "--creds"])),
            (args(&["imgfs", "mount", "s", "--", "--creds"]), Some("u:p:q".into()))
        );
    }
}
