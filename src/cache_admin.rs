//! What is in the cache directory (`imgfs cache du`) and evicting from it (`imgfs cache prune`,
//! a mount's `--cache-max-size`): least recently used first, never a file a live mount uses.
//!
//! A file's last use is its access time, which imgfs sets explicitly on every use
//! (`cache::mark_used`). A live mount daemon lists the files it uses or will use in its status
//! file (`status.rs`); prune keeps those, files used in the last [`GRACE`] (a process that
//! opened them may not have published them yet: a mount starting, `imgfs ls`), and temporary
//! files of live writers. Removing a file can never hurt a process that has it open or mapped:
//! cache files are replaced by rename, never written in place, so an unlinked file lives on
//! until its last user closes it, and a missing or newer file is only rebuilt
//! (docs/operations.md, "Cache").

use crate::cache::{self, CacheUse};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Files used this recently are never removed: a process may use them without its status file
/// saying so yet (status files are rewritten once a second; a mount publishes its files only
/// once it is mounted).
pub const GRACE: Duration = Duration::from_secs(60);

/// Errors of the cache commands.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The directory cannot be listed.
    #[error("cache directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A size or duration argument that does not parse.
    #[error("{0}")]
    BadArgument(String),
}

/// What a cache file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `layer-<alg>-<hex>`: a layer's index.
    LayerIndex,
    /// `view-<key>`: a merged rootfs tree.
    RootfsTree,
    /// `blob-<alg>-<hex>`: a registry layer downloaded whole.
    RegistryLayer,
    /// `outer-gzip-*`, `outer-zstd-*`: the seek index of a compressed archive.
    OuterIndex,
    /// `doc-<alg>-<hex>`: a registry manifest, index or config.
    RegistryDocument,
    /// `digest-*`: the digest of an unnamed docker-archive layer.
    LayerDigest,
    /// `source-<alg>-<hex>`: which file a layer's index was built from (`layer/mod.rs`).
    LayerSource,
    /// `.tmp-*`: a file being written (or left by a killed writer).
    Temporary,
    /// Anything else (never removed).
    Other,
}

impl Kind {
    /// The kind of the file `name`.
    pub fn of(name: &str) -> Kind {
        let prefixes = [
            ("layer-", Kind::LayerIndex),
            ("view-", Kind::RootfsTree),
            ("blob-", Kind::RegistryLayer),
            ("outer-gzip-", Kind::OuterIndex),
            ("outer-zstd-", Kind::OuterIndex),
            ("doc-", Kind::RegistryDocument),
            ("digest-", Kind::LayerDigest),
            ("source-", Kind::LayerSource),
            (".tmp-", Kind::Temporary),
        ];
        prefixes
            .iter()
            .find(|(p, _)| name.starts_with(p))
            .map_or(Kind::Other, |(_, k)| *k)
    }

    /// How `imgfs cache du` names the kind.
    pub fn text(self) -> &'static str {
        match self {
            Kind::LayerIndex => "layer indexes",
            Kind::RootfsTree => "rootfs trees",
            Kind::RegistryLayer => "registry layers",
            Kind::OuterIndex => "archive seek indexes",
            Kind::RegistryDocument => "registry documents",
            Kind::LayerDigest => "layer digests",
            Kind::LayerSource => "layer sources",
            Kind::Temporary => "temporary files",
            Kind::Other => "other files",
        }
    }
}

/// One file of the cache directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Its name in the directory.
    pub name: String,
    /// What it holds.
    pub kind: Kind,
    /// Bytes (the apparent size, as `du -b` counts it).
    pub size: u64,
    /// Last use (its access time), in seconds since the Unix epoch.
    pub last_use: u64,
    /// True when imgfs would never use it again: a temporary file of a dead writer, or an
    /// envelope of another cache version.
    pub garbage: bool,
    /// The live mounts using it, with what it is to them.
    pub used_by: Vec<(PathBuf, String)>,
}

/// The layer digest a layer index or registry layer file is named after, `sha256:<hex>`.
pub fn layer_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix("layer-").or_else(|| name.strip_prefix("blob-"))?;
    let (alg, hex) = rest.split_once('-')?;
    Some(format!("{alg}:{hex}"))
}

