//! Load and faults (issue 7), on the load image of tests/fixtures/hostile (4 gzip/zstd layers,
//! ~40 MiB of random files, whiteouts, an opaque directory, a 1 GiB run of zeros) whose rootfs
//! make-hostile.py also writes out as a plain directory, the reference every read is compared to.
//!
//! - 16 readers (4 each: `cat`, `find`, lstat/readlink, random pread) plus one thread listing the
//!   whole tree, for 60 s: no error, every byte and listing exact.
//! - The same from the moment of mounting with an empty cache, so the readers meet the first
//!   index build (15 s: the build takes ~1-2 s, the rest is the same as above): they block until
//!   the tree is complete and never see a partial one.
//! - `imgfs umount`, `fusermount3 -u`, `imgfs umount --lazy`, SIGTERM and SIGKILL under load: no
//!   stale mount after an unmount or SIGTERM (files open at that moment keep reading the right
//!   bytes), ENOTCONN and a clear message after SIGKILL, and the next mount works from a valid
//!   cache.
//! - SIGKILL while a cache file is being written: the cache holds the old file or the new one,
//!   never a torn one.
//! - The source archive rewritten, truncated, deleted or replaced while mounted: EIO and a log
//!   line, never wrong bytes.
//! - A full disk under the cache directory: the mount works without the cache, with a warning.

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the main load test runs.
const LOAD_TIME: Duration = Duration::from_secs(60);
/// How long the readers run from the moment of mounting with a cold cache.
const FIRST_BUILD_LOAD_TIME: Duration = Duration::from_secs(15);
/// Reader threads (a quarter of each kind) plus one lister.
const READERS: usize = 16;
/// Largest random pread.
const MAX_PREAD: u64 = 256 << 10;
/// Peak RSS of the daemon under load. Measured ~90 MiB: the 64 MiB chunk cache shared by all
/// layers (layer::CHUNK_CACHE_BYTES) plus inflaters and FUSE buffers for 4 threads.
const PEAK_LOAD_KIB: u64 = 192 << 10;
/// How long a daemon may take to exit once its mount is gone and its files are closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------------------------------------
// The reference tree
// ------------------------------------------------------------------------------------------------

/// What an lstat must show.
#[derive(Debug, PartialEq, Eq)]
struct Want {
    kind: char,
    mode: u32,
    size: u64,
    link: Option<PathBuf>,
}

/// The load image's rootfs, read once from load-expected/.
struct Expected {
    root: PathBuf,
    /// Regular files (relative path, size).
    files: Vec<(PathBuf, u64)>,
    /// sha256 of every regular file but the 1 GiB `zeros` (cat threads skip it).
    sums: HashMap<PathBuf, String>,
    entries: Vec<(PathBuf, Want)>,
    /// Names in each directory ("" is the root).
    dirs: BTreeMap<PathBuf, BTreeSet<OsString>>,
    /// `find` output on the reference, sorted.
    find: Vec<String>,
}

fn want_of(p: &Path) -> Want {
    let md = fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else {
        'f'
    };
    Want {
        kind,
        mode: md.mode() & 0o7777,
        size: if kind == 'd' { 0 } else { md.len() },
        link: (kind == 'l').then(|| fs::read_link(p).unwrap()),
    }
}

fn expected() -> &'static Expected {
    static E: OnceLock<Expected> = OnceLock::new();
    E.get_or_init(|| {
        let root = hostile_fixtures().join("load-expected");
        let mut e = Expected {
            root: root.clone(),
            files: Vec::new(),
            sums: HashMap::new(),
            entries: Vec::new(),
            dirs: BTreeMap::new(),
            find: find_lines(&root).expect("find on the reference tree"),
        };
        for rel in walk(&root) {
            let p = root.join(&rel);
            let w = want_of(&p);
            if w.kind == 'd' {
                e.dirs.insert(
                    rel.clone(),
                    fs::read_dir(&p).unwrap().map(|d| d.unwrap().file_name()).collect(),
                );
            }
            if w.kind == 'f' {
                e.files.push((rel.clone(), w.size));
                if rel != Path::new("zeros") {
                    e.sums.insert(rel.clone(), sha256_file(&p));
                }
            }
            if !rel.as_os_str().is_empty() {
                e.entries.push((rel, w));
            }
        }
        assert!(
            e.files.len() > 250 && e.dirs.len() > 10,
            "load-expected looks incomplete"
        );
        e
    })
}

