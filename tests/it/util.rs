//! Shared helpers of the integration tests: fixtures, mounts, commands with timeouts, hashing,
//! tree dumps, and reading a source's own bytes (directories and tars, gzip or not).

#![allow(dead_code)]

use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long `imgfs mount` may take before a test calls it hung.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failing `imgfs mount` may take: errors must come quickly.
pub const ERROR_TIMEOUT: Duration = Duration::from_secs(15);
/// Default for other commands (skopeo, umoci...).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

pub const INSTALL_HINT: &str = "run scripts/install-deps.sh (as root) to install the test tools";

/// The binary under test.
pub fn imgfs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_imgfs"))
}

pub fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Is `name` an executable on PATH (or an absolute path that exists)?
pub fn cmd_exists(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).exists();
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        let p = d.join(name);
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Fail (never skip) when a tool a test needs is missing.
pub fn require(tools: &[&str]) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !cmd_exists(t)).collect();
    assert!(missing.is_empty(), "missing test tools {missing:?}: {INSTALL_HINT}");
}

// ------------------------------------------------------------------------------------------------
// Fixtures
// ------------------------------------------------------------------------------------------------

static FIXTURES: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The fixture directory, built once per test run by tests/fixtures/make-images.sh into
/// `<target>/test-fixtures` (the script caches its output across runs).
pub fn fixtures() -> &'static Path {
    match FIXTURES.get_or_init(build_fixtures) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn build_fixtures() -> Result<PathBuf, String> {
    let tools = [
        "umoci",
        "skopeo",
        "jq",
        "python3",
        "tar",
        "gzip",
        "flock",
        "sha256sum",
        "/bin/busybox",
    ];
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !cmd_exists(t)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "cannot build test fixtures, missing tools {missing:?}: {INSTALL_HINT}"
        ));
    }
    // <target>/<profile>/imgfs -> <target>/test-fixtures
    let target = imgfs()
        .parent()
        .and_then(Path::parent)
        .expect("binary lives in target/<profile>/");
    let out = target.join("test-fixtures");
    let script = crate_root().join("tests/fixtures/make-images.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&out);
    let r = run(&mut cmd, Duration::from_secs(300));
    if !r.ok() {
        return Err(format!(
            "tests/fixtures/make-images.sh {} failed ({}):\n{}\n{}\n(if a tool is missing: {INSTALL_HINT})",
            out.display(),
            r.describe(),
            r.stdout_str(),
            r.stderr_str()
        ));
    }
    if !r.stdout.is_empty() {
        eprintln!("{}", r.stdout_str());
    }
    Ok(out)
}

/// A fixture path (relative to the fixture directory).
pub fn fx(rel: &str) -> PathBuf {
    fixtures().join(rel)
}

/// A fixture that may have been skipped by make-images.sh (Docker/containerd not startable):
/// fails the test with the recorded reason.
pub fn fx_required(rel: &str) -> PathBuf {
    let p = fx(rel);
    if !p.exists() {
        let skipped = fs::read_to_string(fx("SKIPPED")).unwrap_or_default();
        let why = skipped
            .lines()
            .find(|l| l.split('\t').next() == Some(rel))
            .and_then(|l| l.split('\t').nth(1))
            .unwrap_or("not recorded in SKIPPED");
        panic!("fixture {rel} was not made: {why} ({INSTALL_HINT})");
    }
    p
}

