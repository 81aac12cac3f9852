//! The operator's side of issue 15 items 8-10 (docs/operations.md): progress bars on a terminal
//! only, `imgfs mount --wait`, `imgfs cache du` / `prune` and `--cache-max-size`, and the
//! systemd unit of docs/operations.md run as written.

use crate::operations::{exit_within, wait_until, Mounted};
use crate::util::*;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// `cmd` (a shell command line) run by script(1) on a pseudo-terminal: what the terminal got.
fn on_terminal(cmd: &str) -> (bool, String) {
    let o = run(Command::new("script").args(["-qefc", cmd, "/dev/null"]), T);
    (o.ok(), String::from_utf8_lossy(&o.stdout).into_owned())
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn status_json(dir: &Path) -> serde_json::Value {
    let o = run_imgfs([OsStr::new("status"), dir.as_os_str(), OsStr::new("--json")], T);
    assert!(o.ok(), "imgfs status: {}", o.stderr_str());
    serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("status JSON")[0].clone()
}

#[test]
fn progress_bars_on_a_terminal_only_and_mount_wait_returns_with_every_view_built() {
    use crate::registry::{shared, Proxy};
    let proxy = Proxy::start(shared(), &["--slow", "1500000"]);
    let url = format!("docker://{}/imgfs/oci:v2", proxy.host);
    let img = format!("images/{}/imgfs/oci:v2", proxy.host);
    let bin = imgfs();

    // `imgfs ls` on a terminal: a bar while the layer downloads (escape codes, "downloading
    // sha256:..."), then the listing. In a pipe: the listing alone, not one escape code.
    let cache = tempdir();
    let (ok, tty) = on_terminal(&format!(
        "{} ls {url} {img}/rootfs --tls-verify=false --cache-dir {}",
        q(bin),
        q(cache.path())
    ));
    assert!(ok, "{tty}");
    assert!(
        tty.contains("\x1b[") && tty.contains("downloading sha256:"),
        "no bar: {tty:?}"
    );
    assert!(tty.contains("etc/"), "{tty:?}");
    let cache = tempdir();
    let o = run_imgfs(
        [
            "ls",
            &url,
            &format!("{img}/rootfs"),
            "--tls-verify=false",
            "--cache-dir",
            &cache.path().display().to_string(),
        ],
        T,
    );
    assert!(o.ok() && o.stdout_str().contains("etc/"), "{}", o.stderr_str());
    assert!(o.stderr.is_empty() && !o.stdout.contains(&0x1b), "{}", o.stderr_str());

    // `imgfs mount --wait` on a terminal: bars, then what it built and how long; returns with
    // every layer ready, and the first walk of the rootfs downloads, indexes and merges nothing.
    let cache = tempdir();
    let logs = tempdir();
    let log = logs.path().join("mount.log");
    let (tmp, dir) = Mounted::point();
    let started = Instant::now();
    let m = Mounted::run(
        tmp,
        dir.clone(),
        Command::new("script").args([
            "-qefc",
            &format!(
                "{} -v mount --wait {url} {} --tls-verify=false --cache-dir {} --log-file {}",
                q(bin),
                q(&dir),
                q(cache.path()),
                q(&log)
            ),
            "/dev/null",
        ]),
    );
    let waited = started.elapsed();
    let st = status_json(&m.dir);
    let layers = st["layers"].as_array().expect("layers");
    assert!(
        layers.len() == 3 && layers.iter().all(|l| l["state"] == "ready" && l["done"] == l["total"]),
        "--wait returned before every layer was ready: {st}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("--wait: built 1 rootfs, 3 layer trees and 3 overlay trees over 3 layers in "),
        "{text}"
    );
    let gets = proxy.blob_gets();
    let before = text.len();
    let walked = walk(&m.dir.join(format!("{img}/rootfs")));
    assert!(walked.iter().any(|p| p.ends_with("etc")), "{walked:?}");
    std::thread::sleep(Duration::from_millis(100));
    let after = std::fs::read_to_string(&log).unwrap();
    let new = &after[before..];
    assert!(
        !new.contains("indexed layer") && !new.contains(" merged in ") && !new.contains("loaded from the cache"),
        "the first walk after --wait built something: {new}"
    );
    assert_eq!(proxy.blob_gets(), gets, "the first walk after --wait downloaded");
    drop(m);
    println!("mount --wait on a terminal: {waited:?}");

    // The terminal got the bars and the summary line; a pipe gets nothing at all.
    let cache = tempdir();
    let (tmp, dir) = Mounted::point();
    let (ok, tty) = on_terminal(&format!(
        "{} mount --wait {url} {} --tls-verify=false --cache-dir {}; {} umount {}",
        q(bin),
        q(&dir),
        q(cache.path()),
        q(bin),
        q(&dir)
    ));
    drop(tmp);
    assert!(ok, "{tty}");
    assert!(
        tty.contains("\x1b[") && tty.contains("downloading sha256:"),
        "no bar: {tty:?}"
    );
    assert!(
        tty.contains(&format!(
            "imgfs: {}: built 1 rootfs, 3 layer trees and 3 overlay trees over 3 layers in ",
            dir.display()
        )),
        "{tty:?}"
    );
    let cache = tempdir();
    let m = mount_cached(OsStr::new(&url), cache.path(), &["--wait", "--tls-verify=false"]);
    assert!(status_json(&m.dir)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["state"] == "ready"));
}