/// `find DIR` listing type, path, mode, and for non-directories size and link target, sorted.
fn find_lines(dir: &Path) -> Result<Vec<String>, String> {
    let o = Command::new("find")
        .arg(dir)
        .args([
            "-mindepth",
            "1",
            "(",
            "-type",
            "d",
            "-printf",
            "%y %P %m\\n",
            ")",
            "-o",
            "-printf",
            "%y %P %m %s %l\\n",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("find: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "find {}: {} {}",
            dir.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect();
    lines.sort();
    Ok(lines)
}

// ------------------------------------------------------------------------------------------------
// Readers
// ------------------------------------------------------------------------------------------------

/// What the readers did.
#[derive(Default)]
struct Counts {
    ops: [AtomicU64; 5],
    bytes: AtomicU64,
    /// Failures: errors before the fault (or with no fault), wrong bytes or listings at any time.
    failures: AtomicU64,
    /// Errors after the fault (`faulted`), by errno.
    after_fault: Mutex<BTreeMap<String, u64>>,
    messages: Mutex<Vec<String>>,
}

const KINDS: [&str; 5] = ["cat", "find", "stat", "pread", "list"];

/// A load run: `READERS` threads plus a lister on `root` (the mount's rootfs), until `stop`.
/// Errors count as failures unless `faulted` is set (the test unmounted or killed the daemon).
struct Load {
    stop: Arc<AtomicBool>,
    faulted: Arc<AtomicBool>,
    counts: Arc<Counts>,
    /// When each thread's first operation finished.
    first_done: Arc<Mutex<Vec<Instant>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(root: &Path, readers: usize) -> Load {
        let exp = expected();
        let stop = Arc::new(AtomicBool::new(false));
        let faulted = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let first_done = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for t in 0..=readers {
            let kind = if t == readers { 4 } else { t % 4 };
            let (root, stop, faulted, counts, first_done) = (
                root.to_path_buf(),
                stop.clone(),
                faulted.clone(),
                counts.clone(),
                first_done.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("load-{}-{t}", KINDS[kind]))
                    .spawn(move || {
                        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1000_0001));
                        let mut first = true;
                        while !stop.load(Ordering::Relaxed) {
                            let was_faulted = faulted.load(Ordering::SeqCst);
                            let r = match kind {
                                0 => op_cat(&root, exp, &mut rng),
                                1 => op_find(&root, exp),
                                2 => op_stat(&root, exp, &mut rng),
                                3 => op_pread(&root, exp, &mut rng),
                                _ => op_list(&root, exp),
                            };
                            if first {
                                first = false;
                                first_done.lock().unwrap().push(Instant::now());
                            }
                            counts.ops[kind].fetch_add(1, Ordering::Relaxed);
                            match r {
                                Ok(n) => {
                                    counts.bytes.fetch_add(n, Ordering::Relaxed);
                                }
                                Err(Outcome2::Wrong(msg)) => counts.fail(format!("{}: WRONG: {msg}", KINDS[kind])),
                                Err(Outcome2::Error(code, msg)) => {
                                    if was_faulted || faulted.load(Ordering::SeqCst) {
                                        *counts.after_fault.lock().unwrap().entry(code).or_default() += 1;
                                        // The mount is gone or dead: nothing more to check.
                                        std::thread::sleep(Duration::from_millis(20));
                                    } else {
                                        counts.fail(format!("{}: {msg}", KINDS[kind]));
                                    }
                                }
                            }
                        }
                    })
                    .unwrap(),
            );
        }
        Load {
            stop,
            faulted,
            counts,
            first_done,
            threads,
        }
    }

    /// Stops the threads and waits for them (a hung FUSE request fails the test, not hangs it).
    fn finish(self) -> Arc<Counts> {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        for t in self.threads {
            while !t.is_finished() {
                assert!(Instant::now() < deadline, "a load thread is stuck (a hung request?)");
                std::thread::sleep(Duration::from_millis(10));
            }
            t.join().expect("a load thread panicked");
        }
        self.counts
    }
}

impl Counts {
    fn fail(&self, msg: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut m = self.messages.lock().unwrap();
        if m.len() < 20 {
            m.push(msg);
        }
    }

    fn summary(&self) -> String {
        let ops: Vec<String> = KINDS
            .iter()
            .zip(&self.ops)
            .map(|(k, n)| format!("{k} {}", n.load(Ordering::Relaxed)))
            .collect();
        format!(
            "{}; {} MiB read; {} failures; after the fault: {:?}",
            ops.join(", "),
            self.bytes.load(Ordering::Relaxed) >> 20,
            self.failures.load(Ordering::Relaxed),
            self.after_fault.lock().unwrap()
        )
    }

