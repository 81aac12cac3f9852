//! Sharing mounts over NFS (issue 6), docs/nfs.md.
//!
//! - Kernel file handles, no NFS: `name_to_handle_at` on files and directories of a mounted image,
//!   `drop_caches`, `open_by_handle_at` gives the same file (what an NFS server does with the handles
//!   it hands out), and the same handles still resolve on a fresh mount of the same image.
//! - A real NFS server: NFS-Ganesha (scripts/nfs-server.sh, NFSv4 on 127.0.0.1 only) exports a mount;
//!   the libnfs client tools list and read it and must agree with `umoci unpack`; 8 readers in
//!   parallel; then imgfs is restarted under the running server (`imgfs umount -z`, `imgfs mount`,
//!   `scripts/nfs-server.sh reexport`) and reading goes on.
//! - One long-lived NFSv4 client (tests/it/nfs_client.c, built with `cc -lnfs`) holding a file
//!   open and a directory's handle across that restart: what survives, with the script's
//!   `fsid_type = Major64` and with Ganesha's default.
//! - `allow_other` / `default_permissions` as an unprivileged user.
//!
//! Everything runs as root (drop_caches, open_by_handle_at, setpriv) and against 127.0.0.1 only.

use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------------
// The edge-case image (tests/fixtures/edge), built into a directory of our own under a lock so that
// this module never races with another builder of the same fixture.
// ------------------------------------------------------------------------------------------------

fn edge() -> &'static Path {
    static EDGE: OnceLock<PathBuf> = OnceLock::new();
    EDGE.get_or_init(|| {
        require(&["umoci", "skopeo", "python3", "tar", "gzip", "flock"]);
        let target = imgfs().parent().and_then(Path::parent).expect("target dir");
        let out = target.join("test-fixtures-edge-nfs");
        let lock = target.join("test-fixtures-edge-nfs.lock");
        let script = crate_root().join("tests/fixtures/edge/make-edge-image.sh");
        let o = run(
            Command::new("flock").arg(&lock).arg("bash").arg(&script).arg(&out),
            Duration::from_secs(300),
        );
        assert!(
            o.ok(),
            "make-edge-image.sh failed: {}\n{}",
            o.describe(),
            o.stderr_str()
        );
        out
    })
}

/// The reference tree: `umoci unpack` of the edge image.
fn bundle_rootfs() -> PathBuf {
    edge().join("bundle/rootfs")
}

const DEEP_LEVELS: usize = 40;

/// `deep/d00/d01/.../d(n-1)`.
fn deep_dir(levels: usize) -> String {
    let mut s = String::from("deep");
    for i in 0..levels {
        s += &format!("/d{i:02}");
    }
    s
}

// ------------------------------------------------------------------------------------------------
// Kernel file handles
// ------------------------------------------------------------------------------------------------

const MAX_HANDLE: usize = libc::MAX_HANDLE_SZ as usize;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_HANDLE],
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct KHandle {
    htype: i32,
    bytes: Vec<u8>,
}

