//! The `imgfs` command line: argument parsing, wiring and exit codes. All work is in the library.

use anyhow::{anyhow, Context};
use clap::{CommandFactory, Parser, Subcommand};
use imgfs::cache::Cache;
use imgfs::fs::{Fs, Kind};
use imgfs::mount::{self, Options};
use imgfs::show::{inspect, ls, walk};
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

/// Set in the environment of the background daemon: its stdout is the readiness pipe.
const NOTIFY_ENV: &str = "IMGFS_NOTIFY_STDOUT";
/// Set for a mount daemon whose stdin carries the `--creds` its command line no longer has.
const CREDS_STDIN_ENV: &str = "IMGFS_CREDS_STDIN";
/// Registry credentials from the environment (USER:PASSWORD).
const CREDS_ENV: &str = "IMGFS_CREDS";

#[derive(Parser)]
#[command(name = "imgfs", version, about = "Mount a container image read-only with FUSE")]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct CacheArgs {
    /// Where indexes are cached (default $XDG_CACHE_HOME/imgfs).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the index cache.
    #[arg(long)]
    no_cache: bool,
}

/// How to reach registries (`docker://` and bare `HOST/REPO` references); docs/registry.md.
#[derive(clap::Args, Clone)]
struct RegistryArgs {
    /// Platform to pick from a multi-platform index (default: this host's): for registry images, and for local sources with --image.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Registry credentials (default: --creds-file, $IMGFS_CREDS, auth files, then docker's config
    /// and credential helpers). A mount daemon does not keep them in its command line.
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// Read USER:PASSWORD from the first line of FILE (not visible in process lists).
    #[arg(long, value_name = "FILE")]
    creds_file: Option<PathBuf>,
    /// Read registry credentials from this file only (auth.json / config.json format).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Verify the registry's TLS certificate; false also allows plain HTTP.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    tls_verify: bool,
    /// Also trust the CA certificates (*.crt) in DIR for the registry (repeatable).
    #[arg(long, value_name = "DIR")]
    cert_dir: Vec<PathBuf>,
    /// Seconds a registry may stay silent before an operation fails (reads then fail with EIO).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    registry_timeout: f64,
}

impl RegistryArgs {
    fn options(&self) -> anyhow::Result<imgfs::registry::RegistryOptions> {
        let creds = self.credentials()?;
        if !(self.registry_timeout.is_finite() && self.registry_timeout > 0.0) {
            return Err(anyhow!("--registry-timeout must be a positive number of seconds"));
        }
        Ok(imgfs::registry::RegistryOptions {
            platform: self.platform.clone(),
            creds,
            authfile: self.authfile.clone(),
            tls_verify: self.tls_verify,
            cert_dirs: self.cert_dir.clone(),
            timeout: std::time::Duration::from_secs_f64(self.registry_timeout),
        })
    }

    /// Credentials given to imgfs itself, first found: `--creds`, the pipe of a daemon started
    /// with them (see [`hide_creds`]), `--creds-file`, `$IMGFS_CREDS`.
    fn credentials(&self) -> anyhow::Result<Option<imgfs::registry::auth::Credentials>> {
        use imgfs::registry::auth::Credentials;
        if let Some(c) = &self.creds {
            return Ok(Some(Credentials::parse(c)?));
        }
        if std::env::var_os(CREDS_STDIN_ENV).is_some() {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the credentials from the parent imgfs")?;
            return Ok(Some(Credentials::parse(line.trim_end_matches(['\n', '\r']))?));
        }
        if let Some(f) = &self.creds_file {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("--creds-file {}: cannot read it", f.display()))?;
            let line = text.lines().next().unwrap_or("");
            return Credentials::parse(line)
                .map(Some)
                .map_err(|_| anyhow!("--creds-file {}: the first line must be USER:PASSWORD", f.display()));
        }
        if let Ok(c) = std::env::var(CREDS_ENV) {
            return Credentials::parse(&c)
                .map(Some)
                .map_err(|_| anyhow!("${CREDS_ENV} must be USER:PASSWORD"));
        }
        Ok(None)
    }

    /// Takes the registry options out of a `-o` list (mount helper style) and returns the rest.
    fn take_mount_options(&mut self, list: &str) -> anyhow::Result<String> {
        let mut rest = Vec::new();
        for opt in list.split(',') {
            match opt.trim().split_once('=') {
                Some(("platform", v)) => self.platform = Some(v.to_owned()),
                Some(("authfile", v)) => self.authfile = Some(v.into()),
                Some(("creds_file", v)) => self.creds_file = Some(v.into()),
                Some(("cert_dir", v)) => self.cert_dir.push(v.into()),
                Some(("tls_verify", v)) => {
                    self.tls_verify = v
                        .parse()
                        .map_err(|_| anyhow!("-o tls_verify={v}: expected true or false"))?
                }
                Some(("registry_timeout", v)) => {
                    self.registry_timeout = v
                        .parse()
                        .map_err(|_| anyhow!("-o registry_timeout={v}: expected seconds"))?
                }
                _ => rest.push(opt),
            }
        }
        Ok(rest.join(","))
    }
}