/// Facts written by make-images.sh (expected.env).
pub fn expected() -> &'static HashMap<String, String> {
    static E: OnceLock<HashMap<String, String>> = OnceLock::new();
    E.get_or_init(|| {
        let text = fs::read_to_string(fx("expected.env")).expect("expected.env");
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

pub fn expect(key: &str) -> &'static str {
    expected()
        .get(key)
        .unwrap_or_else(|| panic!("expected.env has no {key}"))
}

/// A small xorshift generator: tests need no more than a seeded sequence.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The 1 MiB pseudo-random file of the fixtures: sha256(SEED || u64le(i)) for i = 0, 1, ...
pub fn random_bytes() -> Vec<u8> {
    let seed = expect("RANDOM_SEED").as_bytes();
    let mut out = Vec::with_capacity(1 << 20);
    let mut i: u64 = 0;
    while out.len() < 1 << 20 {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(i.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(1 << 20);
    out
}

/// Real fixtures collected from other projects (see shared/fixtures/SOURCES.md).
pub fn shared_fixtures() -> PathBuf {
    let p = match std::env::var_os("IMGFS_SHARED_FIXTURES") {
        Some(v) => PathBuf::from(v),
        None => crate_root().join("../shared/fixtures"),
    };
    assert!(
        p.join("SOURCES.md").is_file(),
        "shared fixtures not found at {} (set IMGFS_SHARED_FIXTURES to the folder holding SOURCES.md)",
        p.display()
    );
    p
}

// ------------------------------------------------------------------------------------------------
// Commands
// ------------------------------------------------------------------------------------------------

/// What a finished (or killed) command gave.
pub struct Outcome {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub what: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn describe(&self) -> String {
        if self.timed_out {
            format!("`{}` timed out after {:?}", self.what, self.elapsed)
        } else {
            format!("`{}` exited with {:?}", self.what, self.status)
        }
    }
    /// Panics with the command's output unless it succeeded.
    pub fn assert_ok(self) -> Self {
        assert!(
            self.ok(),
            "{}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.describe(),
            self.stdout_str(),
            self.stderr_str()
        );
        self
    }
}

/// Runs a command with a time limit. Output goes to files, not pipes, so a daemon that the
/// command leaves behind (imgfs mount) cannot keep us waiting for EOF.
pub fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut out = tempfile::tempfile().expect("tempfile");
    let mut err = tempfile::tempfile().expect("tempfile");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .env_remove("RUST_LOG");
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run `{what}`: {e} ({INSTALL_HINT} if it is a test tool)"),
    };
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(s) => break Some(s),
            None if start.elapsed() > timeout => {
                timed_out = true;
                let _ = child.kill(); // by PID
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let elapsed = start.elapsed();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    out.seek(SeekFrom::Start(0)).unwrap();
    out.read_to_end(&mut stdout).unwrap();
    err.seek(SeekFrom::Start(0)).unwrap();
    err.read_to_end(&mut stderr).unwrap();
    Outcome {
        status,
        stdout,
        stderr,
        timed_out,
        elapsed,
        what,
    }
}

/// `imgfs ARGS...`
pub fn imgfs_cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(imgfs());
    c.args(args);
    c
}

/// Runs skopeo with `args` (within [`CMD_TIMEOUT`]), which must succeed.
pub fn skopeo(args: &[&str]) -> Outcome {
    require(&["skopeo"]);
    run(Command::new("skopeo").args(args), CMD_TIMEOUT).assert_ok()
}

pub fn run_imgfs<I, S>(args: I, timeout: Duration) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&mut imgfs_cmd(args), timeout)
}