    fn total_ops(&self) -> u64 {
        self.ops.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    fn assert_no_failure(&self, what: &str) {
        let n = self.failures.load(Ordering::Relaxed);
        assert!(
            n == 0,
            "{what}: {n} failures ({}):\n{}",
            self.summary(),
            self.messages.lock().unwrap().join("\n")
        );
    }
}

/// Why an operation did not give the expected result.
enum Outcome2 {
    /// Wrong bytes, names or attributes: always a failure.
    Wrong(String),
    /// An error (errno name, message): a failure unless the test caused it.
    Error(String, String),
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> Outcome2 {
    let code = e.raw_os_error().map_or_else(|| format!("{:?}", e.kind()), errno_name);
    Outcome2::Error(code, format!("{what} {}: {e}", p.display()))
}

fn errno_name(n: i32) -> String {
    match n {
        libc::ENOENT => "ENOENT".into(),
        libc::ENOTCONN => "ENOTCONN".into(),
        libc::ECONNABORTED => "ECONNABORTED".into(),
        libc::EIO => "EIO".into(),
        libc::EBUSY => "EBUSY".into(),
        n => format!("errno {n}"),
    }
}

/// The errno a tool's message (strerror text) names.
fn errno_in(message: &str) -> String {
    let known = [
        ("Transport endpoint is not connected", libc::ENOTCONN),
        ("Software caused connection abort", libc::ECONNABORTED),
        ("No such file or directory", libc::ENOENT),
        ("Input/output error", libc::EIO),
    ];
    match known.iter().find(|(text, _)| message.contains(text)) {
        Some((_, n)) => errno_name(*n),
        None => format!("unrecognized: {message}"),
    }
}

type OpResult = Result<u64, Outcome2>;

/// `cat FILE` through a pipe, hashed.
fn op_cat(root: &Path, exp: &Expected, rng: &mut Rng) -> OpResult {
    let files: Vec<&PathBuf> = exp.sums.keys().collect();
    let rel = files[rng.below(files.len() as u64) as usize];
    let p = root.join(rel);
    let mut child = Command::new("cat")
        .arg(&p)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io_err("spawn cat", &p, e))?;
    let mut out = child.stdout.take().unwrap();
    let mut h = sha2::Sha256::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = out.read(&mut buf).map_err(|e| io_err("cat pipe", &p, e))?;
        if k == 0 {
            break;
        }
        sha2::Digest::update(&mut h, &buf[..k]);
        n += k as u64;
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    let st = child.wait().map_err(|e| io_err("wait cat", &p, e))?;
    if !st.success() {
        return Err(Outcome2::Error(
            errno_in(&err),
            format!("cat {}: {st}: {}", p.display(), err.trim()),
        ));
    }
    let sum = hex(&sha2::Digest::finalize(h));
    if sum != exp.sums[rel] {
        return Err(Outcome2::Wrong(format!(
            "cat {}: {n} bytes hashing to {sum}",
            rel.display()
        )));
    }
    Ok(n)
}

/// `find` over the whole tree, compared with the reference's.
fn op_find(root: &Path, exp: &Expected) -> OpResult {
    match find_lines(root) {
        Ok(lines) if lines == exp.find => Ok(0),
        Ok(lines) => Err(Outcome2::Wrong(format!(
            "find: {} lines, want {}; first difference: {:?}",
            lines.len(),
            exp.find.len(),
            lines.iter().zip(&exp.find).find(|(a, b)| a != b)
        ))),
        Err(e) => Err(Outcome2::Error(errno_in(&e), e)),
    }
}

/// lstat (and readlink) of a random entry.
fn op_stat(root: &Path, exp: &Expected, rng: &mut Rng) -> OpResult {
    let (rel, want) = &exp.entries[rng.below(exp.entries.len() as u64) as usize];
    let p = root.join(rel);
    let md = fs::symlink_metadata(&p).map_err(|e| io_err("lstat", &p, e))?;
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else {
        'f'
    };
    let got = Want {
        kind,
        mode: md.mode() & 0o7777,
        size: if kind == 'd' { 0 } else { md.len() },
        link: if kind == 'l' {
            Some(fs::read_link(&p).map_err(|e| io_err("readlink", &p, e))?)
        } else {
            None
        },
    };
    if &got != want {
        return Err(Outcome2::Wrong(format!(
            "lstat {}: {got:?}, want {want:?}",
            rel.display()
        )));
    }
    Ok(0)
}

/// pread of a random range of a random file, compared with the reference file.
fn op_pread(root: &Path, exp: &Expected, rng: &mut Rng) -> OpResult {
    let (rel, size) = &exp.files[rng.below(exp.files.len() as u64) as usize];
    let p = root.join(rel);
    let off = rng.below(*size);
    let len = (1 + rng.below(MAX_PREAD)).min(size - off) as usize;
    let f = fs::File::open(&p).map_err(|e| io_err("open", &p, e))?;
    let mut got = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match f.read_at(&mut got[filled..], off + filled as u64) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) => return Err(io_err("pread", &p, e)),
        }
    }
    let mut want = vec![0u8; len];
    fs::File::open(exp.root.join(rel))
        .unwrap()
        .read_exact_at(&mut want, off)
        .unwrap();
    if filled != len || got != want {
        return Err(Outcome2::Wrong(format!(
            "pread {} at {off}+{len}: {filled} bytes, not the reference's",
            rel.display()
        )));
    }
    Ok(len as u64)
}

