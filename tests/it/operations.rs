//! The daemon as an operator meets it (docs/operations.md): `imgfs umount` acts only on imgfs
//! mounts, mounts carry the `fuse.imgfs` type and an absolute source, the daemon leaves the
//! caller's working directory, credentials stay out of process lists, unreachable registries
//! fail fast, background mounts log somewhere, failed layers heal, `imgfs status`, interrupted
//! waits, and the cache commands.

use crate::util::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// A mount made by a test with its own command line, unmounted (by imgfs umount, else
/// fusermount3) on drop.
pub(crate) struct Mounted {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    /// Runs `cmd` (an `imgfs mount ... <dir>` whose mount point is `dir` of `tmp`), which must succeed.
    pub fn run(tmp: tempfile::TempDir, dir: PathBuf, cmd: &mut Command) -> Mounted {
        let m = Mounted { dir, _tmp: tmp };
        let o = run(cmd, T);
        assert_no_panic(&o);
        assert!(o.ok(), "{}: {}", o.describe(), o.stderr_str());
        assert!(is_mounted(&m.dir), "nothing mounted at {}", m.dir.display());
        m
    }

    /// A fresh mount point.
    pub fn point() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempdir();
        let dir = std::fs::canonicalize(tmp.path()).unwrap().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        (tmp, dir)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.dir) && !imgfs_umount(&self.dir).ok() {
            force_unmount(&self.dir);
        }
    }
}

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Tmpfs {
    fn new() -> Tmpfs {
        let tmp = tempdir();
        let dir = std::fs::canonicalize(tmp.path()).unwrap().join("tmpfs");
        std::fs::create_dir(&dir).unwrap();
        let o = run(
            Command::new("mount")
                .args(["-t", "tmpfs", "imgfs-test-tmpfs"])
                .arg(&dir),
            T,
        );
        assert!(o.ok(), "mount -t tmpfs: {}", o.stderr_str());
        Tmpfs { dir, _tmp: tmp }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = run(Command::new("umount").arg("-l").arg(&self.dir), T);
        }
    }
}

#[test]
fn umount_refuses_what_is_not_an_imgfs_mount() {
    let tmpfs = Tmpfs::new();
    std::fs::write(tmpfs.dir.join("keep"), b"x").unwrap();
    let bind_src = tempdir();
    let bind = tempdir();
    let o = run(
        Command::new("mount")
            .arg("--bind")
            .arg(bind_src.path())
            .arg(bind.path()),
        T,
    );
    assert!(o.ok(), "mount --bind: {}", o.stderr_str());
    let bind_dir = std::fs::canonicalize(bind.path()).unwrap();
    for (dir, what) in [
        (tmpfs.dir.clone(), "tmpfs imgfs-test-tmpfs"),
        (bind_dir.clone(), "is not an imgfs mount ("),
        (PathBuf::from("/proc"), "proc proc"),
    ] {
        for lazy in [false, true] {
            let mut args = vec!["umount".to_owned()];
            if lazy {
                args.push("-z".into());
            }
            args.push(dir.display().to_string());
            let o = run_imgfs(&args, T);
            assert!(!o.ok(), "imgfs {args:?} succeeded");
            let err = o.stderr_str();
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.starts_with(&format!(
                    "imgfs: mount point {}: is not an imgfs mount (",
                    dir.display()
                )) && err.contains(what)
                    && err.contains("nothing unmounted"),
                "{err}"
            );
            assert!(is_mounted(&dir), "{} was unmounted", dir.display());
        }
    }
    assert!(tmpfs.dir.join("keep").exists());
    let _ = run(Command::new("umount").arg(&bind_dir), T);
}