/// Stderr must never carry a Rust panic.
pub fn assert_no_panic(o: &Outcome) {
    for (name, text) in [("stderr", o.stderr_str()), ("stdout", o.stdout_str())] {
        assert!(
            !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
            "`{}` panicked ({name}):\n{text}",
            o.what
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Mounts
// ------------------------------------------------------------------------------------------------

/// One entry of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub mount_options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    pub super_options: Vec<String>,
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mountinfo() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                mount_point: PathBuf::from(unescape_mountinfo(l.get(4)?)),
                mount_options: l.get(5)?.split(',').map(str::to_owned).collect(),
                fs_type: r.first()?.to_string(),
                source: unescape_mountinfo(r.get(1).unwrap_or(&"")),
                super_options: r.get(2).unwrap_or(&"").split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// The topmost mount at `dir`, if any.
pub fn mount_at(dir: &Path) -> Option<MountInfo> {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    mountinfo().into_iter().rev().find(|m| m.mount_point == dir)
}

pub fn is_mounted(dir: &Path) -> bool {
    mount_at(dir).is_some()
}

/// Last-resort cleanup of a mount a test made or imgfs left behind.
pub fn force_unmount(dir: &Path) {
    for _ in 0..4 {
        if !is_mounted(dir) {
            return;
        }
        let _ = run(
            Command::new("fusermount3").arg("-u").arg("-z").arg(dir),
            Duration::from_secs(10),
        );
        if is_mounted(dir) {
            let _ = run(Command::new("umount").arg("-l").arg(dir), Duration::from_secs(10));
        }
    }
}

/// A fresh, unique, empty directory (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("imgfs-it-").tempdir().expect("tempdir")
}

/// `imgfs mount SRC DIR`, unmounted on drop (imgfs umount, else fusermount3 -u -z), after which
/// nothing may be left mounted there.
pub struct Mount {
    pub source: String,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mount {
    /// Mounts or panics with imgfs's own message.
    pub fn new(source: impl AsRef<OsStr>) -> Mount {
        Self::with_args(source, &[])
    }

    pub fn with_args(source: impl AsRef<OsStr>, extra: &[&str]) -> Mount {
        match Self::try_with_args(source.as_ref(), extra) {
            Ok(m) => m,
            Err(o) => panic!(
                "imgfs mount {} failed: {}\n--- stderr:\n{}\n--- stdout:\n{}",
                source.as_ref().to_string_lossy(),
                o.describe(),
                o.stderr_str(),
                o.stdout_str()
            ),
        }
    }

    pub fn try_new(source: impl AsRef<OsStr>) -> Result<Mount, Outcome> {
        Self::try_with_args(source.as_ref(), &[])
    }

    fn try_with_args(source: &OsStr, extra: &[&str]) -> Result<Mount, Outcome> {
        let tmp = tempdir();
        let dir = fs::canonicalize(tmp.path()).unwrap().join("mnt");
        fs::create_dir(&dir).unwrap();
        let mut cmd = imgfs_cmd(["mount".as_ref(), source, dir.as_os_str()]);
        cmd.args(extra);
        let o = run(&mut cmd, MOUNT_TIMEOUT);
        assert_no_panic(&o);
        if !o.ok() {
            force_unmount(&dir);
            return Err(o);
        }
        if !is_mounted(&dir) {
            panic!(
                "`{}` succeeded but nothing is mounted at {} (the command must return only once the \
                 mount is ready)\n--- stderr:\n{}",
                o.what,
                dir.display(),
                o.stderr_str()
            );
        }
        Ok(Mount {
            source: source.to_string_lossy().into_owned(),
            dir,
            _tmp: tmp,
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(rel)
        }
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        let p = self.path(rel);
        fs::read(&p).unwrap_or_else(|e| panic!("read {} (mount of {}): {e}", p.display(), self.source))
    }

    pub fn json(&self, rel: &str) -> serde_json::Value {
        let b = self.read(rel);
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{rel} in the mount of {} is not JSON: {e}", self.source))
    }

    pub fn ls(&self, rel: &str) -> BTreeSet<String> {
        ls(&self.path(rel))
    }
}

/// `imgfs umount DIR`, tried again for up to 2 s while it fails with EBUSY: a umount can meet
/// EBUSY for a moment when another test thread forks while this one has a file of the mount
/// open (the child holds a copy of the descriptor until it execs).
pub fn imgfs_umount(dir: &Path) -> Outcome {
    let mut o = run(&mut imgfs_cmd(["umount".as_ref(), dir.as_os_str()]), MOUNT_TIMEOUT);
    for _ in 0..20 {
        if o.ok() || !is_mounted(dir) || !o.stderr_str().to_lowercase().contains("busy") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        o = run(&mut imgfs_cmd(["umount".as_ref(), dir.as_os_str()]), MOUNT_TIMEOUT);
    }
    o
}

impl Drop for Mount {
    fn drop(&mut self) {
        let o = imgfs_umount(&self.dir);
        if !o.ok() {
            eprintln!(
                "warning: imgfs umount {} failed ({}): {}; falling back to fusermount3 -u -z",
                self.dir.display(),
                o.describe(),
                o.stderr_str().trim()
            );
            force_unmount(&self.dir);
        }
        let left = is_mounted(&self.dir);
        if std::thread::panicking() {
            if left {
                eprintln!("warning: {} is still mounted", self.dir.display());
            }
            return;
        }
        assert_no_panic(&o);
        assert!(
            !left,
            "{} is still mounted after imgfs umount and fusermount3 -u -z",
            self.dir.display()
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Files
// ------------------------------------------------------------------------------------------------

pub fn sha256_bytes(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// sha256 of the full read of a file, streamed.
pub fn sha256_file(p: &Path) -> String {
    let mut f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    sha256_reader(&mut f).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub fn sha256_reader(r: &mut dyn Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// sha256 of a blob's uncompressed stream (gzip and zstd detected by magic bytes), using the
/// system's gzip/zstd so the test does not share decoders with imgfs.
pub fn sha256_uncompressed(p: &Path) -> String {
    let mut head = [0u8; 4];
    let n = File::open(p).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    let tool = if n >= 2 && head[..2] == [0x1f, 0x8b] {
        Some("gzip")
    } else if n >= 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
        Some("zstd")
    } else {
        None
    };
    match tool {
        None => sha256_file(p),
        Some(t) => {
            require(&[t]);
            let mut child = Command::new(t)
                .arg("-dc")
                .arg(p)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{t}: {e}"));
            let sum = sha256_reader(child.stdout.as_mut().unwrap()).expect("read decompressor");
            let st = child.wait().unwrap();
            assert!(st.success(), "{t} -dc {} failed", p.display());
            sum
        }
    }
}

/// Names in a directory.
pub fn ls(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn type_char(ft: &fs::FileType) -> char {
    if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_file() {
        'f'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else {
        '?'
    }
}

/// Every path under `dir` (relative, the root itself is ""), without following symlinks.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    walk_with(dir, &|_| true)
}

/// Like `walk`, descending only into the directories `descend` accepts (by relative path).
pub fn walk_with(dir: &Path, descend: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    fn rec(root: &Path, rel: &Path, out: &mut Vec<PathBuf>, descend: &dyn Fn(&Path) -> bool) {
        out.push(rel.to_path_buf());
        let p = root.join(rel);
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        if md.is_dir() && descend(rel) {
            let mut names: Vec<_> = fs::read_dir(&p)
                .unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()))
                .map(|e| e.unwrap_or_else(|e| panic!("readdir {}: {e}", p.display())).file_name())
                .collect();
            names.sort();
            for n in names {
                rec(root, &rel.join(n), out, descend);
            }
        }
    }
    let mut out = Vec::new();
    rec(dir, Path::new(""), &mut out, descend);
    out
}

/// The metadata part of a mount: everything but the contents of the filesystem views
/// (`rootfs/`, `layers/` and `overlay/` beside a manifest.json).
pub fn walk_metadata(mnt: &Path) -> Vec<PathBuf> {
    walk_with(mnt, &|rel| {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_view = (name == "rootfs" || name == "layers" || name == "overlay")
            && rel
                .parent()
                .map(|p| mnt.join(p).join("manifest.json").is_file())
                .unwrap_or(false);
        !is_view
    })
}

/// The canonical text dump of a tree by tests/fixtures/edge/treedump.py (`args`: its options).
pub fn treedump(dir: &Path, args: &[&str]) -> String {
    let script = crate_root().join("tests/fixtures/edge/treedump.py");
    let o = run(
        Command::new("python3").arg(&script).arg(dir).args(args),
        Duration::from_secs(300),
    );
    assert!(
        o.ok(),
        "treedump {} failed: {}\n{}",
        dir.display(),
        o.describe(),
        o.stderr_str()
    );
    o.stdout_str()
}

/// Two dumps must be equal; otherwise the panic lists the lines only one side has, each side
/// named by `names` (`want`'s first).
pub fn assert_same_dump(what: &str, got: &str, want: &str, names: [&str; 2]) {
    if got == want {
        return;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let missing: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).collect();
    let extra: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).collect();
    let [want_name, got_name] = names;
    panic!("{what}\n--- only in {want_name}:\n{missing:#?}\n--- only in {got_name}:\n{extra:#?}");
}

/// One sorted line per path: `path type mode size sha256|target` (directory sizes are left out:
/// they depend on the file system).
pub fn tree_dump(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = walk(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let ft = md.file_type();
            let t = type_char(&ft);
            let mode = md.mode() & 0o7777;
            let (size, extra) = match t {
                'f' => (md.len().to_string(), sha256_file(&p)),
                'l' => (
                    md.len().to_string(),
                    fs::read_link(&p).unwrap().to_string_lossy().into_owned(),
                ),
                'c' | 'b' => (
                    "-".into(),
                    format!("{}:{}", libc_major(md.rdev()), libc_minor(md.rdev())),
                ),
                _ => ("-".into(), String::new()),
            };
            format!("/{} {t} {mode:04o} {size} {extra}", rel.display())
        })
        .collect();
    lines.sort();
    lines
}

fn libc_major(d: u64) -> u64 {
    ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)
}
fn libc_minor(d: u64) -> u64 {
    ((d >> 12) & 0xffff_ff00) | (d & 0xff)
}

/// Shows the differences of two tree dumps (for assertion messages).
pub fn dump_diff(a: &[String], b: &[String]) -> String {
    let sa: BTreeSet<&String> = a.iter().collect();
    let sb: BTreeSet<&String> = b.iter().collect();
    let mut s = String::new();
    for l in sa.difference(&sb) {
        s += &format!("- {l}\n");
    }
    for l in sb.difference(&sa) {
        s += &format!("+ {l}\n");
    }
    s
}

// ------------------------------------------------------------------------------------------------
// Sources' own bytes
// ------------------------------------------------------------------------------------------------

/// The members of a (possibly gzip-compressed) tar, by normalized name (no leading `./`).
/// Symlink members are recorded with their target in `links`.
pub struct Archive {
    pub files: BTreeMap<String, Vec<u8>>,
    pub links: BTreeMap<String, String>,
}

pub fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

pub fn read_archive(path: &Path) -> Archive {
    let raw = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let data = if raw.starts_with(&[0x1f, 0x8b]) {
        require(&["gzip"]);
        let o = run(Command::new("gzip").arg("-dc").arg(path), CMD_TIMEOUT).assert_ok();
        o.stdout
    } else {
        raw
    };
    let mut ar = tar::Archive::new(std::io::Cursor::new(data));
    let mut files = BTreeMap::new();
    let mut links = BTreeMap::new();
    for e in ar.entries().expect("tar entries") {
        let mut e = e.unwrap_or_else(|err| panic!("tar {}: {err}", path.display()));
        let name = normalize(&String::from_utf8_lossy(&e.path_bytes()));
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                files.insert(name, b);
            }
            tar::EntryType::Symlink => {
                let t = e
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                links.insert(name, t);
            }
            _ => {}
        }
    }
    Archive { files, links }
}

impl Archive {
    /// A member's bytes, following symlink members (docker save links shared layers).
    pub fn get(&self, name: &str) -> Option<&Vec<u8>> {
        let mut name = normalize(name);
        for _ in 0..8 {
            if let Some(b) = self.files.get(&name) {
                return Some(b);
            }
            let t = self.links.get(&name)?;
            let base = Path::new(&name)
                .parent()
                .unwrap_or(Path::new(""))
                .to_string_lossy()
                .into_owned();
            name = if t.starts_with('/') {
                normalize(t)
            } else {
                normalize(&format!("{base}/{t}"))
            };
        }
        None
    }
}

/// Bytes of a file of a source that is either a directory or a tar.
pub enum SourceFiles {
    Dir(PathBuf),
    Tar(Archive),
}

impl SourceFiles {
    pub fn open(path: &Path) -> SourceFiles {
        if path.is_dir() {
            SourceFiles::Dir(path.to_path_buf())
        } else {
            SourceFiles::Tar(read_archive(path))
        }
    }
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        match self {
            SourceFiles::Dir(d) => fs::read(d.join(name)).ok(),
            SourceFiles::Tar(a) => a.get(name).cloned(),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Image documents
// ------------------------------------------------------------------------------------------------

/// The path of a ref under `images/` (docs/layout.md): its `docker images` name (`docker.io/`
/// and `docker.io/library/` left out) with `/` as directory levels; control bytes as `%XX`.
/// (Names with empty, `.` or `..` components and collisions are checked in tests/it/cli.rs.)
pub fn escape_ref(r: &str) -> String {
    let shown = match r.strip_prefix("docker.io/") {
        Some(rest) => match rest.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short,
            _ => rest,
        },
        None => r,
    };
    let mut s = String::new();
    for b in shown.bytes() {
        match b {
            0..=0x1f | 0x7f => s += &format!("%{b:02X}"),
            _ => s.push(b as char),
        }
    }
    s
}

/// The ref directories under a mount's `images/` (paths relative to it): the directories that
/// hold a `manifest.json` or an `index.json`, not looking inside them.
pub fn ref_dirs(m: &Mount) -> BTreeSet<String> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
        if dir.join("manifest.json").is_file() || dir.join("index.json").is_file() {
            out.insert(rel.to_owned());
            return;
        }
        for name in ls(dir) {
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            walk(&dir.join(&name), &child, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&m.path("images"), "", &mut out);
    out
}

pub fn digest_hex(d: &str) -> &str {
    d.strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {d}"))
}

/// Makes `layout` an empty OCI layout: its `oci-layout` file and `blobs/sha256/`.
pub fn start_layout(layout: &Path) {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Completes a one-image OCI layout whose layer blob (media type, digest, size) is already in
/// it: writes `config`, the one-layer manifest, and `index.json` naming it `ref_name`.
pub fn one_layer_image(layout: &Path, config: &serde_json::Value, layer: (&str, &str, u64), ref_name: &str) {
    let config = write_blob(layout, config.to_string().as_bytes());
    let manifest = one_layer_manifest((&config.0, config.1), layer);
    let (digest, size) = write_blob(layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": digest,
            "size": size,
            "annotations": { "org.opencontainers.image.ref.name": ref_name },
        }],
    });
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

/// Writes `bytes` as a blob of the OCI layout `layout` (its `blobs/sha256` must exist); returns
/// its digest and size.
pub fn write_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = sha256_bytes(bytes);
    fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// An OCI image manifest with one config (digest, size) and one layer (media type, digest, size).
pub fn one_layer_manifest(config: (&str, usize), layer: (&str, &str, u64)) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1,
        },
        "layers": [{"mediaType": layer.0, "digest": layer.1, "size": layer.2}],
    })
}

pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Is this descriptor (or the document it names) an index?
pub fn is_index(desc: &serde_json::Value, doc: Option<&serde_json::Value>) -> bool {
    let mt = desc["mediaType"].as_str().unwrap_or("");
    if mt == MT_INDEX || mt == MT_DOCKER_LIST {
        return true;
    }
    if let Some(d) = doc {
        if d["mediaType"].as_str() == Some(MT_INDEX) || d["mediaType"].as_str() == Some(MT_DOCKER_LIST) {
            return true;
        }
        if mt.is_empty() && d.get("manifests").is_some() && d.get("config").is_none() {
            return true;
        }
    }
    false
}

/// The digests reachable from a mount's index.json (indexes, manifests, configs, layers),
/// skipping non-distributable layers.
pub fn reachable(m: &Mount) -> BTreeSet<String> {
    fn visit(m: &Mount, desc: &serde_json::Value, out: &mut BTreeSet<String>, depth: usize) {
        let d = desc["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("descriptor without digest: {desc}"))
            .to_owned();
        if !out.insert(d.clone()) || depth > 8 {
            return;
        }
        let mt = desc["mediaType"].as_str().unwrap_or("");
        let is_doc = mt.is_empty() || mt.contains("manifest") || mt.contains("index");
        if !is_doc {
            return;
        }
        let p = m.path(&format!("blobs/sha256/{}", digest_hex(&d)));
        let Ok(b) = fs::read(&p) else { return };
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&b) else {
            return;
        };
        if let Some(ms) = doc["manifests"].as_array() {
            for c in ms {
                visit(m, c, out, depth + 1);
            }
        }
        if doc["config"].is_object() {
            out.insert(doc["config"]["digest"].as_str().unwrap().to_owned());
        }
        if let Some(ls) = doc["layers"].as_array() {
            for l in ls {
                let lmt = l["mediaType"].as_str().unwrap_or("");
                if lmt.contains("nondistributable") || lmt.contains("foreign") {
                    continue;
                }
                out.insert(l["digest"].as_str().unwrap().to_owned());
            }
        }
    }
    let idx = m.json("index.json");
    let mut out = BTreeSet::new();
    for d in idx["manifests"].as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
        visit(m, d, &mut out, 0);
    }
    out
}