/// One image instead of the whole source, like `podman image mount`; docs/cli.md.
#[derive(clap::Args, Clone, Default)]
struct ImageArgs {
    /// Show only this image's merged rootfs at the top: REF as docker or skopeo spell it
    /// (busybox, myorg/app:2, docker.io/..., NAME@sha256:...); no REF: the source's only image.
    #[arg(long, value_name = "REF", num_args = 0..=1, default_missing_value = "")]
    image: Option<String>,
    /// One layer of the image as stored (0 = the bottom one) instead of its merged rootfs (implies --image).
    #[arg(long, value_name = "N")]
    layer: Option<usize>,
}

impl ImageArgs {
    fn choice(&self) -> Option<imgfs::one_image::Choice> {
        if self.image.is_none() && self.layer.is_none() {
            return None;
        }
        Some(imgfs::one_image::Choice {
            image: self.image.clone().filter(|r| !r.is_empty()),
            layer: self.layer,
            platform: None,
        })
    }

    /// Takes `image[=REF]` and `layer=N` out of a `-o` list (fstab) and returns the rest.
    fn take_mount_options(&mut self, list: &str) -> anyhow::Result<String> {
        let mut rest = Vec::new();
        for opt in list.split(',') {
            match opt.trim().split_once('=') {
                None if opt.trim() == "image" => self.image = Some(String::new()),
                Some(("image", v)) => self.image = Some(v.to_owned()),
                Some(("layer", v)) => {
                    self.layer = Some(
                        v.parse()
                            .map_err(|_| anyhow!("-o layer={v}: expected a layer number"))?,
                    )
                }
                _ => rest.push(opt),
            }
        }
        Ok(rest.join(","))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Mount SOURCE (OCI layout, oci-archive, docker save tar, dir:, maybe gzip'd) on MOUNTPOINT.
    Mount {
        /// Image reference: a path, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG|@N], dir:DIR,
        /// docker://[HOST/]REPO[:TAG][@DIGEST], or HOST/REPO[:TAG][@DIGEST] when no such path exists.
        source: String,
        /// An empty directory.
        mountpoint: PathBuf,
        /// Stay in the foreground (for debugging and systemd).
        #[arg(short, long)]
        foreground: bool,
        /// Mount options: allow_other, allow_root, default_permissions, nonempty, devices, setuid, fsname=, cache_dir=, no_cache, log=FILE, layout_only;
        /// image[=REF], layer=N (as --image, --layer); platform=, and for registries authfile=, creds_file=, cert_dir=, tls_verify=, registry_timeout=.
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
        #[command(flatten)]
        image: ImageArgs,
        /// Log file of the background daemon.
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
        /// Show only the OCI layout (index.json, blobs/, manifest.json), no images/ views:
        /// for tools that open every path, such as `oci-image-tool validate` (-o layout_only).
        #[arg(long)]
        layout_only: bool,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Unmount an imgfs mount.
    Umount {
        /// The mount point.
        mountpoint: PathBuf,
        /// Detach a busy mount now; its daemon exits once the files open in it are closed.
        #[arg(short = 'z', long)]
        lazy: bool,
    },
    /// Show imgfs mounts (all, or the one at MOUNTPOINT): source, daemon, uptime, images, and
    /// each layer's state, bytes done and last error.
    Status {
        /// One mount point (default: every imgfs mount).
        mountpoint: Option<PathBuf>,
        /// Print JSON (an array of mounts).
        #[arg(long)]
        json: bool,
    },
    /// Print a JSON summary of SOURCE: format, refs, platforms, manifests, layers.
    Inspect {
        /// Image reference.
        source: String,
        /// Show only this image (any spelling docker or skopeo accept; with --platform, that platform's manifest).
        #[arg(long, value_name = "REF", num_args = 0..=1, default_missing_value = "")]
        image: Option<String>,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List a directory of the tree a mount of SOURCE shows, without mounting.
    Ls {
        /// Image reference.
        source: String,
        /// Path inside the mount (default: the top).
        #[arg(default_value = "")]
        path: String,
        /// List recursively, one path per line.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Long listing, like `ls -ln`: mode, links, owner, group, size, UTC time, name, `-> target`.
        #[arg(short = 'l')]
        long: bool,
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Write a file of the tree a mount of SOURCE shows to stdout, without mounting.
    Cat {
        /// Image reference.
        source: String,
        /// Path inside the mount.
        path: String,
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Print the man page imgfs(1) (roff; `imgfs man | man -l -`).
    Man,
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let args = mount_helper_args(std::env::args().collect());
    let cli = Cli::parse_from(args);
    // In the foreground on a terminal, show progress (info) without -v.
    let foreground_tty =
        matches!(cli.command, Command::Mount { foreground: true, .. }) && std::io::stderr().is_terminal();
    // A mount's log lines name its mount point: several mounts may share syslog or a terminal.
    let mount_point = match &cli.command {
        Command::Mount { mountpoint, .. } => Some(absolute(mountpoint).display().to_string()),
        _ => None,
    };
    init_logging(cli.verbose.max(u8::from(foreground_tty)), mount_point);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            if std::env::var_os(NOTIFY_ENV).is_some() {
                notify_parent(&format!("error: {msg}"));
            } else {
                eprintln!("imgfs: {msg}");
            }
            ExitCode::from(1)
        }
    }
}

/// A closed stdout (`imgfs ls ... | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// mount.fuse3 runs `imgfs SOURCE MOUNTPOINT -o OPTS` (always with `-o`: it adds `dev,suid`
/// at least): read exactly that form as `imgfs mount ...`. Anything else goes to clap, so a
/// mistyped subcommand gets "did you mean".
fn mount_helper_args(mut args: Vec<String>) -> Vec<String> {
    let operand = |i: usize| args.get(i).is_some_and(|a| !a.starts_with('-'));
    let is_command = args
        .get(1)
        .is_some_and(|a| Cli::command().get_subcommands().any(|c| c.get_name() == a) || a == "help");
    if operand(1) && operand(2) && !is_command && args.get(3).is_some_and(|a| a.starts_with("-o")) {
        args.insert(1, "mount".into());
    }
    args
}

fn init_logging(verbose: u8, mount_point: Option<String>) {
    // fuser logs every unimplemented request at warn: keep it quieter than our own messages.
    let level = match verbose {
        // rustls-platform-verifier logs each refused certificate at error level; the one-line
        // error of imgfs says the same.
        0 => "warn,fuser=error,rustls_platform_verifier=off",
        1 => "info,fuser=warn,rustls_platform_verifier=off",
        _ => "debug",
    };
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    builder.format_timestamp_millis();
    if let Some(mp) = mount_point {
        builder.format(move |buf, record| {
            writeln!(
                buf,
                "[{} {:<5} {}] {mp}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    builder.init();
}

/// Where a background mount logs without `--log-file`: one file per mount point, named like
/// its systemd mount unit (`/mnt/img` -> `mnt-img.log`), in /var/log/imgfs for root and in
/// `$XDG_STATE_HOME/imgfs` (default `~/.local/state/imgfs`) for other users. A file, not
/// syslog: it works without a syslog daemon (containers, CI) and `imgfs status` can name it.
fn default_log_file(mountpoint: &Path) -> Option<PathBuf> {
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

/// `p` made absolute against the working directory (not resolved: symlinks stay as given).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn cache_of(args: &CacheArgs, opts: Option<&Options>) -> Cache {
    let no_cache = args.no_cache || opts.is_some_and(|o| o.no_cache);
    let dir = args
        .cache_dir
        .clone()
        .or_else(|| opts.and_then(|o| o.cache_dir.clone()));
    if no_cache {
        Cache::new(None)
    } else {
        Cache::new(dir.or_else(Cache::default_dir))
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Mount {
            source,
            mountpoint,
            foreground,
            options,
            mut image,
            log_file,
            layout_only,
            cache,
            mut registry,
        } => {
            let mut opts = Options {
                layout_only,
                ..Options::default()
            };
            for o in &options {
                let rest = registry.take_mount_options(o)?;
                let rest = image.take_mount_options(&rest)?;
                opts.parse_into(&rest)?;
            }
            if log_file.is_some() {
                opts.log_file = log_file;
            }
            // Absolute paths everywhere: /proc/self/mounts records the source as given to the
            // kernel, and the background daemon leaves its working directory (below).
            let source = mount::absolute_source(&source);
            let mountpoint = absolute(&mountpoint);
            opts.cache_dir = opts.cache_dir.as_deref().map(absolute);
            opts.log_file = opts.log_file.as_deref().map(absolute);
            let cache = CacheArgs {
                cache_dir: cache.cache_dir.as_deref().map(absolute),
                ..cache
            };
            registry.authfile = registry.authfile.as_deref().map(absolute);
            registry.cert_dir = registry.cert_dir.iter().map(|d| absolute(d)).collect();
            let creds_on_command_line = registry.creds.is_some();
            let registry = registry.options()?;
            if std::env::var_os(NOTIFY_ENV).is_some() {
                // The daemon must not keep the caller's working directory busy (`umount` of the
                // filesystem it was started from would fail with "target is busy").
                std::env::set_current_dir("/").context("cannot change to /")?;
            }
            if foreground && creds_on_command_line {
                // Serving for hours with the password in /proc/PID/cmdline: start again (same
                // PID) without it, the password on a pipe.
                return Err(reexec_without_creds());
            }
            if foreground || std::env::var_os(NOTIFY_ENV).is_some() {
                let cache = cache_of(&cache, Some(&opts));
                mount_foreground(&source, &mountpoint, &opts, &cache, &registry, image.choice().as_ref())
            } else {
                mount_background(&mountpoint, &opts)
            }
        }
        Command::Umount { mountpoint, lazy } => {
            mount::unmount(&mountpoint, lazy)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { mountpoint, json } => status(mountpoint.as_deref(), json),
        Command::Inspect {
            source,
            image,
            cache,
            registry,
        } => {
            let registry = registry.options()?;
            let cache = cache_of(&cache, None);
            let doc = match image {
                None => inspect::inspect(&*imgfs::open_tree_choosing(&source, &cache, &registry, None)?, None),
                Some(r) => {
                    let tree = imgfs::open_tree_with(&source, &cache, &registry)?;
                    let choice = imgfs::one_image::Choice {
                        image: Some(r).filter(|r| !r.is_empty()),
                        layer: None,
                        platform: registry.platform.clone(),
                    };
                    inspect::inspect_one(&tree, &choice)?
                }
            };
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls {
            source,
            path,
            recursive,
            long,
            image,
            cache,
            registry,
        } => {
            let cache = cache_of(&cache, None);
            let tree = imgfs::open_tree_choosing(&source, &cache, &registry.options()?, image.choice().as_ref())?;
            let fs = Fs::new(tree, cache);
            // Like ls(1): `-l` shows a symlink itself, unless the path ends with `/`.
            let follow_last = !long || path.ends_with('/');
            let ino = walk::resolve(&fs, &path, follow_last).with_context(|| format!("{path} in {source}"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let listing = Listing { long, recursive };
            if fs.getattr(ino)?.kind == Kind::Dir {
                listing.dir(&fs, ino, "", &mut out)?;
            } else {
                listing.write(
                    &fs,
                    vec![(ino, path.trim_end_matches('/').as_bytes().to_vec())],
                    &mut out,
                )?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut out = std::io::stdout().lock();
            out.write_all(&man_page()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "imgfs", &mut std::io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Command::Cat {
            source,
            path,
            image,
            cache,
            registry,
        } => {
            let cache = cache_of(&cache, None);
            let tree = imgfs::open_tree_choosing(&source, &cache, &registry.options()?, image.choice().as_ref())?;
            let fs = Fs::new(tree, cache);
            cat(&fs, &source, &path)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn mount_foreground(
    source: &str,
    mountpoint: &Path,
    opts: &Options,
    cache: &Cache,
    registry: &imgfs::registry::RegistryOptions,
    choice: Option<&imgfs::one_image::Choice>,
) -> anyhow::Result<ExitCode> {
    mount::check_fuse_available()?;
    let mountpoint = mount::check_mount_point(mountpoint, opts.nonempty)?;
    let fs = Fs::new(
        match (opts.layout_only, choice) {
            (true, Some(_)) => {
                return Err(anyhow!(
                    "--layout-only shows the OCI layout and --image one image's rootfs: give one of them"
                ))
            }
            (true, None) => imgfs::open_tree_shown(source, cache, registry, true)?,
            (false, _) => imgfs::open_tree_choosing(source, cache, registry, choice)?,
        },
        cache.clone(),
    );
    fs.warm_up();
    let daemon = std::env::var_os(NOTIFY_ENV).is_some();
    let base = imgfs::status::MountStatus {
        mount_point: mountpoint.clone(),
        source: source.to_owned(),
        pid: std::process::id(),
        started: imgfs::status::now(),
        log: opts
            .log_file
            .clone()
            .or_else(|| daemon.then(|| default_log_file(&mountpoint)).flatten()),
        images: fs.tree().image_set().refs.iter().map(|(n, _)| n.clone()).collect(),
        layers: Vec::new(),
    };
    let progress = fs.progress();
    let status_file = imgfs::status::file_for(&mountpoint);
    let served = mount::serve(fs, source, &mountpoint, opts, || {
        log::info!("mounted {source} on {}", mountpoint.display());
        if let Some(f) = status_file {
            imgfs::status::spawn_writer(f, base, progress);
        }
        if daemon {
            notify_parent("ok");
        }
    });
    imgfs::status::remove(&mountpoint);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// `imgfs status [MNT] [--json]`.
fn status(only: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    use imgfs::status::MountStatus;
    let mut mounts = mount::imgfs_mounts();
    if let Some(mp) = only {
        let mp = mp.canonicalize().unwrap_or_else(|_| absolute(mp));
        mounts.retain(|(p, _)| *p == mp);
        if mounts.is_empty() {
            return Err(anyhow!("{}: not an imgfs mount", mp.display()));
        }
    }
    let found: Vec<MountStatus> = mounts
        .iter()
        .map(|(mp, entry)| {
            imgfs::status::read(mp).unwrap_or_else(|| MountStatus {
                mount_point: mp.clone(),
                source: entry.source.clone(),
                pid: 0,
                started: 0,
                log: None,
                images: Vec::new(),
                layers: Vec::new(),
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &found)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = imgfs::status::now();
    for m in &found {
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
    Ok(ExitCode::SUCCESS)
}

/// Writes the one readiness line to the parent and stops using stdout.
fn notify_parent(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Starts the daemon (this program again, in the foreground with a readiness pipe on its
/// stdout) and returns once it reports the mount ready or fails.
fn mount_background(mountpoint: &Path, opts: &Options) -> anyhow::Result<ExitCode> {
    // The checks that need no image run here too, so their errors come before any daemon.
    mount::check_fuse_available()?;
    mount::check_mount_point(mountpoint, opts.nonempty)?;
    let exe = std::env::current_exe().context("cannot find the imgfs executable")?;
    let stderr = match &opts.log_file {
        Some(f) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .with_context(|| format!("cannot open log file {}", f.display()))?,
        ),
        None => match default_log_file(mountpoint).map(|f| open_default_log(&f)) {
            Some(Ok(file)) => Stdio::from(file),
            Some(Err(e)) => {
                eprintln!("imgfs: warning: {e:#}; the mount daemon logs nowhere (use --log-file)");
                Stdio::null()
            }
            None => Stdio::null(),
        },
    };
    // Same arguments but --creds (sent on stdin); the environment variable makes the child
    // serve in the foreground.
    let (args, creds) = strip_creds(mount_helper_args(std::env::args().collect()));
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args[1..])
        .env(NOTIFY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0);
    if creds.is_some() {
        cmd.env(CREDS_STDIN_ENV, "1").stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().context("cannot start the mount daemon")?;
    if let (Some(c), Some(mut stdin)) = (creds, child.stdin.take()) {
        writeln!(stdin, "{c}").context("cannot pass the credentials to the mount daemon")?;
    }
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufReader::new(out).read_line(&mut line)?;
    }
    match line.trim_end() {
        "ok" => Ok(ExitCode::SUCCESS),
        l if l.starts_with("error: ") => Err(anyhow!("{}", &l["error: ".len()..])),
        _ => {
            let status = child.wait()?;
            Err(anyhow!(
                "mount daemon for {} exited before the mount was ready ({status})",
                mountpoint.display()
            ))
        }
    }
}

/// Opens (creating its directory) the default log file of a background mount.
fn open_default_log(f: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = f.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("cannot create log directory {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(f)
        .with_context(|| format!("cannot open log file {}", f.display()))
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

/// Replaces this process (same PID, so `-f` under systemd is unaffected) by imgfs run with the
/// same arguments less `--creds`, whose value it reads from a pipe on stdin. Returns only on
/// failure.
fn reexec_without_creds() -> anyhow::Error {
    let (args, creds) = strip_creds(mount_helper_args(std::env::args().collect()));
    let Some(creds) = creds else {
        return anyhow!("--creds: cannot find it on the command line");
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return anyhow!("cannot find the imgfs executable: {e}"),
    };
    let (read, write) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(fds) => fds,
        Err(e) => return anyhow!("cannot make a pipe: {e}"),
    };
    // One short line fits in the pipe's buffer: no reader is needed yet.
    let mut w = std::fs::File::from(write);
    if let Err(e) = writeln!(w, "{creds}") {
        return anyhow!("cannot pass the credentials on: {e}");
    }
    drop(w);
    let e = std::process::Command::new(exe)
        .args(&args[1..])
        .env(CREDS_STDIN_ENV, "1")
        .stdin(Stdio::from(read))
        .exec();
    anyhow!("cannot start imgfs again without --creds on its command line: {e}")
}

/// How `imgfs ls` prints.
struct Listing {
    long: bool,
    recursive: bool,
}

impl Listing {
    /// Lists directory `ino`, whose path (for `-R`) is `prefix`.
    fn dir(&self, fs: &Fs, ino: u64, prefix: &str, out: &mut impl Write) -> anyhow::Result<()> {
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
    fn write(&self, fs: &Fs, entries: Vec<(u64, Vec<u8>)>, out: &mut impl Write) -> anyhow::Result<()> {
        if self.long {
            let mut long = Vec::with_capacity(entries.len());
            for (ino, name) in entries {
                let attr = fs.getattr(ino)?;
                let target = (attr.kind == Kind::Symlink).then(|| fs.readlink(ino)).transpose()?;
                long.push(ls::Entry { attr, name, target });
            }
            for line in ls::long_lines(&long) {
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

fn cat(fs: &Fs, source: &str, path: &str) -> anyhow::Result<()> {
    let ino = walk::resolve(fs, path, true).with_context(|| format!("{path} in {source}"))?;
    let attr = fs.getattr(ino)?;
    if attr.kind == Kind::Dir {
        return Err(anyhow!("{path}: is a directory in {source}"));
    }
    fs.open(ino)?;
    let mut out = std::io::stdout().lock();
    let mut off = 0;
    while off < attr.size {
        let data = fs
            .read(ino, off, 1 << 20)
            .with_context(|| format!("{path}: read at {off}"))?;
        if data.is_empty() {
            return Err(anyhow!("{path}: ends at {off} of {} bytes", attr.size));
        }
        match out.write_all(&data) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
        off += data.len() as u64;
    }
    Ok(())
}

/// imgfs(1): clap_mangen's page for the command, then one section per subcommand (its
/// synopsis, description and options as subsections), all from the clap definitions above.
fn man_page() -> anyhow::Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("imgfs {}", sub.get_name());
        let mut text = Vec::new();
        clap_mangen::Man::new(sub.clone().bin_name(name.clone())).render(&mut text)?;
        page.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        for line in String::from_utf8_lossy(&text).lines() {
            // One page: the subcommand's own title goes, its sections become subsections.
            if line.starts_with(".TH ")
                || line.starts_with(".SH NAME")
                || line.starts_with(".ie ")
                || line.starts_with(".el ")
            {
                continue;
            }
            let line = line
                .strip_prefix(".SH ")
                .map_or(line.to_owned(), |rest| format!(".SS {rest}"));
            page.extend_from_slice(line.as_bytes());
            page.push(b'\n');
        }
    }
    Ok(page)
}