#[test]
fn root_mounts_show_fuse_imgfs_an_absolute_source_and_free_the_working_directory() {
    let fx = fixtures();
    let (tmp, dir) = Mounted::point();
    // A relative source, started from a tmpfs that must stay unmountable while mounted.
    let tmpfs = Tmpfs::new();
    std::fs::create_dir(tmpfs.dir.join("sub")).unwrap();
    let rel = pathdiff(&fx.join("oci"), &tmpfs.dir.join("sub"));
    let cache = tempdir();
    let m = Mounted::run(
        tmp,
        dir.clone(),
        imgfs_cmd(["mount".as_ref(), rel.as_os_str(), dir.as_os_str()])
            .arg("--cache-dir")
            .arg(cache.path())
            .current_dir(tmpfs.dir.join("sub")),
    );
    let info = mount_at(&m.dir).expect("mounted");
    assert_eq!(info.fs_type, "fuse.imgfs");
    assert_eq!(
        info.source,
        fx.join("oci").display().to_string(),
        "source recorded as typed"
    );
    let o = run(
        Command::new("findmnt").args(["-n", "-t", "fuse.imgfs", "-o", "TARGET"]),
        T,
    );
    assert!(
        o.stdout_str().lines().any(|l| l == m.dir.display().to_string()),
        "{}",
        o.stdout_str()
    );
    // The daemon does not hold the tmpfs it was started from.
    let o = run(Command::new("umount").arg(&tmpfs.dir), T);
    assert!(o.ok(), "umount of the caller's directory: {}", o.stderr_str());
    assert!(ls(&m.dir).contains("index.json"));
    // And it unmounts with the system's own tool by type.
    let o = run(Command::new("umount").args(["-t", "fuse.imgfs"]).arg(&m.dir), T);
    assert!(o.ok(), "umount -t fuse.imgfs: {}", o.stderr_str());
    assert!(!is_mounted(&m.dir));
}

/// `to` relative to `from` (both absolute).
fn pathdiff(to: &Path, from: &Path) -> PathBuf {
    let to: Vec<_> = to.components().collect();
    let from: Vec<_> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

/// Waits until `f` holds or `limit` passes.
pub(crate) fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The PIDs of the imgfs processes whose command line names `dir`.
pub(crate) fn daemons_of(dir: &Path) -> Vec<(i32, String)> {
    let want = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        if exe.file_name().is_some_and(|n| n == "imgfs") && cmdline.contains(&want) {
            out.push((pid, cmdline));
        }
    }
    out
}

#[test]
fn credentials_stay_out_of_process_lists_and_come_from_files_and_the_environment() {
    use crate::registry::{Registry, Setup};
    let reg = Registry::with_oci_v2(Setup {
        tls: true,
        basic: Some(("bob", "s3cr3t-Pw")),
        ..Setup::default()
    });
    let url = reg.url("imgfs/oci:v2");
    let cache = tempdir();
    let base = |cmd: &mut Command| {
        cmd.arg("--cert-dir")
            .arg(reg.cert_dir())
            .arg("--cache-dir")
            .arg(cache.path())
            .env("HOME", cache.path())
            .env_remove("XDG_RUNTIME_DIR");
    };
    let check = |m: &Mounted| {
        assert!(m
            .dir
            .join(format!("images/{}/imgfs/oci:v2/rootfs/etc", reg.host))
            .is_dir());
        let daemons = daemons_of(&m.dir);
        assert_eq!(daemons.len(), 1, "{daemons:?}");
        assert!(
            !daemons[0].1.contains("s3cr3t"),
            "password in /proc/PID/cmdline: {}",
            daemons[0].1
        );
    };
    // --creds: the background daemon never has it in its argv.
    let (tmp, dir) = Mounted::point();
    let mut cmd = imgfs_cmd([OsStr::new("mount"), url.as_ref(), dir.as_os_str()]);
    cmd.args(["--creds", "bob:s3cr3t-Pw"]);
    base(&mut cmd);
    check(&Mounted::run(tmp, dir, &mut cmd));
    // --creds with -f: the foreground daemon starts again without it, same PID.
    let (tmp, dir) = Mounted::point();
    let mut cmd = imgfs_cmd([OsStr::new("mount"), OsStr::new("-f"), url.as_ref(), dir.as_os_str()]);
    cmd.args(["--creds=bob:s3cr3t-Pw"]);
    base(&mut cmd);
    let log = tmp.path().join("fg.log");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    wait_until(T, "the -f mount", || is_mounted(&dir));
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).replace('\0', " ");
    assert!(cmdline.contains("mount") && !cmdline.contains("s3cr3t"), "{cmdline}");
    assert!(dir
        .join(format!("images/{}/imgfs/oci:v2/rootfs/etc", reg.host))
        .is_dir());
    assert!(imgfs_umount(&dir).ok());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(tmp);
    // --creds-file and -o creds_file=.
    let file = cache.path().join("creds");
    std::fs::write(&file, "bob:s3cr3t-Pw\n").unwrap();
    for opt in [false, true] {
        let (tmp, dir) = Mounted::point();
        let mut cmd = imgfs_cmd([OsStr::new("mount"), url.as_ref(), dir.as_os_str()]);
        if opt {
            cmd.arg("-o").arg(format!("ro,creds_file={}", file.display()));
        } else {
            cmd.arg("--creds-file").arg(&file);
        }
        base(&mut cmd);
        check(&Mounted::run(tmp, dir, &mut cmd));
    }
    // $IMGFS_CREDS.
    let (tmp, dir) = Mounted::point();
    let mut cmd = imgfs_cmd([OsStr::new("mount"), url.as_ref(), dir.as_os_str()]);
    base(&mut cmd);
    cmd.env("IMGFS_CREDS", "bob:s3cr3t-Pw");
    check(&Mounted::run(tmp, dir, &mut cmd));
    // Without any: refused, one line, no secret.
    let mut cmd = imgfs_cmd(["inspect", url.as_str()]);
    base(&mut cmd);
    let o = run(&mut cmd, T);
    assert!(
        !o.ok() && o.stderr_str().contains("requires credentials"),
        "{}",
        o.stderr_str()
    );
}