/// Is this index.json entry an image (a manifest or an index), by media type (or none)?
pub fn is_image_entry(desc: &serde_json::Value) -> bool {
    let mt = desc["mediaType"].as_str().unwrap_or("");
    mt.is_empty()
        || mt == MT_INDEX
        || mt == MT_MANIFEST
        || mt == MT_DOCKER_LIST
        || mt == "application/vnd.docker.distribution.manifest.v2+json"
}

/// A ref directory name for an index.json entry: its ref name annotation, else its digest.
pub fn ref_dir_name(desc: &serde_json::Value) -> String {
    match desc["annotations"]["org.opencontainers.image.ref.name"].as_str() {
        Some(r) => escape_ref(r),
        None => desc["digest"].as_str().unwrap().to_owned(),
    }
}

/// Platform directory name `<os>-<arch>[-<variant>]`.
pub fn platform_dir(p: &serde_json::Value) -> Option<String> {
    let os = p["os"].as_str()?;
    let arch = p["architecture"].as_str()?;
    Some(match p["variant"].as_str() {
        Some(v) if !v.is_empty() => format!("{os}-{arch}-{v}"),
        _ => format!("{os}-{arch}"),
    })
}

/// Collects failures so one test reports every source that misbehaves.
#[derive(Default)]
pub struct Failures(pub Vec<String>);