impl KHandle {
    /// FUSE encodes (nodeid, generation) as three 32-bit words (fs/fuse/inode.c, fuse_encode_fh):
    /// nodeid >> 32, nodeid & 0xffffffff, generation.
    fn fuse_nodeid_generation(&self) -> Option<(u64, u32)> {
        if self.bytes.len() < 12 {
            return None;
        }
        let w = |i: usize| u32::from_ne_bytes(self.bytes[i * 4..i * 4 + 4].try_into().unwrap());
        Some(((u64::from(w(0)) << 32) | u64::from(w(1)), w(2)))
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn name_to_handle(p: &Path) -> KHandle {
    let c = cstr(p);
    let mut raw = RawHandle {
        handle_bytes: MAX_HANDLE as libc::c_uint,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a file_handle header followed by MAX_HANDLE bytes, as handle_bytes says;
    // the path is NUL-terminated; both out-pointers are valid for writes.
    let r = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            c.as_ptr(),
            (&mut raw as *mut RawHandle).cast::<libc::file_handle>(),
            &mut mount_id,
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "name_to_handle_at {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    KHandle {
        htype: raw.handle_type,
        bytes: raw.f_handle[..raw.handle_bytes as usize].to_vec(),
    }
}

fn open_by_handle(mount_fd: &OwnedFd, h: &KHandle, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let mut raw = RawHandle {
        handle_bytes: h.bytes.len() as libc::c_uint,
        handle_type: h.htype,
        f_handle: [0; MAX_HANDLE],
    };
    raw.f_handle[..h.bytes.len()].copy_from_slice(&h.bytes);
    // SAFETY: `raw` is a valid file_handle of handle_bytes bytes; mount_fd is an open descriptor.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            (&mut raw as *mut RawHandle).cast::<libc::file_handle>(),
            flags | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// The mount's root directory, opened as the `mount_fd` of open_by_handle_at.
fn mount_fd(dir: &Path) -> OwnedFd {
    File::open(dir)
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
        .into()
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`: the kernel forgets the mount's dentries and inodes,
/// so a handle can only be resolved by asking imgfs (LOOKUP of the node id's ".").
fn drop_caches() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    fs::write("/proc/sys/vm/drop_caches", "3\n").expect("echo 3 > /proc/sys/vm/drop_caches (needs root)");
}

fn errno_name(e: &std::io::Error) -> String {
    let n = e.raw_os_error().unwrap_or(0);
    let name = match n {
        libc::ESTALE => "ESTALE",
        libc::ENOTDIR => "ENOTDIR",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        libc::EISDIR => "EISDIR",
        _ => "errno",
    };
    format!("{name} ({n}): {e}")
}

/// What one handle must resolve to.
struct Target {
    what: &'static str,
    rel: String,
    dir: bool,
    ino: u64,
    /// File bytes, or the sorted names of a directory.
    bytes: Vec<u8>,
    names: BTreeSet<String>,
    handle: KHandle,
}

fn describe_target(m: &Mount, what: &'static str, rel: &str) -> Target {
    let p = m.path(rel);
    let md = fs::metadata(&p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    let handle = name_to_handle(&p);
    let (bytes, names) = if md.is_dir() {
        (Vec::new(), ls(&p))
    } else {
        (
            fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())),
            BTreeSet::new(),
        )
    };
    Target {
        what,
        rel: rel.to_owned(),
        dir: md.is_dir(),
        ino: md.ino(),
        bytes,
        names,
        handle,
    }
}

/// Opens every target by its handle through `mfd` and checks it is the same file.
fn resolve_all(mfd: &OwnedFd, targets: &[Target], when: &str, fails: &mut Failures) {
    for t in targets {
        let flags = if t.dir {
            libc::O_RDONLY | libc::O_DIRECTORY
        } else {
            libc::O_RDONLY
        };
        let fd = match open_by_handle(mfd, &t.handle, flags) {
            Ok(fd) => fd,
            Err(e) => {
                fails.push(format!(
                    "{when}: {} {} (inode {}): open_by_handle_at failed with {}",
                    t.what,
                    t.rel,
                    t.ino,
                    errno_name(&e)
                ));
                continue;
            }
        };
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let mut f = File::from(fd);
        let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
        fails.check(ino == t.ino, || {
            format!(
                "{when}: {} {}: handle opened inode {ino}, want {}",
                t.what, t.rel, t.ino
            )
        });
        if t.dir {
            let names: BTreeSet<String> = fs::read_dir(&proc_path)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            fails.check(names == t.names, || {
                format!(
                    "{when}: {} {}: directory opened by handle lists {names:?}, want {:?}",
                    t.what, t.rel, t.names
                )
            });
        } else {
            let mut got = Vec::new();
            match f.read_to_end(&mut got) {
                Ok(_) => fails.check(got == t.bytes, || {
                    format!(
                        "{when}: {} {}: read {} bytes (sha256 {}) through the handle, want {} bytes (sha256 {})",
                        t.what,
                        t.rel,
                        got.len(),
                        sha256_bytes(&got),
                        t.bytes.len(),
                        sha256_bytes(&t.bytes)
                    )
                }),
                Err(e) => fails.push(format!("{when}: {} {}: read through the handle: {e}", t.what, t.rel)),
            }
        }
    }
}

/// What an NFS server relies on, without one: handles of files and directories (in views and in
/// the static tree) resolve after the kernel dropped its caches, and again on a fresh mount of the
/// same image (same inode numbers = same FUSE node ids, and generation 0).
#[test]
fn kernel_file_handles_survive_drop_caches_and_remount() {
    let source = edge().join("oci");
    let deep_leaf = format!("images/edge/rootfs/{}/leaf", deep_dir(DEEP_LEVELS));
    let deep_mid = format!("images/edge/rootfs/{}", deep_dir(21));
    let m1 = Mount::new(&source);
    let manifest = m1.json("images/edge/manifest.json");
    let layer0 = digest_hex(manifest["layers"][0]["digest"].as_str().expect("layer digest")).to_owned();
    let specs: Vec<(&'static str, String)> = vec![
        ("file 42 levels deep in rootfs", deep_leaf),
        ("3 MiB file in rootfs", "images/edge/rootfs/data/big".into()),
        ("0600 file in rootfs", "images/edge/rootfs/etc/keep".into()),
        ("file in a layer view", "images/edge/layers/0/etc/hello".into()),
        ("directory 22 levels deep in rootfs", deep_mid),
        ("directory in rootfs", "images/edge/rootfs/etc".into()),
        ("rootfs itself", "images/edge/rootfs".into()),
        ("layer blob (static file)", format!("blobs/sha256/{layer0}")),
        ("manifest.json (static file)", "images/edge/manifest.json".into()),
        ("blobs/sha256 (static directory)", "blobs/sha256".into()),
    ];
    let targets: Vec<Target> = specs.iter().map(|(w, rel)| describe_target(&m1, w, rel)).collect();
    let mut fails = Failures::default();
    for t in &targets {
        match t.handle.fuse_nodeid_generation() {
            Some((nodeid, generation)) => fails.check(nodeid == t.ino && generation == 0, || {
                format!(
                    "{} {}: handle (type {:#x}) holds node id {nodeid} generation {generation}, \
                         want the inode number {} and generation 0",
                    t.what, t.rel, t.handle.htype, t.ino
                )
            }),
            None => fails.push(format!("{} {}: short handle {:?}", t.what, t.rel, t.handle)),
        }
    }
    fails.check(targets.iter().any(|t| t.ino > 1 << 32), || {
        "no target is inside a view (inode > 2^32)".into()
    });

    // 1. Same mount, caches dropped: the kernel has to ask imgfs.
    {
        let mfd = mount_fd(&m1.dir);
        drop_caches();
        resolve_all(&mfd, &targets, "after drop_caches", &mut fails);
    }
    drop(m1);

    // 2. A fresh mount of the same image: the old handles, the new mount's root as mount_fd,
    //    before anything below the root was looked up on the new mount.
    let m2 = Mount::new(&source);
    {
        let mfd = mount_fd(&m2.dir);
        drop_caches();
        resolve_all(&mfd, &targets, "on a new mount", &mut fails);
    }
    // And the new mount hands out the very same handles.
    for t in &targets {
        let h = name_to_handle(&m2.path(&t.rel));
        fails.check(h == t.handle, || {
            format!(
                "{} {}: handle on the new mount {:?} differs from {:?}",
                t.what, t.rel, h, t.handle
            )
        });
    }
    eprintln!(
        "kernel handles: {} targets ({} directories, {} bytes of files) checked after drop_caches and on a remount",
        targets.len(),
        targets.iter().filter(|t| t.dir).count(),
        targets.iter().map(|t| t.bytes.len()).sum::<usize>()
    );
    fails.assert_none("file handles of an imgfs mount");
}

// ------------------------------------------------------------------------------------------------
// NFS-Ganesha + libnfs
// ------------------------------------------------------------------------------------------------

const NFS_TOOLS: &[&str] = &["ganesha.nfsd", "nfs-ls", "nfs-cat", "nfs-cp", "bash"];
/// How long the parallel readers run before the restart.
const READ_PHASE: Duration = Duration::from_secs(30);
/// How long they go on after the restart.
const AFTER_RESTART: Duration = Duration::from_secs(6);
const READERS: usize = 8;
const NFS_CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// An NFS-Ganesha server started by scripts/nfs-server.sh; stopped on drop. `start`/`stop` take
/// `&self` so the server can be restarted while reader threads share it.
struct Ganesha {
    state: tempfile::TempDir,
    export: PathBuf,
    port: u16,
    /// Environment for scripts/nfs-server.sh start (FSID_TYPE...).
    env: Vec<(&'static str, String)>,
    pid: Mutex<Option<u32>>,
}

impl Ganesha {
    fn new(export: &Path, port: u16) -> Ganesha {
        Self::with_env(export, port, &[])
    }

    fn with_env(export: &Path, port: u16, env: &[(&'static str, &str)]) -> Ganesha {
        let g = Ganesha {
            state: tempdir(),
            export: export.to_path_buf(),
            port,
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            pid: Mutex::new(None),
        };
        g.start();
        g
    }

    fn script() -> PathBuf {
        crate_root().join("scripts/nfs-server.sh")
    }

    /// `nfs-server.sh start EXPORT PORT STATE`; panics with the server's log unless it listens.
    fn start(&self) {
        let mut slot = self.pid.lock().unwrap();
        assert!(slot.is_none(), "ganesha already running");
        let o = run(
            Command::new("bash")
                .arg(Self::script())
                .arg("start")
                .arg(&self.export)
                .arg(self.port.to_string())
                .arg(self.state.path())
                .envs(self.env.iter().map(|(k, v)| (k, v))),
            Duration::from_secs(60),
        );
        let pid = o
            .stdout_str()
            .trim()
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<u32>().ok());
        // Record the PID before asserting, so Drop stops whatever did start.
        *slot = pid;
        drop(slot);
        assert!(
            o.ok() && pid.is_some(),
            "scripts/nfs-server.sh start failed: {}\n{}\n{}\n--- ganesha log:\n{}",
            o.describe(),
            o.stdout_str(),
            o.stderr_str(),
            self.log_tail()
        );
    }

    /// The server's PID.
    fn pid(&self) -> Option<u32> {
        *self.pid.lock().unwrap()
    }

    /// `nfs-server.sh reexport STATE`: the running server drops its export and makes it again.
    fn reexport(&self) {
        let o = run(
            Command::new("bash")
                .arg(Self::script())
                .arg("reexport")
                .arg(self.state.path()),
            Duration::from_secs(60),
        );
        assert!(
            o.ok(),
            "scripts/nfs-server.sh reexport failed: {} {}\n--- ganesha log:\n{}",
            o.describe(),
            o.stderr_str(),
            self.log_tail()
        );
    }

    /// `nfs-server.sh stop STATE`; true when the server is gone. Kills it by PID if the script
    /// could not stop it.
    fn stop(&self) -> Result<(), String> {
        let Some(pid) = self.pid.lock().unwrap().take() else {
            return Ok(());
        };
        let o = run(
            Command::new("bash")
                .arg(Self::script())
                .arg("stop")
                .arg(self.state.path()),
            Duration::from_secs(60),
        );
        let alive = || Path::new(&format!("/proc/{pid}")).exists();
        if o.ok() && !alive() {
            return Ok(());
        }
        let why = format!("nfs-server.sh stop: {} {}", o.describe(), o.stderr_str().trim());
        eprintln!("warning: {why}; killing ganesha {pid}");
        // SAFETY: kill(2) of the server this guard started, by its PID.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let t = Instant::now();
        while alive() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(why)
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.state.path().join("ganesha.log")).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains(":DBUS :") && !l.contains("krb5") && !l.contains("keytab"))
            .collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// `nfs://127.0.0.1/img/REL?version=4&nfsport=PORT[&EXTRA]`
    fn url(&self, rel: &str, extra: &str) -> String {
        let rel = rel.trim_matches('/');
        let path = if rel.is_empty() {
            "/img".to_owned()
        } else {
            format!("/img/{rel}")
        };
        format!("nfs://127.0.0.1{path}?version=4&nfsport={}{extra}", self.port)
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn nfs_cat(g: &Ganesha, rel: &str, extra: &str) -> Outcome {
    run(Command::new("nfs-cat").arg(g.url(rel, extra)), NFS_CMD_TIMEOUT)
}

/// One line of nfs-ls: `-rw-r--r--  1  uid  gid  size name`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LsEntry {
    mode: String,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
}

fn parse_ls_line(line: &str) -> Option<(String, LsEntry)> {
    let mut rest = line;
    let mut fields = Vec::new();
    for _ in 0..5 {
        rest = rest.trim_start();
        let end = rest.find(' ')?;
        fields.push(&rest[..end]);
        rest = &rest[end..];
    }
    let name = rest.strip_prefix(' ')?.trim_start().to_owned();
    Some((
        name,
        LsEntry {
            mode: fields[0].to_owned(),
            nlink: fields[1].parse().ok()?,
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            size: fields[4].parse().ok()?,
        },
    ))
}

/// `nfs-ls [-R] URL` parsed, by name (relative path with -R).
fn nfs_ls(g: &Ganesha, rel: &str, recursive: bool) -> BTreeMap<String, LsEntry> {
    let mut cmd = Command::new("nfs-ls");
    if recursive {
        cmd.arg("-R");
    }
    cmd.arg(g.url(rel, ""));
    let o = run(&mut cmd, NFS_CMD_TIMEOUT).assert_ok();
    o.stdout_str()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_ls_line(l).unwrap_or_else(|| panic!("cannot parse nfs-ls line {l:?}")))
        .collect()
}

/// `rwxr-xr-x` of the permission bits (nfs-ls shows no setuid/setgid/sticky letters).
fn rwx(mode: u32) -> String {
    let mut s = String::new();
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Lists the whole tree below `rel` one directory at a time (nfs-ls -R gives up with "Recursion
/// detected!" past 16 levels, and the edge image is 41 deep).
fn nfs_walk(g: &Ganesha, rel: &str) -> BTreeMap<String, LsEntry> {
    let mut out = BTreeMap::new();
    let mut queue = vec![String::new()];
    while let Some(dir) = queue.pop() {
        let url_rel = if dir.is_empty() {
            rel.to_owned()
        } else {
            format!("{rel}/{dir}")
        };
        for (name, e) in nfs_ls(g, &url_rel, false) {
            let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
            if e.mode.starts_with('d') {
                queue.push(path.clone());
            }
            out.insert(path, e);
        }
    }
    out
}

/// One read attempt of a parallel reader.
struct Attempt {
    start: Instant,
    end: Instant,
    ok: bool,
    bytes: usize,
    error: String,
}

/// A file readers fetch, with the sha256 it must have.
#[derive(Clone)]
struct Wanted {
    rel: String,
    sha: String,
    len: usize,
}

fn read_attempt(g: &Ganesha, w: &Wanted) -> Attempt {
    let start = Instant::now();
    let o = nfs_cat(g, &w.rel, "");
    let end = Instant::now();
    let sha = sha256_bytes(&o.stdout);
    let ok = o.ok() && sha == w.sha;
    let error = if ok {
        String::new()
    } else if o.ok() {
        format!(
            "{}: WRONG BYTES: {} bytes sha256 {sha}, want {} bytes sha256 {}",
            w.rel,
            o.stdout.len(),
            w.len,
            w.sha
        )
    } else {
        format!(
            "{}: {}: {}",
            w.rel,
            o.describe(),
            o.stderr_str().lines().next().unwrap_or("").trim()
        )
    };
    Attempt {
        start,
        end,
        ok,
        bytes: o.stdout.len(),
        error,
    }
}

/// The export through a real NFS server: listing and bytes equal to `umoci unpack`, blobs equal to
/// their digests, 8 readers in parallel for 30 s, then imgfs restarted under the export.
#[test]
fn nfs_ganesha_export_lists_and_reads_like_umoci_unpack_and_survives_an_imgfs_restart() {
    require(NFS_TOOLS);
    let source = edge().join("oci");
    let want_root = bundle_rootfs();
    // Mounted by root without allow_other: ganesha runs as root and reaches the mount with its
    // own credentials (docs/nfs.md), which the last part of this test checks.
    let m = Mount::new(&source);
    let port = free_port();
    let g = Ganesha::new(&m.dir, port);
    let t_setup = Instant::now();

    // The server listens on 127.0.0.1 only.
    let listeners = listening_addresses(port);
    assert!(
        !listeners.is_empty() && listeners.iter().all(|a| a == "127.0.0.1"),
        "ganesha listens on {listeners:?} for port {port}, want 127.0.0.1 only"
    );

    let mut fails = Failures::default();

    // 1. Listing: every path of the umoci unpack, same type, permissions, owner, size, link count.
    let listed = nfs_walk(&g, "images/edge/rootfs");
    let mut want_paths = BTreeSet::new();
    for rel in walk(&want_root).into_iter().filter(|r| !r.as_os_str().is_empty()) {
        let key = rel.to_string_lossy().into_owned();
        want_paths.insert(key.clone());
        let md = fs::symlink_metadata(want_root.join(&rel)).unwrap();
        let Some(e) = listed.get(&key) else {
            fails.push(format!("nfs-ls does not list {key}"));
            continue;
        };
        let ft = md.file_type();
        let type_char = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_file() {
            '-'
        } else if std::os::unix::fs::FileTypeExt::is_char_device(&ft) {
            'c'
        } else if std::os::unix::fs::FileTypeExt::is_block_device(&ft) {
            'b'
        } else {
            'p'
        };
        // libnfs 4.0 prints no type letter for fifos (9 characters); the rest must match.
        let (got_type, got_perm) = if e.mode.len() == 10 {
            (e.mode.chars().next(), &e.mode[1..])
        } else {
            (None, e.mode.as_str())
        };
        fails.check(got_type.is_none_or(|c| c == type_char), || {
            format!("{key}: nfs-ls type {:?}, want {type_char}", e.mode)
        });
        fails.check(got_perm == rwx(md.mode()), || {
            format!(
                "{key}: nfs-ls mode {}, want {:o} ({})",
                e.mode,
                md.mode() & 0o7777,
                rwx(md.mode())
            )
        });
        fails.check(e.uid == md.uid() && e.gid == md.gid(), || {
            format!(
                "{key}: nfs-ls owner {}:{}, want {}:{}",
                e.uid,
                e.gid,
                md.uid(),
                md.gid()
            )
        });
        if ft.is_file() || ft.is_symlink() {
            fails.check(e.size == md.len(), || {
                format!("{key}: nfs-ls size {}, want {}", e.size, md.len())
            });
        }
        if !ft.is_dir() {
            fails.check(e.nlink == md.nlink(), || {
                format!("{key}: nfs-ls link count {}, want {}", e.nlink, md.nlink())
            });
        }
    }
    let extra: Vec<&String> = listed.keys().filter(|k| !want_paths.contains(*k)).collect();
    fails.check(extra.is_empty(), || {
        format!("nfs-ls lists paths umoci does not have: {extra:?}")
    });
    // nfs-ls -R on a subtree it can handle.
    let data = nfs_ls(&g, "images/edge/rootfs/data", true);
    let want_data: BTreeSet<String> = ls(&want_root.join("data"));
    fails.check(data.keys().cloned().collect::<BTreeSet<_>>() == want_data, || {
        format!("nfs-ls -R data lists {:?}, want {want_data:?}", data.keys())
    });

    // 2. Bytes: every regular file of the rootfs through nfs-cat, the big ones through nfs-cp too.
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut compared_bytes = 0usize;
    for rel in walk(&want_root) {
        let p = want_root.join(&rel);
        let md = fs::symlink_metadata(&p).unwrap();
        if !md.is_file() {
            continue;
        }
        let key = rel.to_string_lossy().into_owned();
        let want = fs::read(&p).unwrap();
        let nfs_rel = format!("images/edge/rootfs/{key}");
        let o = nfs_cat(&g, &nfs_rel, "");
        if !o.ok() {
            fails.push(format!("nfs-cat {key}: {} {}", o.describe(), o.stderr_str().trim()));
            continue;
        }
        fails.check(o.stdout == want, || {
            format!(
                "nfs-cat {key}: {} bytes sha256 {}, umoci has {} bytes sha256 {}",
                o.stdout.len(),
                sha256_bytes(&o.stdout),
                want.len(),
                sha256_bytes(&want)
            )
        });
        compared_bytes += want.len();
        wanted.push(Wanted {
            rel: nfs_rel,
            sha: sha256_bytes(&want),
            len: want.len(),
        });
    }
    let copies = tempdir();
    for key in ["data/big", "sparse/pax10", "bin/busybox"] {
        let dst = copies.path().join(key.replace('/', "_"));
        let o = run(
            Command::new("nfs-cp")
                .arg(g.url(&format!("images/edge/rootfs/{key}"), ""))
                .arg(&dst),
            NFS_CMD_TIMEOUT,
        );
        if !o.ok() {
            fails.push(format!("nfs-cp {key}: {} {}", o.describe(), o.stderr_str().trim()));
            continue;
        }
        let got = fs::read(&dst).unwrap_or_default();
        let want = fs::read(want_root.join(key)).unwrap();
        fails.check(got == want, || {
            format!(
                "nfs-cp {key}: {} bytes, want {} bytes (sha256 differs)",
                got.len(),
                want.len()
            )
        });
        compared_bytes += want.len();
    }
    // Blobs: each one's bytes hash to its name, and the listing is the mount's.
    let blobs = nfs_ls(&g, "blobs/sha256", false);
    fails.check(
        blobs.keys().cloned().collect::<BTreeSet<_>>() == m.ls("blobs/sha256"),
        || {
            format!(
                "nfs-ls blobs/sha256 lists {:?}, the mount {:?}",
                blobs.keys(),
                m.ls("blobs/sha256")
            )
        },
    );
    for (hex, e) in &blobs {
        let o = nfs_cat(&g, &format!("blobs/sha256/{hex}"), "");
        let sum = sha256_bytes(&o.stdout);
        fails.check(o.ok() && &sum == hex && o.stdout.len() as u64 == e.size, || {
            format!(
                "nfs-cat blobs/sha256/{hex}: {} {} bytes sha256 {sum}",
                o.describe(),
                o.stdout.len()
            )
        });
        compared_bytes += o.stdout.len();
        wanted.push(Wanted {
            rel: format!("blobs/sha256/{hex}"),
            sha: hex.clone(),
            len: e.size as usize,
        });
    }
    eprintln!(
        "nfs: listed {} paths, compared {} files + {} blobs, {compared_bytes} bytes in {:.1?}",
        listed.len(),
        wanted.len() - blobs.len(),
        blobs.len(),
        t_setup.elapsed()
    );
    fails.check(wanted.len() > 20, || format!("only {} files to read", wanted.len()));
    if !fails.0.is_empty() {
        std::mem::take(&mut fails).assert_none("listing and reading through NFS");
    }

    // 3. Client credentials: ganesha checks the image's modes itself, whatever FUSE options.
    let as_nobody = "&uid=65534&gid=65534";
    let o = nfs_cat(&g, "images/edge/rootfs/readd", as_nobody);
    fails.check(o.ok() && o.stdout == b"new\n", || {
        format!("nfs-cat readd as uid 65534: {} {}", o.describe(), o.stderr_str().trim())
    });
    let o = nfs_cat(&g, "images/edge/rootfs/etc/keep", as_nobody);
    fails.check(
        !o.ok() && o.stderr_str().contains("NFS4ERR_ACCESS") && o.stdout.is_empty(),
        || {
            format!(
                "nfs-cat etc/keep (0600, uid 1000) as uid 65534 must fail with NFS4ERR_ACCESS: {} {}",
                o.describe(),
                o.stderr_str().trim()
            )
        },
    );
    let o = nfs_cat(&g, "images/edge/rootfs/etc/keep", "&uid=1000&gid=1000");
    fails.check(o.ok() && o.stdout == b"kept across layers\n", || {
        format!(
            "nfs-cat etc/keep as its owner uid 1000: {} {}",
            o.describe(),
            o.stderr_str().trim()
        )
    });

    // 4. Parallel readers, then a restart of imgfs under the export.
    let attempts: Arc<Mutex<Vec<Vec<Attempt>>>> = Arc::new(Mutex::new((0..READERS).map(|_| Vec::new()).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let hard_deadline = Instant::now() + READ_PHASE + Duration::from_secs(90);
    let wanted = Arc::new(wanted);
    let t_readers = Instant::now();
    let (gap_start, gap_end, restart_detail) = std::thread::scope(|s| {
        for r in 0..READERS {
            let (attempts, stop, wanted, g) = (attempts.clone(), stop.clone(), wanted.clone(), &g);
            s.spawn(move || {
                let mut k = r * 5;
                while !stop.load(Ordering::Relaxed) && Instant::now() < hard_deadline {
                    let w = &wanted[k % wanted.len()];
                    k += 1;
                    let a = read_attempt(g, w);
                    let failed = !a.ok;
                    attempts.lock().unwrap()[r].push(a);
                    if failed {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
        // Stops the readers however this closure ends.
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop_guard = StopOnDrop(stop.clone());
        // Twice during the read phase the kernel forgets the mount's inodes (as under memory
        // pressure): ganesha's cached handles must then be resolved through imgfs.
        for i in 0..3 {
            std::thread::sleep(READ_PHASE / 3);
            if i < 2 {
                drop_caches();
            }
        }

        // `imgfs umount` under a running server: ganesha holds the export's root open.
        let o = run(&mut imgfs_cmd(["umount".as_ref(), m.dir.as_os_str()]), MOUNT_TIMEOUT);
        let busy_refusal = format!("{} / {}", o.describe(), o.stderr_str().trim());
        assert!(
            !o.ok() && o.stderr_str().to_lowercase().contains("busy") && is_mounted(&m.dir),
            "imgfs umount of an exported mount: want EBUSY with the mount left in place, got {busy_refusal}"
        );

        // The restart under the running server (docs/nfs.md's recipe).
        let r = restart_imgfs_under(&g, &m.dir, &source);
        let (gap_start, t_detached, t_remounted, gap_end, old_daemon) =
            (r.start, r.detached, r.remounted, r.end, r.old_daemon);
        // Once ganesha has let go of the old mount, its daemon exits on its own.
        let t = Instant::now();
        while Path::new(&format!("/proc/{old_daemon}")).exists() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !Path::new(&format!("/proc/{old_daemon}")).exists(),
            "the old imgfs daemon {old_daemon} still runs 20 s after the reexport"
        );
        let detail = format!(
            "imgfs umount -z {:.2?}, imgfs mount {:.2?}, ganesha reexport {:.2?}; old daemon gone {:.1?} later",
            t_detached - gap_start,
            t_remounted - t_detached,
            gap_end - t_remounted,
            t.elapsed()
        );
        std::thread::sleep(AFTER_RESTART);
        (gap_start, gap_end, detail)
    });
    let total = t_readers.elapsed();

    // Judge every attempt: outside the gap, all must succeed; inside, only connection failures
    // are allowed (never wrong bytes).
    let attempts = attempts.lock().unwrap();
    let mut n_ok = 0usize;
    let mut bytes = 0usize;
    let mut before_gap = 0usize;
    let mut gap_failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut recovered_after = Duration::ZERO;
    // Failures outside the gap (or wrong bytes anywhere), by kind, with a few examples.
    let mut bad: BTreeMap<String, usize> = BTreeMap::new();
    let mut examples: Vec<String> = Vec::new();
    let mut per_reader = Vec::new();
    for (r, list) in attempts.iter().enumerate() {
        per_reader.push(list.len());
        let mut first_ok_after: Option<Instant> = None;
        for a in list {
            if a.ok {
                n_ok += 1;
                bytes += a.bytes;
                if a.end < gap_start {
                    before_gap += 1;
                }
                if a.start >= gap_end && first_ok_after.is_none() {
                    first_ok_after = Some(a.end);
                }
                continue;
            }
            let overlaps_gap = a.start <= gap_end && a.end >= gap_start;
            // "<file>: <command> exited with ...: <first stderr line>"
            let kind = if a.error.contains("WRONG BYTES") {
                "WRONG BYTES".to_owned()
            } else {
                let msg = a.error.split(": ").skip(2).collect::<Vec<_>>().join(": ");
                // Keep the NFS status, drop the file name.
                msg.find("NFS4ERR_")
                    .map(|i| msg[i..].split(['(', '"', ' ']).next().unwrap_or("").to_owned())
                    .unwrap_or(msg)
            };
            if a.error.contains("WRONG BYTES") || !overlaps_gap {
                *bad.entry(kind).or_default() += 1;
                if examples.len() < 8 {
                    examples.push(format!(
                        "reader {r} at {:.1?} (restart gap {:.1?}..{:.1?}): {}",
                        a.start - t_readers,
                        gap_start - t_readers,
                        gap_end - t_readers,
                        a.error
                    ));
                }
            } else {
                *gap_failures.entry(kind).or_default() += 1;
            }
        }
        match first_ok_after {
            Some(t) => recovered_after = recovered_after.max(t - gap_end),
            None => fails.push(format!("reader {r} never read successfully after the restart")),
        }
    }
    fails.check(bad.is_empty(), || {
        format!(
            "{} failed reads outside the restart gap, by kind {bad:?}; first ones:\n    {}",
            bad.values().sum::<usize>(),
            examples.join("\n    ")
        )
    });
    let last = attempts.iter().flatten().map(|a| a.end).max().unwrap_or(gap_end);
    fails.check(last > gap_end + AFTER_RESTART / 2, || "readers stopped early".into());
    eprintln!(
        "nfs readers: {READERS} readers, {} attempts ({per_reader:?} per reader), {n_ok} good reads, \
         {bytes} bytes in {total:.1?}; {before_gap} reads in the first {:.0?} before the restart",
        per_reader.iter().sum::<usize>(),
        READ_PHASE
    );
    eprintln!(
        "nfs restart: gap {:.2?} ({restart_detail}); every reader read again within {recovered_after:.2?} \
         of the server's return; failures during the gap: {gap_failures:?}",
        gap_end - gap_start
    );
    fails.check(before_gap >= READERS * 10, || {
        format!("only {before_gap} good reads before the restart")
    });

    // 5. After the restart, listing and reading still agree.
    let o = nfs_cat(&g, "images/edge/rootfs/data/big", "");
    fails.check(
        o.ok() && o.stdout == fs::read(want_root.join("data/big")).unwrap(),
        || format!("nfs-cat data/big after the restart: {}", o.describe()),
    );
    let top = nfs_ls(&g, "images/edge/rootfs", false);
    fails.check(top.keys().cloned().collect::<BTreeSet<_>>() == ls(&want_root), || {
        format!("nfs-ls rootfs after the restart: {:?}", top.keys())
    });

    if let Err(e) = g.stop() {
        fails.push(e);
    }
    drop(g);
    fails.assert_none("NFS export of an imgfs mount");
    drop(m);
}

// ------------------------------------------------------------------------------------------------
// A long-lived client across an imgfs restart (tests/it/nfs_client.c)
// ------------------------------------------------------------------------------------------------

/// tests/it/nfs_client.c compiled with `cc` into `dir`; fails with the install hint without
/// libnfs-dev.
fn build_nfs_client(dir: &Path) -> PathBuf {
    require(&["cc"]);
    let bin = dir.join("nfs_client");
    let o = run(
        Command::new("cc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&bin)
            .arg(crate_root().join("tests/it/nfs_client.c"))
            .arg("-lnfs"),
        Duration::from_secs(60),
    );
    assert!(
        o.ok(),
        "cc tests/it/nfs_client.c -lnfs failed (libnfs-dev: {INSTALL_HINT}): {}\n{}",
        o.describe(),
        o.stderr_str()
    );
    bin
}

/// A running nfs_client: its stdout lines arrive on a channel; killed by PID on drop.
struct LongClient {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl LongClient {
    fn spawn(bin: &Path, url: &str, file: &str, dir: &str, stderr: PathBuf) -> LongClient {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = Command::new(bin)
            .args([url, file, dir])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("client stderr file"))
            .spawn()
            .expect("spawn nfs_client");
        let out = child.stdout.take().expect("client stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LongClient { child, lines, stderr }
    }

    /// The lines before `marker` (within `timeout`), or what went wrong with what came so far.
    fn until(&mut self, marker: &str, timeout: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == marker => return Ok(got),
                Ok(l) => got.push(l),
                Err(e) => {
                    let _ = self.child.try_wait();
                    return Err(format!(
                        "nfs_client: no {marker:?} line ({e}); stdout so far {got:?}; stderr: {}",
                        fs::read_to_string(&self.stderr).unwrap_or_default().trim()
                    ));
                }
            }
        }
    }

    fn go_on(&mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("client stdin");
        stdin
            .write_all(b"go\n")
            .and_then(|_| stdin.flush())
            .expect("write to nfs_client");
    }
}

impl Drop for LongClient {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `probe: result` lines as probe -> result, where an error keeps only its NFSv4 status
/// ("error NFS4ERR_STALE"): that is what is asserted, the rest of libnfs's message is wording.
fn outcomes(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .map(|l| {
            let (probe, result) = l.split_once(": ").unwrap_or((l.as_str(), ""));
            let result = match result.strip_prefix("error ") {
                Some(msg) => match msg.find("NFS4ERR_") {
                    Some(i) => {
                        let status: String = msg[i..]
                            .chars()
                            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                            .collect();
                        format!("error {status}")
                    }
                    None => result.to_owned(),
                },
                None => result.to_owned(),
            };
            (probe.to_owned(), result)
        })
        .collect()
}

/// One NFSv4 client that mounts once and keeps a file open and a directory's handle while imgfs
/// is restarted under the running server by docs/nfs.md's recipe. With scripts/nfs-server.sh's
/// `fsid_type = Major64` the handles it holds still work afterwards (only the open file's stateid
/// is gone with the old export: NFS4ERR_BAD_STATEID, as after a server reboot); with Ganesha's
/// default fsid (the FUSE device number) every handle is NFS4ERR_STALE, and so is libnfs's
/// context, which keeps the export's root handle. Either way a new client reads the right bytes.
#[test]
fn nfs_long_lived_client_handles_across_an_imgfs_restart() {
    require(NFS_TOOLS);
    let source = edge().join("oci");
    let want_root = bundle_rootfs();
    let tmp = tempdir();
    let bin = build_nfs_client(tmp.path());
    let (file, dir) = ("data/big", "data");
    let (file_rel, dir_rel) = (
        format!("images/edge/rootfs/{file}"),
        format!("images/edge/rootfs/{dir}"),
    );
    let want = fs::read(want_root.join(file)).unwrap();
    let names = ls(&want_root.join(dir));
    let listing: String = names.iter().map(|n| format!("{n}\n")).collect();
    let read_ok = format!("ok {} {}", want.len(), sha256_bytes(&want));
    let readdir_ok = format!("ok {} {}", names.len(), sha256_bytes(listing.as_bytes()));
    let stale = "error NFS4ERR_STALE".to_owned();

    let mut fails = Failures::default();
    // (FSID_TYPE for the script, what each probe must give after the restart)
    let cases: [(&str, [(&str, String); 5]); 2] = [
        (
            "Major64",
            [
                ("file-handle read", "error NFS4ERR_BAD_STATEID".to_owned()),
                ("file-handle getattr", String::new()), // filled in below: same size and inode
                ("dir-handle readdir", readdir_ok.clone()),
                ("path open+read", read_ok.clone()),
                ("path lookup+readdir", readdir_ok.clone()),
            ],
        ),
        (
            "",
            [
                ("file-handle read", stale.clone()),
                ("file-handle getattr", stale.clone()),
                ("dir-handle readdir", stale.clone()),
                ("path open+read", stale.clone()),
                ("path lookup+readdir", readdir_ok.clone()),
            ],
        ),
    ];
    for (fsid_type, after) in cases {
        let label = if fsid_type.is_empty() {
            "ganesha's default fsid"
        } else {
            fsid_type
        };
        let m = Mount::new(&source);
        let ino = fs::metadata(m.path(&file_rel)).unwrap().ino();
        let getattr_ok = format!("ok size {} ino {ino}", want.len());
        let g = Ganesha::with_env(&m.dir, free_port(), &[("FSID_TYPE", fsid_type)]);
        let t = Instant::now();
        let mut c = LongClient::spawn(
            &bin,
            &g.url("", ""),
            &file_rel,
            &dir_rel,
            tmp.path().join(format!("client-{label}.err")),
        );
        let before = c
            .until("ready", NFS_CMD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let want_before: BTreeMap<String, String> = [
            ("file-handle read", &read_ok),
            ("file-handle getattr", &getattr_ok),
            ("dir-handle readdir", &readdir_ok),
            ("path open+read", &read_ok),
            ("path lookup+readdir", &readdir_ok),
        ]
        .iter()
        .map(|(p, r)| (format!("before {p}"), r.to_string()))
        .collect();
        assert_eq!(
            outcomes(&before),
            want_before,
            "{label}: before the restart: {before:#?}"
        );

        let r = restart_imgfs_under(&g, &m.dir, &source);
        c.go_on();
        let after_lines = c
            .until("done", NFS_CMD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let want_after: BTreeMap<String, String> = after
            .iter()
            .map(|(p, r)| {
                let r = if r.is_empty() { getattr_ok.clone() } else { r.clone() };
                (format!("after {p}"), r)
            })
            .collect();
        let got_after = outcomes(&after_lines);
        fails.check(got_after == want_after, || {
            format!(
                "{label}: after the restart the long-lived client got\n{got_after:#?}\nwant\n{want_after:#?}\n(lines: {after_lines:#?})"
            )
        });
        // A new client (a fresh mount of the export) reads the right bytes.
        let o = nfs_cat(&g, &file_rel, "");
        fails.check(o.ok() && o.stdout == want, || {
            format!(
                "{label}: nfs-cat {file_rel} after the restart: {} {} bytes {}",
                o.describe(),
                o.stdout.len(),
                o.stderr_str().trim()
            )
        });
        eprintln!(
            "nfs long-lived client, {label}: restart {:.2?}, whole case {:.1?}; after: {got_after:?}",
            r.end - r.start,
            t.elapsed()
        );
        drop(c);
        if let Err(e) = g.stop() {
            fails.push(e);
        }
        drop(g);
        drop(m);
    }
    fails.assert_none("a long-lived NFS client across an imgfs restart");
}

/// When each step of an imgfs restart under a running server ended.
struct Restart {
    start: Instant,
    detached: Instant,
    remounted: Instant,
    end: Instant,
    old_daemon: u32,
}

/// docs/nfs.md's restart recipe under a running server: detach the old mount (its daemon goes on
/// serving what ganesha holds open), mount the same source at the same directory, and have
/// ganesha reopen its export (`scripts/nfs-server.sh reexport`: a config reload; the server
/// process and its clients' connections stay). Panics unless each step did what it says.
fn restart_imgfs_under(g: &Ganesha, dir: &Path, source: &Path) -> Restart {
    let server_pid = g.pid();
    let old_daemon = daemon_of(dir).expect("the imgfs daemon serving the export");
    let start = Instant::now();
    let o = run(
        &mut imgfs_cmd(["umount".as_ref(), "-z".as_ref(), dir.as_os_str()]),
        MOUNT_TIMEOUT,
    );
    assert!(
        o.ok(),
        "imgfs umount -z of the exported mount: {} {}",
        o.describe(),
        o.stderr_str()
    );
    let detached = Instant::now();
    let o = run(
        &mut imgfs_cmd(["mount".as_ref(), source.as_os_str(), dir.as_os_str()]),
        MOUNT_TIMEOUT,
    );
    assert!(
        o.ok() && is_mounted(dir),
        "imgfs mount again: {} {}",
        o.describe(),
        o.stderr_str()
    );
    let remounted = Instant::now();
    g.reexport();
    let end = Instant::now();
    assert_eq!(g.pid(), server_pid, "the NFS server was restarted");
    let new_daemon = daemon_of(dir).expect("the new imgfs daemon");
    assert_ne!(new_daemon, old_daemon, "the mount is still served by the old daemon");
    Restart {
        start,
        detached,
        remounted,
        end,
        old_daemon,
    }
}

/// PID of the imgfs daemon serving the mount at `dir`: the process whose command line is an
/// `imgfs mount` naming `dir`.
fn daemon_of(dir: &Path) -> Option<u32> {
    let want = dir.as_os_str().as_bytes();
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_daemon = args.first().is_some_and(|a| a.ends_with(b"imgfs"))
            && args.contains(&&b"mount"[..])
            && args.contains(&want);
        is_daemon.then_some(pid)
    })
}

/// Local addresses of the TCP sockets listening on `port` (IPv4, and IPv4-mapped or plain IPv6).
fn listening_addresses(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                continue; // not LISTEN
            }
            let Some((addr, p)) = f[1].split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            let a = if !v6 {
                let n = u32::from_str_radix(addr, 16).unwrap_or(0);
                std::net::Ipv4Addr::from(n.to_le_bytes()).to_string()
            } else {
                // Four little-endian 32-bit words.
                let mut b = [0u8; 16];
                for i in 0..4 {
                    let w = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).unwrap_or(0);
                    b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
                }
                let ip = std::net::Ipv6Addr::from(b);
                ip.to_ipv4_mapped().map_or(ip.to_string(), |v4| v4.to_string())
            };
            out.push(a);
        }
    }
    out
}

// ------------------------------------------------------------------------------------------------
// allow_other / default_permissions
// ------------------------------------------------------------------------------------------------

/// Runs as `nobody`: for each `op:path`, prints `OK <sha256|names>` or the errno name.
const PROBE: &str = r#"
import errno, hashlib, os, sys
for arg in sys.argv[1:]:
    op, path = arg.split(":", 1)
    try:
        if op == "read":
            with open(path, "rb") as f:
                print("OK", hashlib.sha256(f.read()).hexdigest())
        elif op == "ls":
            print("OK", ",".join(sorted(os.listdir(path))))
        else:
            os.stat(path)
            print("OK")
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
"#;

/// The system's python (a python on PATH may live under root's home, which nobody cannot enter).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn probe_as_nobody(ops: &[String]) -> Vec<String> {
    let o = run(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                SYSTEM_PYTHON,
                "-c",
                PROBE,
            ])
            .args(ops),
        CMD_TIMEOUT,
    )
    .assert_ok();
    let lines: Vec<String> = o.stdout_str().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), ops.len(), "probe output {lines:?} for {ops:?}");
    lines
}

#[test]
fn allow_other_and_default_permissions_for_an_unprivileged_user() {
    require(&["setpriv", SYSTEM_PYTHON]);
    let source = edge().join("oci");
    let ok_sha = |b: &[u8]| format!("OK {}", sha256_bytes(b));
    let keep = b"kept across layers\n";
    let mut fails = Failures::default();
    // (options, what nobody gets for: stat of the mount, etc/keep (0600 uid 1000), readd (0644),
    //  data/owned (0644 uid 4321), ls etc)
    let cases: Vec<(Vec<&str>, [String; 5])> = vec![
        (
            vec![],
            [
                "EACCES".into(),
                "EACCES".into(),
                "EACCES".into(),
                "EACCES".into(),
                "EACCES".into(),
            ],
        ),
        (
            vec!["-o", "default_permissions"],
            [
                "EACCES".into(),
                "EACCES".into(),
                "EACCES".into(),
                "EACCES".into(),
                "EACCES".into(),
            ],
        ),
        (
            // imgfs itself checks nothing: without default_permissions every user reads every file.
            vec!["-o", "allow_other"],
            [
                "OK".into(),
                ok_sha(keep),
                ok_sha(b"new\n"),
                ok_sha(b"rewritten\n"),
                "OK keep".into(),
            ],
        ),
        (
            vec!["-o", "allow_other,default_permissions"],
            [
                "OK".into(),
                "EACCES".into(),
                ok_sha(b"new\n"),
                ok_sha(b"rewritten\n"),
                "OK keep".into(),
            ],
        ),
    ];
    for (opts, want) in cases {
        let m = Mount::with_args(&source, &opts);
        // The guard's private directory (0700) would hide the mount from nobody by itself.
        let parent = m.dir.parent().unwrap().to_path_buf();
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).unwrap();
        let root = m.path("images/edge/rootfs");
        let ops = vec![
            format!("stat:{}", parent.display()),
            format!("stat:{}", m.dir.display()),
            format!("read:{}", root.join("etc/keep").display()),
            format!("read:{}", root.join("readd").display()),
            format!("read:{}", root.join("data/owned").display()),
            format!("ls:{}", root.join("etc").display()),
        ];
        let got = probe_as_nobody(&ops);
        fails.check(got[0] == "OK", || {
            format!(
                "{opts:?}: nobody cannot reach the mount's parent {}: {}",
                parent.display(),
                got[0]
            )
        });
        for (i, w) in want.iter().enumerate() {
            fails.check(&got[i + 1] == w, || {
                format!("{opts:?}: nobody {}: got {}, want {w}", ops[i + 1], got[i + 1])
            });
        }
        // Root reads everything in every mode.
        fails.check(
            fs::read(root.join("etc/keep")).ok().as_deref() == Some(&keep[..]),
            || format!("{opts:?}: root cannot read etc/keep"),
        );
        let md = fs::metadata(root.join("etc/keep")).unwrap();
        fails.check(
            md.mode() & 0o7777 == 0o600 && md.uid() == 1000 && md.gid() == 1000,
            || {
                format!(
                    "{opts:?}: etc/keep shows {:o} {}:{}",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid()
                )
            },
        );
    }
    fails.assert_none("allow_other / default_permissions");
}