/// readdir of every directory, compared with the reference's names.
fn op_list(root: &Path, exp: &Expected) -> OpResult {
    for (rel, want) in &exp.dirs {
        let p = root.join(rel);
        let rd = fs::read_dir(&p).map_err(|e| io_err("opendir", &p, e))?;
        let mut got = BTreeSet::new();
        for e in rd {
            got.insert(e.map_err(|e| io_err("readdir", &p, e))?.file_name());
        }
        if &got != want {
            return Err(Outcome2::Wrong(format!(
                "readdir {}: {} names, want {}",
                rel.display(),
                got.len(),
                want.len()
            )));
        }
    }
    Ok(0)
}

/// A thread that opens big files before a fault and reads them to the end after it, checking
/// every byte: open files must keep working after a lazy unmount (or SIGTERM).
struct Holders {
    go: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Result<(), String>>>,
}

impl Holders {
    fn start(root: &Path, names: &[&str]) -> Holders {
        let go = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicU64::new(0));
        let threads = names
            .iter()
            .map(|name| {
                let (p, go, ready) = (root.join(name), go.clone(), ready.clone());
                let want = expected().sums[Path::new(name)].clone();
                std::thread::spawn(move || {
                    let mut f = fs::File::open(&p).map_err(|e| format!("open {}: {e}", p.display()))?;
                    ready.fetch_add(1, Ordering::SeqCst);
                    while !go.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let sum =
                        sha256_reader(&mut f).map_err(|e| format!("read {} after the fault: {e}", p.display()))?;
                    if sum != want {
                        return Err(format!(
                            "{} read after the fault hashes to {sum}, want {want}",
                            p.display()
                        ));
                    }
                    Ok(())
                })
            })
            .collect();
        while ready.load(Ordering::SeqCst) < names.len() as u64 {
            std::thread::sleep(Duration::from_millis(5));
        }
        Holders { go, threads }
    }

    fn finish(self) {
        self.go.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("holder panicked").unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

fn rootfs(d: &Daemon) -> PathBuf {
    d.path("images/load/rootfs")
}

/// A warm mount of the load image with `readers` readers running on its rootfs for 2 s, and
/// with [`HELD`] files held open when asked.
struct UnderLoad {
    _tmp: tempfile::TempDir,
    cache: PathBuf,
    d: Daemon,
    load: Load,
    holders: Option<Holders>,
}

impl UnderLoad {
    fn start(readers: usize, hold: bool) -> UnderLoad {
        let tmp = tempdir();
        let cache = tmp.path().join("cache");
        let d = warm_daemon(&cache);
        let root = rootfs(&d);
        let holders = hold.then(|| Holders::start(&root, HELD));
        let load = Load::start(&root, readers);
        std::thread::sleep(Duration::from_secs(2));
        UnderLoad {
            _tmp: tmp,
            cache,
            d,
            load,
            holders,
        }
    }
}

/// The daemon exits with status 0 within [`EXIT_TIMEOUT`] of `event`.
fn assert_exits_with_0(d: &mut Daemon, event: &str) {
    let st = d
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("the daemon did not exit after {event}"));
    assert!(st.success(), "daemon exit status {st}");
}

/// A daemon on the load image with its own cache (or `cache`), the index built.
fn warm_daemon(cache: &Path) -> Daemon {
    let d = Daemon::start(
        &hostile_fixtures().join("load"),
        &["-v", "--cache-dir", &cache.display().to_string()],
    );
    op_list(&rootfs(&d), expected()).unwrap_or_else(|_| panic!("listing the load rootfs failed:\n{}", d.log_text()));
    d
}

// ------------------------------------------------------------------------------------------------
// Load
// ------------------------------------------------------------------------------------------------

#[test]
fn sixteen_readers_for_60_seconds() {
    let tmp = tempdir();
    let d = warm_daemon(&tmp.path().join("cache"));
    let started = Instant::now();
    let load = Load::start(&rootfs(&d), READERS);
    std::thread::sleep(LOAD_TIME);
    let counts = load.finish();
    let elapsed = started.elapsed();
    let peak = d.peak_kib();
    eprintln!("load for {elapsed:?}: {}; peak RSS {peak} KiB", counts.summary());
    counts.assert_no_failure("load");
    assert!(counts.total_ops() > 1000, "too little load: {}", counts.summary());
    for (k, n) in KINDS.iter().zip(&counts.ops) {
        assert!(n.load(Ordering::Relaxed) > 0, "no {k} operation finished");
    }
    assert!(peak < PEAK_LOAD_KIB, "peak RSS {peak} KiB >= {PEAK_LOAD_KIB} KiB");
    assert!(
        !d.log_text().contains("ERROR"),
        "errors logged under load:\n{}",
        d.log_text()
    );
}