impl Failures {
    pub fn check(&mut self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.0.push(msg());
        }
    }
    pub fn push(&mut self, msg: String) {
        self.0.push(msg);
    }
    pub fn assert_none(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} failure(s):\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Hostile corpus, daemons run in the foreground, memory, tmpfs (tests/it/hostile.rs, load.rs)
// ------------------------------------------------------------------------------------------------

/// The hostile corpus, security and load images, built once per run by
/// tests/fixtures/hostile/make-hostile.py into `<target>/test-fixtures-hostile` (cached).
pub fn hostile_fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require(&["python3", "zstd"]);
        let target = imgfs().parent().and_then(Path::parent).expect("target dir");
        let out = target.join("test-fixtures-hostile");
        let script = crate_root().join("tests/fixtures/hostile/make-hostile.py");
        let o = run(Command::new("python3").arg(&script).arg(&out), Duration::from_secs(300));
        assert!(
            o.ok(),
            "make-hostile.py failed: {}\n{}\n{}",
            o.describe(),
            o.stdout_str(),
            o.stderr_str()
        );
        out
    })
}

/// A fact recorded by make-hostile.py (facts.json).
pub fn hostile_fact(key: &str) -> serde_json::Value {
    static FACTS: OnceLock<serde_json::Value> = OnceLock::new();
    let facts = FACTS.get_or_init(|| {
        let text = fs::read(hostile_fixtures().join("facts.json")).expect("facts.json");
        serde_json::from_slice(&text).expect("facts.json is JSON")
    });
    let v = facts[key].clone();
    assert!(!v.is_null(), "facts.json has no {key}");
    v
}