#[test]
fn skopeo_login_as_root_is_found_without_flags() {
    use crate::registry::{Registry, Setup};
    require(&["skopeo"]);
    let reg = Registry::with_oci_v2(Setup {
        tls: true,
        basic: Some(("carol", "l0gin-Pw")),
        ..Setup::default()
    });
    let home = tempdir();
    // As root without XDG_RUNTIME_DIR (sudo, a service): skopeo writes /run/containers/0/auth.json.
    let login = |what: &str| {
        let mut cmd = Command::new("skopeo");
        cmd.arg(what);
        if what == "login" {
            cmd.args(["-u", "carol", "-p", "l0gin-Pw"]);
        }
        cmd.arg("--cert-dir")
            .arg(reg.cert_dir())
            .arg(&reg.host)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("REGISTRY_AUTH_FILE")
            .env("HOME", home.path());
        run(&mut cmd, T)
    };
    let o = login("login");
    assert!(o.ok(), "skopeo login: {}", o.stderr_str());
    let written = std::fs::read_to_string("/run/containers/0/auth.json").unwrap_or_default();
    let (tmp, dir) = Mounted::point();
    let mut cmd = imgfs_cmd([
        OsStr::new("mount"),
        OsStr::new(&reg.url("imgfs/oci:v2")),
        dir.as_os_str(),
    ]);
    cmd.arg("--cert-dir")
        .arg(reg.cert_dir())
        .arg("--cache-dir")
        .arg(home.path().join("cache"))
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("REGISTRY_AUTH_FILE")
        .env("HOME", home.path());
    let o = run(&mut cmd, T);
    let mounted = o.ok() && is_mounted(&dir);
    let m = Mounted { dir, _tmp: tmp };
    let rootfs = m
        .dir
        .join(format!("images/{}/imgfs/oci:v2/rootfs/etc", reg.host))
        .is_dir();
    drop(m);
    let _ = login("logout");
    assert!(
        written.contains(&reg.host),
        "skopeo login did not write /run/containers/0/auth.json"
    );
    assert!(mounted, "mount after skopeo login: {}", o.stderr_str());
    assert!(rootfs);
}

#[test]
fn unreachable_registries_fail_fast_with_one_line() {
    let port = crate::registry::free_port();
    let cache = tempdir();
    let (_tmp, dir) = Mounted::point();
    for reference in [
        format!("docker://127.0.0.1:{port}/imgfs/oci:v2"),
        "docker://no-such-host.invalid/imgfs/oci:v2".to_owned(),
    ] {
        for cmd in [
            &["inspect", &reference][..],
            &["mount", &reference, &dir.display().to_string()],
        ] {
            let mut c = imgfs_cmd(cmd);
            c.arg("--tls-verify=false").arg("--cache-dir").arg(cache.path());
            let o = run(&mut c, T);
            assert!(!o.ok(), "{cmd:?} succeeded");
            assert!(o.elapsed < Duration::from_secs(3), "{cmd:?} took {:?}", o.elapsed);
            let err = o.stderr_str();
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.starts_with(&format!("imgfs: {reference}: cannot reach the registry: ")),
                "{err}"
            );
            assert!(!is_mounted(&dir));
        }
    }
}