/// Seconds since the Unix epoch.
pub fn seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Every regular file of the cache directory `dir` (an absent directory is an empty cache),
/// with the live mounts (`live`) that use it.
pub fn scan(dir: &Path, live: &[Live]) -> Result<Vec<Entry>, AdminError> {
    let listing = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AdminError::Dir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for e in listing.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = Kind::of(&name);
        let garbage = match kind {
            Kind::Temporary => cache::temporary_writer(&name).is_some_and(cache::writer_gone),
            Kind::RegistryLayer | Kind::Other => false,
            _ => !starts_current(&e.path()),
        };
        let used_by = live
            .iter()
            .flat_map(|l| {
                l.files
                    .iter()
                    .filter(|u| u.name == name)
                    .map(|u| (l.mount_point.clone(), u.what.clone()))
            })
            .collect();
        out.push(Entry {
            name,
            kind,
            size: meta.len(),
            last_use: meta.accessed().map_or(0, seconds),
            garbage,
            used_by,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// True when the file starts with the envelope of this cache version. Read with `O_NOATIME`:
/// looking must not count as a use (relatime would move an old access time to now). Where
/// that flag is refused (another user's file) the file counts as current: a wrong guess only
/// keeps garbage until it ages out.
fn starts_current(path: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut head = [0u8; cache::ENVELOPE_LEN];
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path);
    match file {
        Ok(mut f) => f.read_exact(&mut head).is_ok_and(|()| cache::is_current(&head)),
        Err(_) => true,
    }
}

/// A live mount daemon using the cache directory, from its status file.
#[derive(Debug, Clone)]
pub struct Live {
    /// Its mount point.
    pub mount_point: PathBuf,
    /// The files it uses.
    pub files: Vec<CacheUse>,
}

/// The live mounts (from their status files) whose cache directory is `dir`.
pub fn live_mounts(dir: &Path) -> Vec<Live> {
    let want = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    crate::status::all_live()
        .into_iter()
        .filter(|s| {
            s.cache_dir
                .as_deref()
                .is_some_and(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()) == want)
        })
        .map(|s| Live {
            mount_point: s.mount_point,
            files: s.cache_files,
        })
        .collect()
}

/// What to prune.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Evict least recently used files until the cache is at most this many bytes.
    pub max_size: Option<u64>,
    /// Evict files not used for this long.
    pub older_than: Option<Duration>,
}

/// Why a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Left by a dead writer, or of another cache version.
    Garbage,
    /// Not used for longer than `--older-than`.
    Old,
    /// The cache is above `--max-size` and this is the least recently used file left.
    OverSize,
}

/// The outcome of planning a prune.
#[derive(Debug, Default, serde::Serialize)]
pub struct Plan {
    /// The files to remove, in order (least recently used first), with why.
    pub remove: Vec<(Entry, Reason)>,
    /// Bytes of the cache before.
    pub before: u64,
    /// Bytes after the removals.
    pub after: u64,
    /// Bytes kept because a live mount uses them.
    pub kept_live: u64,
    /// Bytes kept because they were used in the last [`GRACE`] or are being written.
    pub kept_recent: u64,
}

/// Which files to remove from `entries` under `limits`, at time `now` (Unix seconds). Never
/// files of live mounts, of `also_keep` (the caller's own), used within `grace`, of live
/// writers, or of unknown kinds.
pub fn plan(entries: &[Entry], limits: Limits, also_keep: &BTreeSet<String>, now: u64, grace: Duration) -> Plan {
    let before: u64 = entries.iter().map(|e| e.size).sum();
    let mut plan = Plan {
        before,
        after: before,
        ..Plan::default()
    };
    let mut candidates = Vec::new();
    for e in entries {
        if e.garbage {
            plan.remove.push((e.clone(), Reason::Garbage));
        } else if !e.used_by.is_empty() || also_keep.contains(&e.name) {
            plan.kept_live += e.size;
        } else if e.kind == Kind::Other {
        } else if e.kind == Kind::Temporary || now.saturating_sub(e.last_use) < grace.as_secs() {
            plan.kept_recent += e.size;
        } else {
            candidates.push(e);
        }
    }
    plan.after -= plan.remove.iter().map(|(e, _)| e.size).sum::<u64>();
    // Least recently used first; the name settles ties, so a plan is reproducible.
    candidates.sort_by(|a, b| (a.last_use, &a.name).cmp(&(b.last_use, &b.name)));
    for e in candidates {
        let old = limits
            .older_than
            .is_some_and(|age| now.saturating_sub(e.last_use) >= age.as_secs());
        let over = limits.max_size.is_some_and(|max| plan.after > max);
        let reason = match (old, over) {
            (true, _) => Reason::Old,
            (false, true) => Reason::OverSize,
            (false, false) => continue,
        };
        plan.after -= e.size;
        plan.remove.push((e.clone(), reason));
    }
    plan
}

