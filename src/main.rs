//! The `imgfs` command line: argument parsing, wiring and exit codes. All work is in the library.

use anyhow::{anyhow, Context};
use clap::{CommandFactory, Parser, Subcommand};
use imgfs::cache::Cache;
use imgfs::daemon;
use imgfs::fs::Fs;
use imgfs::mount::{self, absolute, Options};
use imgfs::progress::bars::{self, Follower, Suspending};
use imgfs::show::{cat, inspect, ls};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = imgfs::registry::parse_timeout)]
    registry_timeout: std::time::Duration,
    /// Use the layer indexes published next to a registry image (`imgfs index push`) instead of
    /// downloading each layer to index it; they are trusted as far as whoever can push to the
    /// repository (-o published_index; docs/registry.md, docs/security.md).
    #[arg(long)]
    published_index: bool,
}

impl RegistryArgs {
    /// The flags as options, which `-o` lists may then override.
    fn apply(&self, opts: &mut Options) {
        opts.registry = imgfs::registry::RegistryOptions {
            platform: self.platform.clone(),
            creds: None,
            authfile: self.authfile.clone(),
            tls_verify: self.tls_verify,
            cert_dirs: self.cert_dir.clone(),
            timeout: self.registry_timeout,
            published_index: self.published_index,
        };
        opts.creds_file = self.creds_file.clone();
    }

    /// The registry options of a command that does not mount (no `-o`).
    fn options(&self) -> anyhow::Result<imgfs::registry::RegistryOptions> {
        let mut opts = Options::default();
        self.apply(&mut opts);
        Ok(imgfs::registry::RegistryOptions {
            creds: self.credentials(opts.creds_file.as_deref())?,
            ..opts.registry
        })
    }