#[test]
fn background_mounts_log_to_a_file_per_mount_by_default() {
    let tmp = tempdir();
    let (layout, top) = corrupt_edge_layout(tmp.path());
    let (mtmp, dir) = Mounted::point();
    let unit = run(Command::new("systemd-escape").arg("--path").arg(&dir), T);
    let log = PathBuf::from(format!("/var/log/imgfs/{}.log", unit.stdout_str().trim()));
    let _ = std::fs::remove_file(&log);
    let m = Mounted::run(
        mtmp,
        dir.clone(),
        imgfs_cmd([OsStr::new("mount"), layout.as_os_str(), dir.as_os_str()])
            .arg("--cache-dir")
            .arg(tmp.path().join("cache")),
    );
    let err = list_dir(&m.dir.join("images/edge/rootfs")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let daemons = daemons_of(&m.dir);
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(daemons[0].0, libc::SIGTERM) };
    wait_until(T, "the daemon to unmount", || !is_mounted(&m.dir));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        text.lines()
            .any(|l| l.contains("ERROR") && l.contains(&top) && l.contains("bytes hash to")),
        "the EIO's reason is not in {}:\n{text}",
        log.display()
    );
    let prefix = format!("] {}: ", dir.display());
    assert!(
        text.lines().all(|l| l.contains(&prefix)),
        "a line without the mount point:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains(&format!("SIGTERM from PID {} (uid 0): unmounting", std::process::id()))),
        "{text}"
    );
}

/// The exit status of `child`, which must end within `limit` (else: `what`).
pub(crate) fn exit_within(child: &mut std::process::Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(started.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lists a directory, failing if any step of it fails.
pub(crate) fn list_dir(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)?.collect()
}

/// `imgfs status MNT --json`: the one mount's status.
fn status_json(dir: &Path) -> serde_json::Value {
    let o = run_imgfs([OsStr::new("status"), dir.as_os_str(), OsStr::new("--json")], T);
    assert!(o.ok(), "imgfs status: {}", o.stderr_str());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    v[0].clone()
}

fn layer_of<'a>(status: &'a serde_json::Value, hex: &str) -> &'a serde_json::Value {
    status["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["digest"].as_str().is_some_and(|d| d.ends_with(hex)))
        .unwrap_or_else(|| panic!("no layer {hex} in {status}"))
}

#[test]
fn slow_registry_status_shows_progress_and_ctrl_c_frees_a_waiting_ls() {
    use crate::registry::{shared, Proxy};
    let reg = shared();
    let proxy = Proxy::start(reg, &["--slow", "300000"]);
    let cache = tempdir();
    let (tmp, dir) = Mounted::point();
    let url = format!("docker://{}/imgfs/oci:v2", proxy.host);
    let m = Mounted::run(
        tmp,
        dir.clone(),
        imgfs_cmd([OsStr::new("mount"), OsStr::new(&url), dir.as_os_str()])
            .arg("--tls-verify=false")
            .arg("--cache-dir")
            .arg(cache.path()),
    );
    let img = format!("images/{}/imgfs/oci:v2", proxy.host);
    let big = {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(m.dir.join(format!("{img}/manifest.json"))).unwrap()).unwrap();
        let layers = manifest["layers"].as_array().unwrap().clone();
        let l = layers.iter().max_by_key(|l| l["size"].as_u64()).unwrap();
        l["digest"].as_str().unwrap()["sha256:".len()..].to_owned()
    };
    // Before any access: every layer "not needed"; the daemon, source, images and log shown.
    let st = status_json(&m.dir);
    assert_eq!(st["source"], url);
    assert_eq!(st["mount_point"], m.dir.display().to_string());
    assert!(
        st["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| img.ends_with(i.as_str().unwrap_or("-"))),
        "{st}"
    );
    assert!(st["log"].as_str().unwrap().starts_with("/var/log/imgfs/"), "{st}");
    let pid = st["pid"].as_u64().unwrap() as i32;
    assert_eq!(daemons_of(&m.dir)[0].0, pid);
    assert_eq!(layer_of(&st, &big)["state"], "not-needed");
    // An `ls` that waits behind the slow registry.
    let mut ls = Command::new("ls")
        .arg(m.dir.join(format!("{img}/rootfs")))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = serde_json::Value::Null;
    wait_until(T, "a layer downloading with bytes done", || {
        seen = status_json(&m.dir);
        let l = layer_of(&seen, &big);
        l["state"] == "downloading" && l["done"].as_u64() > Some(0) && l["done"].as_u64() < l["total"].as_u64()
    });
    let text = run_imgfs([OsStr::new("status"), m.dir.as_os_str()], T).stdout_str();
    assert!(
        text.contains(&format!("daemon PID {pid}, up ")) && text.contains(&format!("{big}: downloading ")),
        "{text}"
    );
    assert!(ls.try_wait().unwrap().is_none(), "ls did not wait for the layer");
    // Ctrl-C: the waiting ls is answered (EINTR) and dies within a second.
    // SAFETY: kill(2) on the ls this test started.
    unsafe { libc::kill(ls.id() as i32, libc::SIGINT) };
    let status = exit_within(&mut ls, Duration::from_secs(1), "ls still waits 1 s after SIGINT");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGINT)
    );
    // The build went on: it finishes without anyone waiting, and the next ls succeeds.
    assert!(
        matches!(
            layer_of(&status_json(&m.dir), &big)["state"].as_str(),
            Some("downloading" | "ready")
        ),
        "the build stopped"
    );
    wait_until(Duration::from_secs(60), "the layer to be ready", || {
        layer_of(&status_json(&m.dir), &big)["state"] == "ready"
    });
    assert!(ls_ok(&m.dir.join(format!("{img}/rootfs"))).contains("etc"));
    let l = layer_of(&status_json(&m.dir), &big).clone();
    assert_eq!(l["done"], l["total"]);
}