/// Peak resident memory of a live process, from /proc/<pid>/status (VmHWM), in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// True while `pid` exists (and is not a zombie we could reap).
pub fn process_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

/// Sends a signal to one process, by PID.
pub fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a PID we started; no memory is shared.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

/// `imgfs mount -f SOURCE MNT ARGS...` run as a child of the test, so the daemon's PID is known
/// (for VmHWM, signals and its open files); stderr (the log) goes to `log`. On drop: imgfs umount
/// (lazy when busy), wait for the daemon to exit, SIGKILL it by PID if it does not, then
/// `fusermount3 -u -z` whatever is left; nothing may stay mounted.
pub struct Daemon {
    pub child: Option<std::process::Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub source: String,
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Mounts on a fresh directory; panics with the log when the mount fails.
    pub fn start(source: &Path, args: &[&str]) -> Daemon {
        let tmp = tempdir();
        let dir = fs::canonicalize(tmp.path()).unwrap().join("mnt");
        fs::create_dir(&dir).unwrap();
        let log = tmp.path().join("daemon.log");
        let mut d = Self::start_at(source, &dir, &log, args, None).unwrap_or_else(|e| panic!("{e}"));
        d._tmp = Some(tmp);
        d
    }

    /// Mounts on `dir` (which the caller owns), with the daemon's working directory `cwd`.
    pub fn start_at(
        source: &Path,
        dir: &Path,
        log: &Path,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> Result<Daemon, String> {
        let err = File::create(log).expect("log file");
        let mut cmd = imgfs_cmd(["mount".as_ref(), "-f".as_ref(), source.as_os_str(), dir.as_os_str()]);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .env_remove("RUST_LOG");
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().expect("spawn imgfs mount -f");
        let start = Instant::now();
        loop {
            if is_mounted(dir) {
                break;
            }
            if let Some(st) = child.try_wait().expect("wait") {
                let text = fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "imgfs mount -f {} exited ({st}) before mounting:\n{text}",
                    source.display()
                ));
            }
            if start.elapsed() > MOUNT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                force_unmount(dir);
                return Err(format!(
                    "imgfs mount -f {} did not mount within {MOUNT_TIMEOUT:?}",
                    source.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            source: source.display().to_string(),
            _tmp: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon child").id()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak RSS of the daemon so far, KiB.
    pub fn peak_kib(&self) -> u64 {
        vm_hwm_kib(self.pid())
    }

    /// Waits up to `timeout` for the daemon to exit; its status, or None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return Some(st);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to the daemon (by PID).
    pub fn signal(&self, sig: libc::c_int) {
        send_signal(self.pid(), sig);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if child.try_wait().ok().flatten().is_none() && is_mounted(&self.dir) {
            let o = imgfs_umount(&self.dir);
            if !o.ok() && is_mounted(&self.dir) {
                let _ = run(
                    &mut imgfs_cmd(["umount".as_ref(), "--lazy".as_ref(), self.dir.as_os_str()]),
                    MOUNT_TIMEOUT,
                );
            }
        }
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().ok().flatten().is_none() {
            eprintln!("warning: imgfs daemon {} did not exit; SIGKILL", child.id());
            let _ = child.kill(); // by PID
            let _ = child.wait();
        }
        force_unmount(&self.dir);
        if !std::thread::panicking() {
            assert!(!is_mounted(&self.dir), "{} is still mounted", self.dir.display());
        }
    }
}

/// A small tmpfs (`mount -t tmpfs -o size=SIZE`), unmounted on drop.
pub struct Tmpfs {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Tmpfs {
    pub fn new(size: &str) -> Tmpfs {
        let tmp = tempdir();
        let dir = fs::canonicalize(tmp.path()).unwrap().join("tmpfs");
        fs::create_dir(&dir).unwrap();
        let opt = format!("size={size},mode=0755");
        run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &opt, "tmpfs"])
                .arg(&dir),
            CMD_TIMEOUT,
        )
        .assert_ok();
        Tmpfs { dir, _tmp: tmp }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let o = run(Command::new("umount").arg(&self.dir), CMD_TIMEOUT);
        if !o.ok() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.dir), CMD_TIMEOUT);
        }
    }
}