    /// Credentials given to imgfs itself, first found: `--creds`, the pipe of a process started
    /// again without them (`daemon`), the creds file (`--creds-file`, `-o creds_file=`),
    /// `$IMGFS_CREDS`.
    fn credentials(&self, creds_file: Option<&Path>) -> anyhow::Result<Option<imgfs::registry::auth::Credentials>> {
        use imgfs::registry::auth::Credentials;
        if let Some(c) = &self.creds {
            return Ok(Some(Credentials::parse(c)?));
        }
        if let Some(line) = daemon::creds_from_parent() {
            let line = line.context("cannot read the credentials from the parent imgfs")?;
            return Ok(Some(Credentials::parse(&line)?));
        }
        if let Some(f) = creds_file {
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
}

/// Checkpoints inside single-frame zstd layers, for the commands that index layers without
/// mounting (`imgfs mount` has the flag too, with its `-o` twin).
#[derive(clap::Args, Clone, Default)]
struct CheckpointArgs {
    /// Index zstd layers written as one large frame with checkpoints inside it (as
    /// `imgfs mount --zstd-checkpoints`): a cached index without them is built again
    /// (docs/index-format.md, "zstd checkpoints").
    #[arg(long)]
    zstd_checkpoints: bool,
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
        self.as_options().choice()
    }

    fn as_options(&self) -> Options {
        Options {
            image: self.image.clone(),
            layer: self.layer,
            ..Options::default()
        }
    }
}

/// The flags of `imgfs mount`, each the same as an `-o` option (an `-o` option wins).
#[derive(clap::Args)]
struct MountFlags {
    /// Mount options: allow_other, allow_root, default_permissions, nonempty, devices, setuid, fsname=, cache_dir=, no_cache, log=FILE, layout_only, containers_storage, overlay_opaque=both|trusted|user;
    /// image[=REF], layer=N (as --image, --layer); platform=, and for registries authfile=, creds_file=, cert_dir=, tls_verify=, registry_timeout=, published_index.
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
    /// Also show MOUNTPOINT/containers-storage/, an image store podman, buildah and CRI-O read
    /// (`--storage-opt additionalimagestore=MOUNTPOINT/containers-storage`;
    /// -o containers_storage; docs/podman.md).
    #[arg(long)]
    containers_storage: bool,
    /// Index every layer and build every view before returning (-o wait), with progress bars
    /// on a terminal; a view that cannot be built fails the mount.
    #[arg(long)]
    wait: bool,
    /// Experimental: index zstd layers written as one large frame with checkpoints inside it,
    /// so random reads decode from the nearest one (-o zstd_checkpoints; the index pass is much
    /// slower and the index larger: docs/index-format.md).
    #[arg(long)]
    zstd_checkpoints: bool,
    /// After building, prune the cache to SIZE (500M, 2G, ...), least recently used first, never
    /// files of this or other live mounts (-o cache_max_size=SIZE).
    #[arg(long, value_name = "SIZE", value_parser = imgfs::cache_admin::parse_size)]
    cache_max_size: Option<u64>,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl MountFlags {
    /// The flags as [`Options`], then each `-o` list read over them; then the credentials.
    fn options(&self) -> anyhow::Result<Options> {
        let mut opts = Options {
            layout_only: self.layout_only,
            containers_storage: self.containers_storage,
            wait: self.wait,
            zstd_checkpoints: self.zstd_checkpoints,
            cache_max_size: self.cache_max_size,
            log_file: self.log_file.clone(),
            cache_dir: self.cache.cache_dir.clone(),
            no_cache: self.cache.no_cache,
            ..self.image.as_options()
        };
        self.registry.apply(&mut opts);
        for o in &self.options {
            opts.parse_into(o)?;
        }
        opts.registry.creds = self.registry.credentials(opts.creds_file.as_deref())?;
        Ok(opts)
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
        #[command(flatten)]
        flags: MountFlags,
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
        checkpoints: CheckpointArgs,
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
        checkpoints: CheckpointArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show what is in the index cache, or prune it (docs/operations.md, "Cache").
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Publish imgfs's layer indexes next to a registry image (docs/registry.md, "Published indexes").
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Print the man page imgfs(1) (roff; `imgfs man | man -l -`).
    Man,
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Sizes per kind (layer indexes, rootfs trees, registry layers, seek indexes, ...), per
    /// layer and per rootfs tree, with their last use and the live mounts using them.
    Du {
        /// The cache directory (default $XDG_CACHE_HOME/imgfs).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Print JSON (exact bytes, every file).
        #[arg(long)]
        json: bool,
    },
    /// Remove cache files, least recently used first; never files a live mount uses or files
    /// used in the last minute. Without limits, only garbage (files of killed writers and
    /// older versions) goes.
    Prune {
        /// The cache directory (default $XDG_CACHE_HOME/imgfs).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Remove least recently used files until the cache holds at most SIZE (500M, 2G, 0).
        #[arg(long, value_name = "SIZE", value_parser = imgfs::cache_admin::parse_size)]
        max_size: Option<u64>,
        /// Remove files not used for AGE (90s, 30m, 12h, 30d, 2w).
        #[arg(long, value_name = "AGE", value_parser = imgfs::cache_admin::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Index every layer of the image REGISTRY-REF names (or take the indexes from the cache)
    /// and push them to its repository as an OCI referrer artifact of its manifest, which
    /// `imgfs mount --published-index` uses instead of downloading the layers.
    Push {
        /// Where the layers are read: the registry image itself, or a local copy of it (an OCI
        /// layout, archive...: no download).
        source: String,
        /// The registry image to publish for, docker://HOST/REPO[:TAG][@DIGEST] (default: SOURCE).
        registry_ref: Option<String>,
        /// Publish zstd layers written as one large frame indexed with checkpoints inside it, so
        /// that `--published-index` reads a small file from the nearest one (an index of 10-40%
        /// of the layer instead of ~1%; docs/registry.md, "Published indexes").
        #[arg(long)]
        zstd_checkpoints: bool,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        registry: RegistryArgs,
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
            if daemon::is_daemon() {
                daemon::notify_parent(&format!("error: {msg}"));
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
            || c.downcast_ref::<imgfs::show::ShowError>()
                .is_some_and(|e| e.is_broken_pipe())
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
    // A one-shot command (ls, cat, inspect) prints the error it fails with; the log line the
    // library writes for a failed layer or view (for a daemon's operator) would say the same
    // thing twice. A mount's lines name its mount point.
    let one_shot = mount_point.is_none();
    let prefix = mount_point.map(|mp| format!("{mp}: ")).unwrap_or_default();
    builder.format(move |buf, record| {
        let target = record.target();
        if one_shot
            && record.level() == log::Level::Error
            && (target.starts_with("imgfs::layer") || target.starts_with("imgfs::view"))
        {
            return Ok(());
        }
        writeln!(
            buf,
            "[{} {:<5} {target}] {prefix}{}",
            buf.timestamp_millis(),
            record.level(),
            record.args()
        )
    });
    // Log lines hide the progress bars while they are written (`progress::bars`).
    if std::io::stderr().is_terminal() {
        builder.target(env_logger::Target::Pipe(Box::new(Suspending(std::io::stderr()))));
    }
    builder.init();
}

fn cache_of(args: &CacheArgs) -> Cache {
    Options {
        cache_dir: args.cache_dir.clone(),
        no_cache: args.no_cache,
        ..Options::default()
    }
    .cache()
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Mount {
            source,
            mountpoint,
            foreground,
            flags,
        } => {
            let args = mount_helper_args(std::env::args().collect());
            daemon::mount(&source, &mountpoint, flags.options()?, foreground, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Umount { mountpoint, lazy } => {
            mount::unmount(&mountpoint, lazy)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { mountpoint, json } => status(mountpoint.as_deref(), json),
        Command::Index {
            command:
                IndexCommand::Push {
                    source,
                    registry_ref,
                    zstd_checkpoints,
                    cache,
                    registry,
                },
        } => {
            let registry = registry.options()?;
            let cache = cache_of(&cache);
            let bars = follow_opening();
            let pushed =
                imgfs::published::push::push(&source, registry_ref.as_deref(), &cache, &registry, zstd_checkpoints)?;
            drop(bars);
            for p in pushed {
                println!(
                    "{} {} layers {} bytes for {} ({})",
                    p.artifact,
                    p.layers,
                    p.bytes,
                    p.subject,
                    match p.listed {
                        imgfs::registry::referrers::Listed::Api => "listed by the referrers API",
                        imgfs::registry::referrers::Listed::Tag => "listed in the referrers tag",
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            source,
            image,
            cache,
            registry,
        } => {
            let registry = registry.options()?;
            let cache = cache_of(&cache);
            let bars = follow_opening();
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
            drop(bars);
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
            checkpoints,
            cache,
            registry,
        } => {
            let cache = cache_of(&cache);
            let bars = follow_opening();
            let fs = open_fs(&source, cache, &registry, &image, &checkpoints)?;
            if let Some(b) = &bars {
                b.add(bars::of(fs.progress()));
            }
            let mut out = std::io::BufWriter::new(Suspending(std::io::stdout().lock()));
            ls::Listing { long, recursive }.list(&fs, &source, &path, &mut out)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache { command } => cache_command(command),
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
            checkpoints,
            cache,
            registry,
        } => {
            let cache = cache_of(&cache);
            let bars = follow_opening();
            let fs = open_fs(&source, cache, &registry, &image, &checkpoints)?;
            if let Some(b) = &bars {
                b.add(bars::of(fs.progress()));
            }
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                cat::cat(&fs, &source, &path, &mut Suspending(stdout.lock()))?;
            } else {
                cat::cat(&fs, &source, &path, &mut stdout.lock())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The filesystem `imgfs ls` and `imgfs cat` read, as a mount of SOURCE with these flags
/// would show it.
fn open_fs(
    source: &str,
    cache: Cache,
    registry: &RegistryArgs,
    image: &ImageArgs,
    checkpoints: &CheckpointArgs,
) -> anyhow::Result<Fs> {
    let registry = registry.options()?;
    let tree = imgfs::open_tree_choosing(source, &cache, &registry, image.choice().as_ref())?;
    Ok(Fs::new(tree, cache)
        .with_zstd_checkpoints(checkpoints.zstd_checkpoints)
        .with_published_index(registry.published_index))
}

/// `imgfs cache du|prune`.
fn cache_command(command: CacheCommand) -> anyhow::Result<ExitCode> {
    use imgfs::cache_admin;
    let dir_of = |d: Option<PathBuf>| {
        d.map(|d| absolute(&d))
            .or_else(Cache::default_dir)
            .ok_or_else(|| anyhow!("no cache directory: give --cache-dir (neither $XDG_CACHE_HOME nor $HOME is set)"))
    };
    let now = cache_admin::seconds(std::time::SystemTime::now());
    let mut out = std::io::stdout().lock();
    match command {
        CacheCommand::Du { cache_dir, json } => {
            let dir = dir_of(cache_dir)?;
            let entries = cache_admin::scan(&dir, &cache_admin::live_mounts(&dir))?;
            if json {
                serde_json::to_writer_pretty(&mut out, &cache_admin::du_json(&dir, &entries))
                    .map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                cache_admin::write_du(&mut out, &dir, &entries, now)?;
            }
        }
        CacheCommand::Prune {
            cache_dir,
            max_size,
            older_than,
            dry_run,
        } => {
            let dir = dir_of(cache_dir)?;
            let limits = cache_admin::Limits { max_size, older_than };
            let (plan, removed) = cache_admin::prune(&dir, limits, dry_run)?;
            cache_admin::write_prune(&mut out, &plan, &removed, limits, dry_run, now)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress bars while a one-shot command waits (stderr a terminal only): the steps of opening
/// the source now, the filesystem's layers once [`Follower::add`] adds them.
fn follow_opening() -> Option<Follower> {
    Follower::on_terminal(vec![bars::of(imgfs::progress::opening())])
}

/// `imgfs status [MNT] [--json]`.
fn status(only: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let found = imgfs::status::of_mounts(only)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &found)?;
        writeln!(out)?;
    } else {
        imgfs::status::write_text(&mut out, &found, imgfs::status::now())?;
    }
    Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One place reads mount options: flags and `-o` fill the same fields, `-o` last.
    #[test]
    fn o_options_win_over_flags() {
        let cli = Cli::try_parse_from(
            "imgfs mount src mnt --platform linux/amd64 --log-file /a --layer 1 --cert-dir /c \
             -o ro,platform=linux/arm64,log=/b -o cert_dir=/d,tls_verify=false,registry_timeout=5"
                .split_whitespace(),
        )
        .unwrap();
        let Command::Mount { flags, .. } = cli.command else {
            panic!("not a mount")
        };
        let o = flags.options().unwrap();
        assert_eq!(o.registry.platform.as_deref(), Some("linux/arm64"));
        assert_eq!(o.log_file.as_deref(), Some(Path::new("/b")));
        assert_eq!(o.layer, Some(1));
        assert_eq!(o.registry.cert_dirs, [Path::new("/c"), Path::new("/d")]);
        assert!(!o.registry.tls_verify);
        assert_eq!(o.registry.timeout, std::time::Duration::from_secs(5));
        assert!(o.choice().is_some());
    }
}