/// `imgfs cache prune`: plans under `limits` against the live mounts' files and (unless
/// `dry_run`) removes. Returns the plan and what was (or would be) removed.
pub fn prune(dir: &Path, limits: Limits, dry_run: bool) -> Result<(Plan, Vec<(Entry, Reason)>), AdminError> {
    let entries = scan(dir, &live_mounts(dir))?;
    let plan = plan(&entries, limits, &BTreeSet::new(), seconds(SystemTime::now()), GRACE);
    let removed = if dry_run {
        plan.remove.clone()
    } else {
        execute(dir, &plan, GRACE)
    };
    Ok((plan, removed))
}

/// Removes the planned files from `dir`; returns those actually removed. A file used since it
/// was planned (its access time moved into the grace period) stays: a process just opened it.
pub fn execute(dir: &Path, plan: &Plan, grace: Duration) -> Vec<(Entry, Reason)> {
    let mut removed = Vec::new();
    for (e, reason) in &plan.remove {
        let path = dir.join(&e.name);
        let now = seconds(SystemTime::now());
        let still_unused = path.symlink_metadata().is_ok_and(|m| {
            *reason == Reason::Garbage || now.saturating_sub(m.accessed().map_or(0, seconds)) >= grace.as_secs()
        });
        if still_unused && std::fs::remove_file(&path).is_ok() {
            removed.push((e.clone(), *reason));
        }
    }
    removed
}

/// Parses a size (`cache::parse_size`).
pub fn parse_size(text: &str) -> Result<u64, AdminError> {
    cache::parse_size(text)
        .ok_or_else(|| AdminError::BadArgument(format!("{text}: not a size (examples: 0, 4096, 500M, 1.5G, 2GB)")))
}

/// Parses a duration: a number with s, m, h, d or w (e.g. `90s`, `12h`, `30d`, `2w`).
pub fn parse_duration(text: &str) -> Result<Duration, AdminError> {
    let bad = || AdminError::BadArgument(format!("{text}: not a duration (examples: 90s, 30m, 12h, 30d, 2w)"));
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(bad()),
    };
    number.checked_mul(unit).map(Duration::from_secs).ok_or_else(bad)
}