fn ls_ok(dir: &Path) -> std::collections::BTreeSet<String> {
    list_dir(dir)
        .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
        .into_iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_view_failed_by_a_dead_registry_heals_without_remount_and_corrupt_layers_stay_failed() {
    use crate::registry::{Registry, Setup};
    let mut reg = Registry::with_oci_v2(Setup::default());
    let cache = tempdir();
    let (tmp, dir) = Mounted::point();
    let m = Mounted::run(
        tmp,
        dir.clone(),
        imgfs_cmd([
            OsStr::new("mount"),
            OsStr::new(&reg.url("imgfs/oci:v2")),
            dir.as_os_str(),
        ])
        .args(reg.args(cache.path()))
        .args(["--registry-timeout", "3"]),
    );
    let rootfs = m.dir.join(format!("images/{}/imgfs/oci:v2/rootfs", reg.host));
    reg.kill();
    let err = list_dir(&rootfs).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // The status file is rewritten once a second.
    let mut st = serde_json::Value::Null;
    wait_until(Duration::from_secs(5), "a failed layer in imgfs status", || {
        st = status_json(&m.dir);
        st["layers"].as_array().unwrap().iter().any(|l| l["state"] == "failed")
    });
    let failed: Vec<_> = st["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["state"] == "failed")
        .collect();
    assert!(
        failed.iter().all(|l| l["error"]["transient"] == true
            && l["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot reach the registry")),
        "{st}"
    );
    // The registry comes back on the same port: a later access builds the view again.
    reg.restart();
    let started = Instant::now();
    let names = loop {
        match list_dir(&rootfs) {
            Ok(entries) => break entries,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
                assert!(started.elapsed() < Duration::from_secs(30), "no heal after 30 s: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(names.iter().any(|e| e.file_name() == "etc"));
    wait_until(Duration::from_secs(5), "every layer ready in imgfs status", || {
        st = status_json(&m.dir);
        st["layers"].as_array().unwrap().iter().all(|l| l["state"] == "ready")
    });

    // A corrupt local layer fails for good: the same error, and status says permanent.
    let tmp = tempdir();
    let (layout, top) = corrupt_edge_layout(tmp.path());
    let (mtmp, dir) = Mounted::point();
    let log = tmp.path().join("log");
    let m = Mounted::run(
        mtmp,
        dir.clone(),
        imgfs_cmd([OsStr::new("mount"), layout.as_os_str(), dir.as_os_str()])
            .arg("--cache-dir")
            .arg(tmp.path().join("cache"))
            .arg("--log-file")
            .arg(&log),
    );
    for _ in 0..2 {
        let err = list_dir(&m.dir.join("images/edge/rootfs")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        std::thread::sleep(Duration::from_millis(1500));
    }
    let hex = top.trim_start_matches("sha256:");
    wait_until(
        Duration::from_secs(5),
        "the corrupt layer failed in imgfs status",
        || {
            st = status_json(&m.dir);
            layer_of(&st, hex)["state"] == "failed"
        },
    );
    let l = layer_of(&st, hex);
    assert_eq!(l["error"]["transient"], false);
    assert!(l["error"]["message"].as_str().unwrap().contains("bytes hash to"), "{l}");
    let text = run_imgfs([OsStr::new("status"), m.dir.as_os_str()], T).stdout_str();
    assert!(
        text.contains("failed") && text.contains("last error (permanent"),
        "{text}"
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(logged.matches("bytes hash to").count(), 1, "built again:\n{logged}");
}

/// A copy of the edge image's layout under `dir` whose top layer has one wrong byte (the gzip
/// MTIME: it still inflates, its digest is wrong), and that layer's digest.
pub(crate) fn corrupt_edge_layout(dir: &Path) -> (PathBuf, String) {
    let layout = crate::layers::copy_layout(dir);
    let manifest = crate::layers::edge_manifest(&layout);
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = layout.join("blobs/sha256").join(top.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    (layout, top)
}