#[test]
fn readers_during_the_first_index_build_see_whole_trees() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let d = Daemon::start(
        &hostile_fixtures().join("load"),
        &["-v", "--cache-dir", &cache.display().to_string()],
    );
    // Nothing has touched rootfs/ yet: every reader's first operation meets the build.
    let started = Instant::now();
    let load = Load::start(&rootfs(&d), READERS);
    std::thread::sleep(FIRST_BUILD_LOAD_TIME);
    let first_done = load.first_done.clone();
    let counts = load.finish();
    let log = d.log_text();
    eprintln!("first-build load: {}", counts.summary());
    counts.assert_no_failure("load during the first index build");
    // The build happened during this run, and the readers waited for it.
    let builds: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("indexed layer"))
        .filter_map(|l| l.rsplit(" in ").next()?.trim_end_matches('s').parse().ok())
        .collect();
    assert_eq!(builds.len(), 4, "want 4 layers indexed in this mount:\n{log}");
    let longest = builds.iter().cloned().fold(0.0, f64::max);
    let first = first_done
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(started))
        .min()
        .unwrap();
    eprintln!("longest layer index {longest:.2}s; first reader operation done after {first:?}");
    assert!(
        first.as_secs_f64() >= longest * 0.9,
        "a reader finished after {first:?}, before the {longest:.2}s index build could have"
    );
    assert!(!log.contains("ERROR"), "errors logged:\n{log}");
}

// ------------------------------------------------------------------------------------------------
// Unmounts and signals under load
// ------------------------------------------------------------------------------------------------

/// Files the holders keep open across a fault.
const HELD: &[&str] = &["big/b0", "big/b5", "zs/z3"];

/// The cache after a fault: every file whole (header, length, CRC), and the next mount on the same
/// mount point reads the tree from it, all of it right.
fn assert_cache_valid_and_remount_works(dir: &Path, cache: &Path) {
    for name in ls(cache) {
        let p = cache.join(&name);
        if name.starts_with(".tmp-") {
            continue; // a writer's unfinished file: never read, removed by the next store
        }
        assert_whole_cache_file(&p);
    }
    let log = dir.parent().unwrap().join("remount.log");
    let d = Daemon::start_at(
        &hostile_fixtures().join("load"),
        dir,
        &log,
        &["-v", "--cache-dir", &cache.display().to_string()],
        None,
    )
    .unwrap_or_else(|e| panic!("the next mount failed: {e}"));
    let exp = expected();
    op_list(&rootfs(&d), exp).unwrap_or_else(|_| panic!("listing after remount failed"));
    for (rel, sum) in &exp.sums {
        assert_eq!(
            &sha256_file(&rootfs(&d).join(rel)),
            sum,
            "{} after remount",
            rel.display()
        );
    }
    let text = d.log_text();
    assert!(!text.contains("corrupt"), "a cache file was torn:\n{text}");
    assert!(
        text.contains("loaded from the cache"),
        "the remount did not use the cache:\n{text}"
    );
}

/// An imgfs cache file (docs/index-format.md): magic, version, payload length, CRC-32.
fn assert_whole_cache_file(p: &Path) {
    let b = fs::read(p).unwrap();
    assert!(
        b.len() >= 24 && &b[..8] == b"IMGFSIDX",
        "{}: no cache header",
        p.display()
    );
    let len = u64::from_le_bytes(b[12..20].try_into().unwrap());
    let crc = u32::from_le_bytes(b[20..24].try_into().unwrap());
    assert_eq!(len, b.len() as u64 - 24, "{}: torn (length)", p.display());
    assert_eq!(crc32fast::hash(&b[24..]), crc, "{}: torn (CRC)", p.display());
}

/// `imgfs umount` and `fusermount3 -u` refuse a busy mount with one clear line and leave it
/// working; `imgfs umount --lazy` detaches it at once, open files read on to their end, the
/// daemon exits 0, and the next mount works.
#[test]
fn umount_under_load() {
    require(&["fusermount3"]);
    let UnderLoad {
        _tmp,
        cache,
        mut d,
        load,
        holders,
    } = UnderLoad::start(8, true);

    let o = run_imgfs(["umount".as_ref(), d.dir.as_os_str()], MOUNT_TIMEOUT);
    let err = o.stderr_str();
    assert!(!o.ok(), "imgfs umount of a busy mount succeeded");
    assert_eq!(err.trim_end().lines().count(), 1, "imgfs umount: not one line:\n{err}");
    assert!(
        err.contains("busy") && err.contains(&d.dir.display().to_string()),
        "{err}"
    );
    assert!(err.contains("--lazy"), "the message does not say what to do: {err}");
    let o = run(Command::new("fusermount3").arg("-u").arg(&d.dir), MOUNT_TIMEOUT);
    assert!(
        !o.ok() && o.stderr_str().contains("busy"),
        "fusermount3 -u: {}",
        o.stderr_str()
    );
    assert!(is_mounted(&d.dir), "a refused unmount left no mount");
    std::thread::sleep(Duration::from_secs(1));

    load.faulted.store(true, Ordering::SeqCst);
    run_imgfs(["umount".as_ref(), "--lazy".as_ref(), d.dir.as_os_str()], MOUNT_TIMEOUT).assert_ok();
    assert!(!is_mounted(&d.dir), "imgfs umount --lazy left the mount");
    let counts = load.finish();
    holders.into_iter().for_each(Holders::finish);
    assert_exits_with_0(&mut d, "the lazy unmount");
    eprintln!("umount under load: {}", counts.summary());
    counts.assert_no_failure("umount under load");
    assert_cache_valid_and_remount_works(&d.dir.clone(), &cache);
}