/// `imgfs mount SOURCE <fresh dir> --cache-dir CACHE EXTRA...`, which must succeed.
fn mount_cached(source: &OsStr, cache: &Path, extra: &[&str]) -> Mounted {
    let (tmp, dir) = Mounted::point();
    Mounted::run(
        tmp,
        dir.clone(),
        imgfs_cmd([
            OsStr::new("mount"),
            source,
            dir.as_os_str(),
            OsStr::new("--cache-dir"),
            cache.as_os_str(),
        ])
        .args(extra),
    )
}

#[test]
fn mount_wait_fails_on_a_layer_that_cannot_be_built_and_leaves_no_mount() {
    let tmp = tempdir();
    let (layout, top) = crate::operations::corrupt_edge_layout(tmp.path());
    let (_point, dir) = Mounted::point();
    let cache = tempdir();
    let o = run(
        imgfs_cmd([
            OsStr::new("mount"),
            layout.as_os_str(),
            dir.as_os_str(),
            OsStr::new("-o"),
        ])
        .arg(format!("wait,cache_dir={}", cache.path().display())),
        T,
    );
    assert!(!o.ok(), "--wait succeeded over a corrupt layer");
    let line = crate::registry::one_line_error(&o);
    assert!(
        line.contains("--wait: ") && line.contains(&top) && line.contains("unmounting"),
        "{line}"
    );
    wait_until(Duration::from_secs(5), "the failed mount to go", || !is_mounted(&dir));
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// `imgfs cache du --json` of `dir`.
fn du(dir: &Path) -> serde_json::Value {
    let o = run_imgfs(
        [
            OsStr::new("cache"),
            OsStr::new("du"),
            OsStr::new("--json"),
            OsStr::new("--cache-dir"),
            dir.as_os_str(),
        ],
        T,
    );
    assert!(o.ok(), "imgfs cache du: {}", o.stderr_str());
    serde_json::from_slice(&o.stdout).expect("du JSON")
}

fn prune(dir: &Path, args: &[&str]) -> String {
    let o = run_imgfs(
        [
            OsStr::new("cache"),
            OsStr::new("prune"),
            OsStr::new("--cache-dir"),
            dir.as_os_str(),
        ]
        .into_iter()
        .chain(args.iter().map(OsStr::new)),
        T,
    );
    assert!(o.ok(), "imgfs cache prune {args:?}: {}", o.stderr_str());
    o.stdout_str()
}

fn files(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Sets the last use (access time) of `dir/name` to `days` days ago.
fn used_days_ago(dir: &Path, name: &str, days: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(days * 86400);
    std::fs::File::open(dir.join(name))
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(t))
        .unwrap();
}

/// `imgfs cat --no-cache SOURCE PATH`: the reference bytes.
fn cat_no_cache(source: &Path, path: &str) -> Vec<u8> {
    let o = run_imgfs(
        [
            OsStr::new("cat"),
            OsStr::new("--no-cache"),
            source.as_os_str(),
            OsStr::new(path),
        ],
        T,
    );
    assert!(o.ok(), "imgfs cat: {}", o.stderr_str());
    o.stdout
}

#[test]
fn cache_prune_evicts_least_recently_used_never_what_live_mounts_use() {
    let fx = fixtures();
    let oci = fx.join("oci");
    let archive = fx.join("docker-archive.tar");
    let cache = tempdir();
    let c = cache.path();
    // Another source's files, from a one-shot command (no live process uses them).
    let list_other = || {
        let o = run_imgfs(
            [
                OsStr::new("ls"),
                archive.as_os_str(),
                OsStr::new("images/imgfs/test:v2/rootfs"),
                OsStr::new("--cache-dir"),
                c.as_os_str(),
            ],
            T,
        );
        assert!(o.ok(), "{}", o.stderr_str());
    };
    list_other();
    let others = files(c);
    assert!(
        others.iter().any(|f| f.starts_with("layer-")) && others.iter().any(|f| f.starts_with("view-")),
        "{others:?}"
    );
    // A live mount reading its rootfs.
    let m = mount_cached(oci.as_os_str(), c, &[]);
    let rootfs = m.dir.join("images/v2/rootfs");
    let listed = walk(&rootfs);
    let file = |p: &PathBuf| p.is_file() && std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
    let regular: Vec<&PathBuf> = listed.iter().filter(|p| file(p)).collect();
    assert!(regular.len() >= 2, "{listed:?}");
    let rel = |p: &Path| format!("images/v2/rootfs/{}", p.strip_prefix(&rootfs).unwrap().display());
    assert_eq!(std::fs::read(regular[0]).unwrap(), cat_no_cache(&oci, &rel(regular[0])));
    let all = files(c);
    let live: Vec<String> = all.difference(&others).cloned().collect();
    assert!(live.iter().any(|f| f.starts_with("view-")), "{live:?}");
    wait_until(
        Duration::from_secs(5),
        "the status file to list the cache files",
        || {
            du(c)["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| live.contains(&e["name"].as_str().unwrap().to_owned()))
                .all(|e| e["used_by"][0][0] == m.dir.display().to_string())
        },
    );

    // Sizes are du -b's, file by file and in total.
    let report = du(c);
    for e in report["entries"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let o = run(Command::new("du").arg("-b").arg(c.join(name)), T);
        let du_b: u64 = o.stdout_str().split_whitespace().next().unwrap().parse().unwrap();
        assert_eq!(e["size"].as_u64(), Some(du_b), "{name}");
    }
    let o = run(Command::new("du").args(["-b", "-s"]).arg(c), T);
    let du_dir: u64 = o.stdout_str().split_whitespace().next().unwrap().parse().unwrap();
    let dir_itself = std::fs::metadata(c).unwrap().len();
    assert_eq!(report["bytes"].as_u64(), Some(du_dir - dir_itself));

    // Ages: the live mount's files are the oldest of all; the others 5, 4, 3 ... days old.
    for f in &live {
        used_days_ago(c, f, 30);
    }
    let mut lru: Vec<&String> = others.iter().collect();
    lru.sort();
    for (i, f) in lru.iter().enumerate() {
        used_days_ago(c, f, 5 + (lru.len() - i) as u64);
    }
    // lru[0] is now the least recently used file but one the live mount needs.
    let out = prune(c, &["--older-than", &format!("{}d", 5 + lru.len() - 1), "--dry-run"]);
    let wanted: Vec<&str> = lru[..2].iter().map(|s| s.as_str()).collect();
    for f in &wanted {
        assert!(out.contains(&format!("would remove {f} ")), "{out}");
    }
    assert!(out.contains("would remove 2 files"), "{out}");
    assert_eq!(files(c), all, "--dry-run removed something");
    // --max-size: least recently used first, until under the size.
    let size_of = |f: &str| std::fs::metadata(c.join(f)).unwrap().len();
    let total: u64 = all.iter().map(|f| size_of(f)).sum();
    let out = prune(c, &["--max-size", &(total - size_of(lru[0])).to_string()]);
    assert!(
        out.contains(&format!("removed {} ", lru[0])) && out.contains("removed 1 files"),
        "{out}"
    );
    assert_eq!(files(c).len(), all.len() - 1);
    // --max-size 0: every file of the others goes, none of the live mount's.
    let out = prune(c, &["--max-size", "0"]);
    assert!(out.contains("the cache stays above --max-size 0 B"), "{out}");
    assert_eq!(files(c), live.iter().cloned().collect(), "{out}");
    // The mount reads on, byte-exact, a file it had not read yet.
    assert_eq!(std::fs::read(regular[1]).unwrap(), cat_no_cache(&oci, &rel(regular[1])));

    // A status file left by a killed daemon protects nothing and is removed.
    let stale = PathBuf::from("/run/imgfs/imgfs-test-dead-daemon.json");
    let mut fake = status_json(&m.dir);
    fake["pid"] = serde_json::json!(4194305);
    std::fs::write(&stale, serde_json::to_vec(&fake).unwrap()).unwrap();
    drop(m);
    wait_until(Duration::from_secs(5), "the daemon's status file to go", || {
        du(c)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["used_by"].as_array().unwrap().is_empty())
    });
    for f in &live {
        used_days_ago(c, f, 30);
    }
    let out = prune(c, &["--max-size", "0"]);
    assert!(files(c).is_empty(), "{out}");
    assert!(!stale.exists(), "the stale status file was left");

    // --cache-max-size (as -o cache_max_size=): the daemon prunes the others' files after
    // building, keeps its own, and serves byte-exact.
    list_other();
    for f in &others {
        used_days_ago(c, f, 2);
    }
    let m = mount_cached(oci.as_os_str(), c, &["-o", "cache_max_size=1"]);
    assert_eq!(
        std::fs::read(m.dir.join(rel(regular[1]))).unwrap(),
        cat_no_cache(&oci, &rel(regular[1]))
    );
    wait_until(Duration::from_secs(10), "the daemon to prune the others' files", || {
        files(c).is_disjoint(&others)
    });
    assert!(files(c).iter().any(|f| f.starts_with("view-")), "{:?}", files(c));
    assert_eq!(
        std::fs::read(m.dir.join(rel(regular[0]))).unwrap(),
        cat_no_cache(&oci, &rel(regular[0]))
    );
}

#[test]
fn the_systemd_unit_of_the_docs_runs_as_written() {
    // No systemd here: the unit's ExecStart and ExecStop lines are run by hand, exactly as
    // systemd would for instance `imgfs@<escaped mount point>` with its EnvironmentFile.
    let doc = std::fs::read_to_string(crate_root().join("docs/operations.md")).unwrap();
    let unit = doc
        .split("# /etc/systemd/system/imgfs@.service")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the unit in docs/operations.md");
    let line = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .split('#')
            .next()
            .unwrap()
            .trim()
            .to_owned()
    };
    let (tmp, dir) = Mounted::point();
    let instance = dir.display().to_string().trim_start_matches('/').to_owned();
    let source = fixtures().join("oci");
    let opts = "ro,image=v2";
    // systemd's expansion: %I the unescaped instance, ${VAR} from the EnvironmentFile, split
    // into words.
    let expand = |l: &str| -> Vec<String> {
        l.replace("%I", &instance)
            .replace("${SOURCE}", &source.display().to_string())
            .replace("${OPTS}", opts)
            .replace("/usr/local/bin/imgfs", &imgfs().display().to_string())
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let start = expand(&line("ExecStart"));
    let stop = expand(&line("ExecStop"));
    assert!(line("EnvironmentFile").contains("%i.env"), "{unit}");
    let mut service = Command::new(&start[0]).args(&start[1..]).spawn().unwrap();
    wait_until(Duration::from_secs(10), "the unit's mount", || is_mounted(&dir));
    assert_eq!(
        std::fs::read(dir.join("etc/hello.txt")).ok(),
        Some(cat_no_cache(&source, "images/v2/rootfs/etc/hello.txt")),
    );
    let o = run(Command::new(&stop[0]).args(&stop[1..]), T);
    assert!(o.ok(), "ExecStop: {}", o.stderr_str());
    let status = exit_within(
        &mut service,
        Duration::from_secs(10),
        "ExecStart still runs after ExecStop",
    );
    assert!(status.success(), "ExecStart ended with {status}");
    assert!(!is_mounted(&dir));
    drop(tmp);
}