/// `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `3 min ago`, for a time `at` seconds since the epoch.
pub fn ago(at: u64, now: u64) -> String {
    let s = now.saturating_sub(at);
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

/// Sizes per kind: (kind, files, bytes, most recent use).
pub fn by_kind(entries: &[Entry]) -> Vec<(Kind, usize, u64, u64)> {
    let mut kinds: BTreeMap<Kind, (usize, u64, u64)> = BTreeMap::new();
    for e in entries {
        let k = kinds.entry(e.kind).or_default();
        k.0 += 1;
        k.1 += e.size;
        k.2 = k.2.max(e.last_use);
    }
    kinds.into_iter().map(|(k, (n, b, t))| (k, n, b, t)).collect()
}

/// `imgfs cache du` as text: totals per kind, then each layer (index and download) and each
/// rootfs tree with its size, last use and the live mounts using it.
pub fn write_du(out: &mut impl std::io::Write, dir: &Path, entries: &[Entry], now: u64) -> std::io::Result<()> {
    let total: u64 = entries.iter().map(|e| e.size).sum();
    writeln!(
        out,
        "cache {}: {} files, {total} bytes ({})",
        dir.display(),
        entries.len(),
        human(total)
    )?;
    for (kind, n, bytes, last) in by_kind(entries) {
        writeln!(
            out,
            "  {:<22} {n:>5} files {:>11}   last use {}",
            kind.text(),
            human(bytes),
            ago(last, now)
        )?;
    }
    let users = |e: &Entry| -> String {
        if e.used_by.is_empty() {
            return String::new();
        }
        let who: Vec<String> = e
            .used_by
            .iter()
            .map(|(mp, what)| format!("{} ({what})", mp.display()))
            .collect();
        format!("; in use by {}", who.join(", "))
    };
    let mut layers: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    for e in entries.iter().filter(|e| !e.garbage) {
        if let Some(d) = layer_of(&e.name) {
            layers.entry(d).or_default().push(e);
        }
    }
    if !layers.is_empty() {
        writeln!(out, "layers:")?;
    }
    for (digest, files) in &layers {
        let parts: Vec<String> = files
            .iter()
            .map(|e| match e.kind {
                Kind::LayerIndex => format!("index {}", human(e.size)),
                _ => format!("download {}", human(e.size)),
            })
            .collect();
        let last = files.iter().map(|e| e.last_use).max().unwrap_or(0);
        let mut used: Vec<String> = files.iter().map(|e| users(e)).filter(|u| !u.is_empty()).collect();
        used.dedup();
        writeln!(
            out,
            "  {digest}: {}; last use {}{}",
            parts.join(", "),
            ago(last, now),
            used.first().map_or("", String::as_str)
        )?;
    }
    let trees: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == Kind::RootfsTree && !e.garbage)
        .collect();
    if !trees.is_empty() {
        writeln!(out, "rootfs trees:")?;
    }
    for e in trees {
        writeln!(
            out,
            "  {}: {}; last use {}{}",
            e.name,
            human(e.size),
            ago(e.last_use, now),
            users(e)
        )?;
    }
    let garbage: Vec<&Entry> = entries.iter().filter(|e| e.garbage).collect();
    if !garbage.is_empty() {
        let bytes: u64 = garbage.iter().map(|e| e.size).sum();
        writeln!(
            out,
            "garbage: {} files, {} (left by killed writers or older imgfs versions; `imgfs cache prune` removes them)",
            garbage.len(),
            human(bytes)
        )?;
    }
    Ok(())
}

/// `imgfs cache du --json`.
pub fn du_json(dir: &Path, entries: &[Entry]) -> serde_json::Value {
    let kinds: Vec<serde_json::Value> = by_kind(entries)
        .into_iter()
        .map(|(kind, files, bytes, last_use)| {
            serde_json::json!({ "kind": kind, "files": files, "bytes": bytes, "last_use": last_use })
        })
        .collect();
    serde_json::json!({
        "dir": dir,
        "files": entries.len(),
        "bytes": entries.iter().map(|e| e.size).sum::<u64>(),
        "kinds": kinds,
        "entries": entries,
    })
}

/// What `imgfs cache prune` says: one line per file removed (or that would be, `dry_run`),
/// then the outcome.
pub fn write_prune(
    out: &mut impl std::io::Write,
    plan: &Plan,
    removed: &[(Entry, Reason)],
    limits: Limits,
    dry_run: bool,
    now: u64,
) -> std::io::Result<()> {
    let verb = if dry_run { "would remove" } else { "removed" };
    for (e, reason) in removed {
        let why = match reason {
            Reason::Garbage => "garbage".to_owned(),
            Reason::Old => "not used for longer than --older-than".to_owned(),
            Reason::OverSize => "least recently used, cache above --max-size".to_owned(),
        };
        writeln!(
            out,
            "{verb} {} ({}, last use {}: {why})",
            e.name,
            human(e.size),
            ago(e.last_use, now)
        )?;
    }
    let gone: u64 = removed.iter().map(|(e, _)| e.size).sum();
    let left = plan.before - gone;
    writeln!(
        out,
        "{verb} {} files, {}; the cache {} {left} bytes ({}); kept {} in use by live mounts, {} used in the last {} s or being written",
        removed.len(),
        human(gone),
        if dry_run { "would hold" } else { "holds" },
        human(left),
        human(plan.kept_live),
        human(plan.kept_recent),
        GRACE.as_secs()
    )?;
    if let Some(max) = limits.max_size.filter(|m| left > *m) {
        writeln!(
            out,
            "the cache stays above --max-size {}: the rest is in use by live mounts or was used in the last {} s",
            human(max),
            GRACE.as_secs()
        )?;
    }
    Ok(())
}