/// SIGTERM under load: the mount is detached at once (no stale mount point), files open at that
/// moment read on to their end, the daemon exits 0 once they are closed.
#[test]
fn sigterm_under_load() {
    let UnderLoad {
        _tmp,
        cache,
        mut d,
        load,
        holders,
    } = UnderLoad::start(8, true);
    load.faulted.store(true, Ordering::SeqCst);
    d.signal(libc::SIGTERM);
    let start = Instant::now();
    while is_mounted(&d.dir) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still mounted 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let counts = load.finish();
    assert!(
        d.wait_exit(Duration::ZERO).is_none(),
        "the daemon exited with files still open"
    );
    holders.into_iter().for_each(Holders::finish);
    assert_exits_with_0(&mut d, "SIGTERM");
    eprintln!(
        "SIGTERM under load, unmounted after {:?}: {}",
        start.elapsed(),
        counts.summary()
    );
    counts.assert_no_failure("SIGTERM under load");
    let log = d.log_text();
    // At warn level, with the sender (si_pid): this test process.
    assert_logged(
        &log,
        &[
            "WARN",
            &format!("SIGTERM from PID {} (uid 0): unmounting", std::process::id()),
        ],
    );
    assert_logged(
        &log,
        &["was busy", "detached it; exiting once its open files are closed"],
    );
    assert_cache_valid_and_remount_works(&d.dir.clone(), &cache);
}

/// SIGKILL under load: every later access fails with ENOTCONN, `imgfs mount` on the dead mount
/// point says what it is, `imgfs umount` removes it, and the next mount works from the cache.
#[test]
fn sigkill_under_load() {
    let UnderLoad {
        _tmp,
        cache,
        mut d,
        load,
        ..
    } = UnderLoad::start(READERS, false);
    load.faulted.store(true, Ordering::SeqCst);
    d.signal(libc::SIGKILL);
    d.wait_exit(EXIT_TIMEOUT).expect("SIGKILL did not end the daemon");
    std::thread::sleep(Duration::from_millis(500));
    let counts = load.finish();
    eprintln!("SIGKILL under load: {}", counts.summary());
    counts.assert_no_failure("SIGKILL under load");
    let errors = counts.after_fault.lock().unwrap().clone();
    assert!(
        errors.keys().all(|k| k == "ENOTCONN" || k == "ECONNABORTED"),
        "errors after SIGKILL other than ENOTCONN: {errors:?}"
    );
    assert!(is_mounted(&d.dir), "the dead mount is gone already?");
    assert_eq!(fs::metadata(&d.dir).unwrap_err().raw_os_error(), Some(libc::ENOTCONN));

    let src = hostile_fixtures().join("load");
    let o = run_imgfs(["mount".as_ref(), src.as_os_str(), d.dir.as_os_str()], ERROR_TIMEOUT);
    assert!(!o.ok(), "imgfs mount over a dead mount succeeded");
    assert!(o.stderr_str().contains("dead FUSE mount"), "{}", o.stderr_str());
    run_imgfs(["umount".as_ref(), d.dir.as_os_str()], MOUNT_TIMEOUT).assert_ok();
    assert!(!is_mounted(&d.dir), "imgfs umount left the dead mount");
    assert_cache_valid_and_remount_works(&d.dir.clone(), &cache);
}

// ------------------------------------------------------------------------------------------------
// Kill during a cache write
// ------------------------------------------------------------------------------------------------

/// Watches `dir` with inotify and SIGKILLs `pid` the moment a `.tmp-*` file is created in it
/// (a cache write has begun: the rename comes only after the write and an fsync). Returns the
/// name of that file, or None if none appeared before `stop`.
fn kill_on_first_temporary(dir: &Path, pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Option<String>> {
    // SAFETY: plain syscalls on a descriptor we own and close.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
    let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid descriptor and NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_CREATE) };
    assert!(
        wd >= 0,
        "inotify_add_watch {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut found = None;
        'outer: while !stop.load(Ordering::SeqCst) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 20) } <= 0 {
                continue;
            }
            // SAFETY: reading into a buffer we own, within its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let mut off = 0usize;
            while n > 0 && off + 16 <= n as usize {
                let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap()) as usize;
                let name = &buf[off + 16..off + 16 + len];
                let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap()).into_owned();
                off += 16 + len;
                if name.starts_with(".tmp-") {
                    send_signal(pid, libc::SIGKILL);
                    found = Some(name);
                    break 'outer;
                }
            }
        }
        // SAFETY: closing the descriptor we opened.
        unsafe { libc::close(fd) };
        found
    })
}