/// Starts the thread of a daemon mounted with `--cache-max-size`: each time the mount has
/// built something (a layer became ready or failed) and nothing is being built, it prunes
/// the cache directory `dir` down to `max_size`, keeping the files `own` lists and those of other live mounts.
pub fn spawn_size_cap(
    dir: PathBuf,
    max_size: u64,
    progress: std::sync::Arc<crate::progress::Progress>,
    own: impl Fn() -> Vec<CacheUse> + Send + 'static,
) {
    use crate::progress::LayerState;
    let spawned = std::thread::Builder::new()
        .name("imgfs-cache-cap".into())
        .spawn(move || {
            let mut last = None;
            let mut warned = false;
            loop {
                let states: Vec<LayerState> = progress.report().iter().map(|l| l.state).collect();
                let busy = states
                    .iter()
                    .any(|s| matches!(s, LayerState::Downloading | LayerState::Indexing));
                if !busy && last.as_ref() != Some(&states) {
                    last = Some(states);
                    let keep: BTreeSet<String> = own().into_iter().map(|u| u.name).collect();
                    match scan(&dir, &live_mounts(&dir)) {
                        Ok(entries) => {
                            let limits = Limits {
                                max_size: Some(max_size),
                                older_than: None,
                            };
                            let p = plan(&entries, limits, &keep, seconds(SystemTime::now()), GRACE);
                            for (e, _) in execute(&dir, &p, GRACE) {
                                log::info!("cache cap: removed {} ({})", e.name, human(e.size));
                            }
                            if p.after > max_size && !warned {
                                warned = true;
                                log::warn!(
                                "cache {} holds {} after pruning, above --cache-max-size {}: the rest is in use by \
                                 live mounts or was used in the last {} s",
                                dir.display(),
                                human(p.after),
                                human(max_size),
                                GRACE.as_secs()
                            );
                            }
                        }
                        Err(e) => log::warn!("cache cap: {e}"),
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    if let Err(e) = spawned {
        log::warn!("no cache cap thread ({e}); the cache is not pruned by this mount");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64, last_use: u64) -> Entry {
        Entry {
            name: name.into(),
            kind: Kind::of(name),
            size,
            last_use,
            garbage: false,
            used_by: Vec::new(),
        }
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.remove.iter().map(|(e, _)| e.name.as_str()).collect()
    }

    const NOW: u64 = 1_000_000;

    #[test]
    fn least_recently_used_go_first_and_live_and_recent_files_stay() {
        let mut live = entry("layer-sha256-aa", 100, 10);
        live.used_by.push(("/mnt".into(), "index".into()));
        let mut dead_tmp = entry(".tmp-4194305-layer-x", 7, 0);
        dead_tmp.garbage = true;
        let entries = vec![
            live,
            entry("view-b", 100, 300),
            entry("blob-sha256-cc", 100, 200),
            entry("doc-sha256-dd", 100, 400),
            entry("layer-sha256-ee", 100, NOW - 5),
            entry("layer-sha256-ff", 100, 50),
            entry("notes.txt", 100, 0),
            dead_tmp,
        ];
        let keep: BTreeSet<String> = ["layer-sha256-ff".to_owned()].into();
        let limits = Limits {
            max_size: Some(450),
            older_than: None,
        };
        let p = plan(&entries, limits, &keep, NOW, GRACE);
        // 707 bytes; the garbage goes, then the oldest until <= 450.
        assert_eq!(
            names(&p),
            [".tmp-4194305-layer-x", "blob-sha256-cc", "view-b", "doc-sha256-dd"]
        );
        assert_eq!((p.before, p.after, p.kept_live, p.kept_recent), (707, 400, 200, 100));
        let none = plan(&entries, Limits::default(), &keep, NOW, GRACE);
        assert_eq!(names(&none), [".tmp-4194305-layer-x"]);
    }

    #[test]
    fn older_than_removes_only_old_files() {
        let entries = vec![
            entry("view-a", 1, NOW - 10 * 86400),
            entry("view-b", 1, NOW - 86400),
            entry("view-c", 1, NOW - 3 * 86400),
        ];
        let limits = Limits {
            max_size: None,
            older_than: Some(Duration::from_secs(2 * 86400)),
        };
        let p = plan(&entries, limits, &BTreeSet::new(), NOW, GRACE);
        assert_eq!(names(&p), ["view-a", "view-c"]);
        assert!(p.remove.iter().all(|(_, r)| *r == Reason::Old));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(layer_of("blob-sha256-ab").as_deref(), Some("sha256:ab"));
    }
}