/// Mounts the corpus's `wide` image (a 3.6 MB layer index and a 2 MB rootfs tree to write) with
/// `cache`, and SIGKILLs the daemon as soon as it starts writing a cache file. Returns the name
/// of the temporary file it was writing.
fn kill_during_cache_write(cache: &Path) -> String {
    let tmp = tempdir();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    fs::create_dir_all(cache).unwrap();
    let mut d = Daemon::start_at(
        &hostile_fixtures().join("layers"),
        &mnt,
        &tmp.path().join("log"),
        &["-v", "--cache-dir", &cache.display().to_string()],
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = kill_on_first_temporary(cache, d.pid(), stop.clone());
    let _ = fs::read_dir(d.path("images/wide/rootfs")).map(|rd| rd.count());
    let waited = d.wait_exit(Duration::from_secs(30));
    stop.store(true, Ordering::SeqCst);
    let name = watcher.join().unwrap();
    assert!(
        waited.is_some(),
        "the daemon was not killed during a cache write:\n{}",
        d.log_text()
    );
    assert_eq!(fs::metadata(&mnt).unwrap_err().raw_os_error(), Some(libc::ENOTCONN));
    force_unmount(&mnt);
    name.expect("no temporary file appeared")
}

/// SIGKILL in the middle of cache writes: the first time (no file yet) and while replacing a
/// damaged file. The cache then holds whole files only (the damaged one unchanged), and the
/// next mount reads right, rebuilding what is missing and removing the dead writer's leftovers.
#[test]
fn kill_during_cache_write_leaves_old_or_new_never_torn() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let left = kill_during_cache_write(&cache);
    let names = ls(&cache);
    assert!(
        names.contains(&left),
        "the torn temporary {left} should be left: {names:?}"
    );
    for n in names.iter().filter(|n| !n.starts_with(".tmp-")) {
        assert_whole_cache_file(&cache.join(n));
    }

    // Complete the cache, damage the layer index, then kill the rewrite of it.
    {
        let d = Daemon::start(
            &hostile_fixtures().join("layers"),
            &["-v", "--cache-dir", &cache.display().to_string()],
        );
        assert_eq!(
            fs::read_dir(d.path("images/wide/rootfs/wide")).unwrap().count(),
            100_000
        );
    }
    assert!(
        !ls(&cache).iter().any(|n| n.starts_with(".tmp-")),
        "the dead writer's leftover was not removed"
    );
    let layer = ls(&cache)
        .into_iter()
        .find(|n| n.starts_with("layer-"))
        .expect("a layer index");
    let mut damaged = fs::read(cache.join(&layer)).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    fs::write(cache.join(&layer), &damaged).unwrap();
    let _ = kill_during_cache_write(&cache);
    assert_eq!(
        fs::read(cache.join(&layer)).unwrap(),
        damaged,
        "the old file was changed in place"
    );

    let d = Daemon::start(
        &hostile_fixtures().join("layers"),
        &["-v", "--cache-dir", &cache.display().to_string()],
    );
    let names: BTreeSet<OsString> = fs::read_dir(d.path("images/wide/rootfs/wide"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 100_000);
    assert_eq!(fs::read(d.path("images/wide/rootfs/after-wide")).unwrap(), b"after\n");
    let log = d.log_text();
    assert!(log.contains("corrupt"), "the damaged file was not noticed:\n{log}");
    drop(d);
    for n in ls(&cache) {
        assert!(!n.starts_with(".tmp-"), "leftover {n}");
        assert_whole_cache_file(&cache.join(n));
    }
}

// ------------------------------------------------------------------------------------------------
// The source changing under the mount
// ------------------------------------------------------------------------------------------------

/// Reads every file of the load rootfs: (right, EIO); any other error or wrong bytes panics.
fn read_all_files(root: &Path) -> (usize, usize) {
    let (mut right, mut eio) = (0, 0);
    for (rel, sum) in &expected().sums {
        let p = root.join(rel);
        match fs::File::open(&p).and_then(|mut f| sha256_reader(&mut f)) {
            Ok(s) => {
                assert_eq!(&s, sum, "{}: wrong bytes served", rel.display());
                right += 1;
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) => eio += 1,
            Err(e) => panic!("{}: {e} (want the right bytes or EIO)", rel.display()),
        }
    }
    (right, eio)
}

/// The source (an oci-archive of the load image, and the layout directory itself) rewritten in
/// place, truncated, deleted or replaced while mounted: reads that reach it fail with EIO and a
/// log line saying what changed; what was read before stays right; the daemon lives on.
#[test]
fn source_changed_while_mounted() {
    require(&["tar"]);
    let tmp = tempdir();
    let layout = hostile_fixtures().join("load");
    let archive = tmp.path().join("load.tar");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
        CMD_TIMEOUT,
    )
    .assert_ok();
    let copy = tmp.path().join("layout");
    run(Command::new("cp").arg("-a").arg(&layout).arg(&copy), CMD_TIMEOUT).assert_ok();
    let biggest_blob = |dir: &Path| {
        fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap()
    };
    let overwrite = |p: &Path| {
        let f = fs::OpenOptions::new().write(true).open(p).unwrap();
        let len = f.metadata().unwrap().len();
        f.write_all_at(&vec![0x5a; (len / 2) as usize], len / 4).unwrap();
    };
    let truncate = |p: &Path| {
        let f = fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    };
    let delete = |p: &Path| fs::remove_file(p).unwrap();
    let replace = |p: &Path| {
        let new = p.with_extension("new");
        fs::copy(p, &new).unwrap();
        fs::rename(&new, p).unwrap();
    };
    type Change<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);
    let changes: [Change; 4] = [
        ("rewritten", &overwrite, "was modified since it was opened"),
        ("truncated", &truncate, "changed size from"),
        ("deleted", &delete, "was deleted or replaced"),
        ("replaced", &replace, "was deleted or replaced"),
    ];
    // One cache for all the mounts: each layer is indexed once, the later mounts read no layer.
    let cache = tmp.path().join("cache").display().to_string();
    for (kind, source, victim) in [
        ("archive", archive.clone(), archive.clone()),
        ("directory", copy.clone(), biggest_blob(&copy)),
    ] {
        for (what, change, message) in changes {
            let saved = tmp.path().join("saved");
            fs::copy(&victim, &saved).unwrap();
            let d = Daemon::start(&source, &["--cache-dir", &cache]);
            let root = rootfs(&d);
            op_list(&root, expected()).unwrap_or_else(|_| panic!("{kind}: listing failed"));
            let early = root.join("small/d2/f05");
            let early_bytes = fs::read(&early).unwrap();
            change(&victim);
            let (right, eio) = read_all_files(&root);
            assert!(eio > 0, "{kind} {what}: no read failed ({right} right)");
            assert_eq!(
                fs::read(&early).unwrap(),
                early_bytes,
                "{kind} {what}: a file read before changed"
            );
            let log = d.log_text();
            let name = victim.display().to_string();
            assert!(
                log.lines()
                    .any(|l| l.contains("ERROR") && l.contains(&name) && l.contains(message)),
                "{kind} {what}: no log line with {name} and {message:?}:\n{log}"
            );
            assert!(process_alive(d.pid()), "{kind} {what}: the daemon died");
            assert_eq!(
                fs::read(d.path("oci-layout")).unwrap(),
                fs::read(layout.join("oci-layout")).unwrap()
            );
            eprintln!("source {kind} {what}: {right} files right (cached, or in untouched files), {eio} EIO");
            drop(d);
            let _ = fs::remove_file(&victim);
            fs::rename(&saved, &victim).unwrap();
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Full disk
// ------------------------------------------------------------------------------------------------

/// A 64 KiB tmpfs as the cache directory: the mount works without the cache, warns once per
/// file it cannot write, leaves no partial file, and mounts again from the same directory.
#[test]
fn full_cache_disk_mounts_without_the_cache() {
    let fs64 = Tmpfs::new("64k");
    let cache = fs64.dir.display().to_string();
    for round in 0..2 {
        let d = Daemon::start(&hostile_fixtures().join("layers"), &["-v", "--cache-dir", &cache]);
        let names = fs::read_dir(d.path("images/wide/rootfs/wide")).unwrap().count();
        assert_eq!(names, 100_000, "round {round}");
        assert_eq!(
            fs::read(d.path("images/healthy/rootfs/hello")).unwrap(),
            b"hello from a healthy image\n"
        );
        let log = d.log_text();
        assert_logged(
            &log,
            &[
                "WARN",
                "cannot write cache file",
                "No space left on device",
                "continuing without it",
            ],
        );
        assert!(!log.contains("ERROR"), "round {round}:\n{log}");
        drop(d);
        for n in ls(&fs64.dir) {
            assert!(
                !n.starts_with(".tmp-"),
                "round {round}: partial file {n} left on the full disk"
            );
            assert_whole_cache_file(&fs64.dir.join(n));
        }
    }
}

/// Log lines that contain every one of `needles` must exist.
fn assert_logged(log: &str, needles: &[&str]) {
    assert!(
        log.lines().any(|l| needles.iter().all(|n| l.contains(n))),
        "no log line with {needles:?} in:\n{log}"
    );
}
