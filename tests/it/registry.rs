//! Registry references (issue 5) against a real registry: Debian's `docker-registry`
//! (Distribution 2.8) started on 127.0.0.1 by the tests, images pushed with `skopeo copy`.
//!
//! - one shared plain-HTTP registry holds the fixture images (OCI and Docker media types, an
//!   OCI index and a Docker manifest list, gzip and zstd layers, the edge-case image);
//! - registries of their own for basic auth over TLS, token auth (tests/registry/token_server.py
//!   signs the JWTs Distribution verifies), and the fault tests (stopped or killed registry);
//! - tests/registry/proxy.py sits in front of a registry to count requests, corrupt a blob,
//!   redirect blobs to "storage" URLs with tokens in the query, cut streams, or answer 503.
//!
//! Every daemon runs under a shell that kills it when the test process goes away (its stdin is
//! a pipe from us), and the guards below stop it by PID.

use crate::rootfs::{assert_same_tree, dump, edge};
use crate::util::{
    crate_root, fixtures, force_unmount, imgfs, is_mounted, require, run, run_imgfs, tempdir, tree_dump, Mount,
    ERROR_TIMEOUT,
};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const EIO: i32 = 5;

#[test]
fn registry_images_show_the_same_tree_as_local_sources() {
    let reg = shared();
    let fx = fixtures();
    let cases = [
        (
            "imgfs/oci:v2",
            format!("oci:{}:v2", fx.join("oci").display()),
            "v2",
            true,
        ),
        (
            "imgfs/zstd:v2",
            format!("oci:{}:v2", fx.join("oci-zstd").display()),
            "v2",
            true,
        ),
        // skopeo converts to Docker schema2 on push: other digests, same files.
        (
            "imgfs/docker:v2",
            format!("oci:{}:v2", fx.join("oci").display()),
            "v2",
            false,
        ),
    ];
    for (name, local, r, same_digests) in cases {
        let cache = tempdir();
        let remote = mount(reg.url(name), &reg.args(cache.path()));
        let here = Mount::with_args(&local, &["--no-cache"]);
        let rdir = image_dir(&remote);
        let ldir = format!("images/{r}");
        assert_eq!(
            rdir,
            format!("images/{}/{name}", reg.host),
            "the image's path is its reference"
        );
        assert_eq!(
            tree_dump(&remote.path(&format!("{rdir}/rootfs"))),
            tree_dump(&here.path(&format!("{ldir}/rootfs"))),
            "{name}: rootfs differs from {local}"
        );
        assert_eq!(
            remote.read(&format!("{rdir}/config.json")),
            here.read(&format!("{ldir}/config.json"))
        );
        let manifest = remote.json(&format!("{rdir}/manifest.json"));
        if same_digests {
            assert_eq!(
                remote.read(&format!("{rdir}/manifest.json")),
                here.read(&format!("{ldir}/manifest.json"))
            );
            let (mine, local) = (remote.ls("blobs/sha256"), here.ls("blobs/sha256"));
            assert!(mine.is_subset(&local), "{name}: {mine:?} not in {local:?}");
        } else {
            assert_eq!(
                manifest["mediaType"],
                "application/vnd.docker.distribution.manifest.v2+json"
            );
        }
        // Every blob hashes to its name, layers included (read through blobs/).
        for hex in remote.ls("blobs/sha256") {
            let bytes = remote.read(&format!("blobs/sha256/{hex}"));
            assert_eq!(crate::util::sha256_bytes(&bytes), hex, "{name}: blob {hex}");
        }
        // index.json names the image by its full reference, shown as a path under images/.
        let index = remote.json("index.json");
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            format!("{}/{name}", reg.host)
        );
        assert_eq!(remote.ls("images"), [reg.host.clone()].into());
        let _ = r;
    }
}

#[test]
fn registry_multi_platform_picks_the_host_or_platform_flag_and_lists_every_platform() {
    let reg = shared();
    for name in ["imgfs/multi:1", "imgfs/multi-docker:1"] {
        let cache = tempdir();
        let m = mount(reg.url(name), &reg.args(cache.path()));
        let (repo, last) = name.rsplit_once('/').unwrap();
        let dir = format!("images/{}/{repo}", reg.host);
        assert_eq!(m.ls(&dir), [last.to_owned(), format!("{last}@index")].into(), "{name}");
        let (img, all_dir) = (format!("{dir}/{last}"), format!("{dir}/{last}@index"));
        assert_eq!(
            m.json(&format!("{img}/config.json"))["architecture"],
            host_arch(),
            "{name}"
        );
        assert!(m.path(&format!("{img}/rootfs/etc")).is_dir(), "{name}");
        let all = m.ls(&all_dir);
        for want in ["index.json", "linux-amd64", "linux-arm64"] {
            assert!(all.contains(want), "{name}: {all_dir} lacks {want}: {all:?}");
        }
        assert_eq!(
            m.json(&format!("{all_dir}/linux-arm64/config.json"))["architecture"],
            "arm64"
        );
        drop(m);

        let m = mount(
            reg.url(name),
            &[reg.args(cache.path()), vec!["--platform".into(), "linux/arm64".into()]].concat(),
        );
        assert_eq!(m.json(&format!("{img}/config.json"))["architecture"], "arm64", "{name}");
        drop(m);

        let o = run_imgfs(
            [
                &["ls".to_owned(), reg.url(name)][..],
                &reg.args(cache.path()),
                &["--platform".into(), "linux/s390x".into()],
            ]
            .concat(),
            ERROR_TIMEOUT,
        );
        assert!(!o.ok(), "{name}: a missing platform must fail");
        let err = one_line_error(&o);
        assert!(
            err.contains("linux/s390x") && err.contains("linux/amd64") && err.contains("linux/arm64"),
            "{name}: {err}"
        );
    }
}

/// `--image` mounts the registry image's rootfs at the mount point; `--platform` picks it.
#[test]
fn registry_image_mount_shows_the_rootfs_at_the_top() {
    let reg = shared();
    let cache = tempdir();
    let url = reg.url("imgfs/multi:1");
    let args = reg.args(cache.path());
    let full = mount(
        &url,
        &[args.clone(), vec!["--platform".into(), "linux/arm64".into()]].concat(),
    );
    let want = tree_dump(&full.path(&format!("{}/rootfs", image_dir(&full))));
    drop(full);
    let one = mount(
        &url,
        &[
            args.clone(),
            vec!["--image".into(), "--platform".into(), "linux/arm64".into()],
        ]
        .concat(),
    );
    assert_eq!(tree_dump(&one.dir), want);
    drop(one);
    let named = format!("{}/imgfs/multi:1", reg.host);
    let one = mount(
        &url,
        &[
            args,
            vec!["--image".into(), named, "--platform".into(), "linux/arm64".into()],
        ]
        .concat(),
    );
    assert_eq!(tree_dump(&one.dir), want);
}

#[test]
fn registry_reference_by_digest_is_pinned_and_bare_references_work() {
    let reg = shared();
    let cache = tempdir();
    let digest = crate::util::expect("OCI_V2_MANIFEST").to_owned();
    // A bare reference (no docker://) naming its registry, pinned by digest.
    let bare = format!("{}/imgfs/oci@{digest}", reg.host);
    let m = mount(&bare, &reg.args(cache.path()));
    let dir = format!("images/{}/imgfs/oci@{digest}", reg.host);
    assert_eq!(image_dir(&m), dir);
    assert_eq!(
        crate::util::sha256_bytes(&m.read(&format!("{dir}/manifest.json"))),
        digest["sha256:".len()..]
    );
    drop(m);
    // The same digest under another repository does not exist there.
    let o = run_imgfs(
        [
            &[
                "inspect".to_owned(),
                format!("docker://{}/imgfs/zstd@{digest}", reg.host),
            ][..],
            &reg.args(cache.path()),
        ]
        .concat(),
        ERROR_TIMEOUT,
    );
    assert!(!o.ok());
    assert!(
        one_line_error(&o).contains("not found in the registry"),
        "{}",
        o.stderr_str()
    );
    // A path that exists wins over a reference of the same spelling.
    let o = run_imgfs(["inspect", "src/main.rs"], ERROR_TIMEOUT);
    assert!(!one_line_error(&o).contains("docker://"), "{}", o.stderr_str());
}

#[test]
fn registry_rootfs_equals_umoci_unpack() {
    let reg = shared();
    let want = dump(&edge().join("bundle/rootfs"));
    let cache = tempdir();
    for pass in ["cold cache", "warm cache"] {
        let m = mount(reg.url("imgfs/edge:1"), &reg.args(cache.path()));
        assert_same_tree(
            &format!("registry ({pass})"),
            &dump(&m.path(&format!("{}/rootfs", image_dir(&m)))),
            &want,
        );
    }
}

#[test]
fn registry_blobs_read_by_range_and_layers_downloaded_once_into_the_cache() {
    let reg = shared();
    let proxy = Proxy::start(reg, &[]);
    let cache = tempdir();
    let url = format!("docker://{}/imgfs/oci:v2", proxy.host);
    let args = [reg.args(cache.path()), vec!["-o".into(), "tls_verify=false".into()]].concat();
    let m = mount(&url, &args);
    let big = largest_layer(&m);
    let blob = m.path(&format!("blobs/sha256/{big}"));
    let mut buf = vec![0u8; 4096];
    let f = std::fs::File::open(&blob).unwrap();
    f.read_exact_at(&mut buf, 1 << 20).unwrap();
    let local = std::fs::read(fixtures().join(format!("oci/blobs/sha256/{big}"))).unwrap();
    assert_eq!(buf, local[1 << 20..(1 << 20) + 4096]);
    assert!(
        !cache.path().join(format!("blob-sha256-{big}")).exists(),
        "a 4 KiB read of blobs/ must not download the whole blob"
    );
    let ranged = proxy
        .log()
        .lines()
        .filter(|l| l.contains(&big) && l.ends_with(" 206"))
        .count();
    assert!(ranged >= 1, "no Range request for the layer:\n{}", proxy.log());
    // The rootfs view downloads each layer once into the cache...
    assert!(m.path(&format!("{}/rootfs/etc", image_dir(&m))).is_dir());
    assert!(cache.path().join(format!("blob-sha256-{big}")).is_file());
    drop(m);
    let before = proxy.blob_gets();
    // ...and a later mount reads it from there.
    let m = mount(&url, &args);
    assert!(!tree_dump(&m.path(&format!("{}/rootfs", image_dir(&m)))).is_empty());
    let _ = m.read(&format!("blobs/sha256/{big}"));
    assert_eq!(
        proxy.blob_gets(),
        before,
        "cached layers were fetched again:\n{}",
        proxy.log()
    );
}

#[test]
fn registry_redirects_to_storage_cut_streams_and_5xx_are_survived_without_leaking_tokens() {
    let reg = shared();
    let local = Mount::with_args(format!("oci:{}:v2", fixtures().join("oci").display()), &["--no-cache"]);
    let want = tree_dump(&local.path("images/v2/rootfs"));
    let setups: [&[&str]; 3] = [&["--redirect"], &["--cut-after", "300000"], &["--fail-first", "3"]];
    for faults in setups {
        let proxy = Proxy::start(reg, faults);
        let cache = tempdir();
        let log = cache.path().join("imgfs.log");
        let mut args = reg.args(cache.path());
        args.extend(["--log-file".into(), log.display().to_string(), "-v".into()]);
        let m = mount(format!("docker://{}/imgfs/oci:v2", proxy.host), &args);
        assert_eq!(
            tree_dump(&m.path(&format!("{}/rootfs", image_dir(&m)))),
            want,
            "{faults:?}"
        );
        for hex in m.ls("blobs/sha256") {
            assert_eq!(
                crate::util::sha256_bytes(&m.read(&format!("blobs/sha256/{hex}"))),
                hex,
                "{faults:?}"
            );
        }
        drop(m);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !text.contains("sekrit"),
            "{faults:?}: the log shows a URL token:\n{text}"
        );
        if faults[0] == "--redirect" {
            assert!(
                proxy.log().contains("/storage/"),
                "no redirect was followed:\n{}",
                proxy.log()
            );
        } else {
            assert!(text.contains("retrying"), "{faults:?}: no retry logged:\n{text}");
        }
    }
}

#[test]
fn registry_plain_http_only_when_asked() {
    let reg = shared();
    let o = run_imgfs(["inspect", "--no-cache", &reg.url("imgfs/oci:v2")], ERROR_TIMEOUT);
    assert!(!o.ok());
    let err = one_line_error(&o);
    assert!(err.contains("--tls-verify=false"), "{err}");
    assert!(
        o.elapsed < Duration::from_secs(5),
        "a TLS failure is not worth retrying: {:?}",
        o.elapsed
    );
}

#[test]
fn registry_missing_manifest_is_a_one_line_error() {
    let reg = shared();
    let dir = tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut args = vec!["mount".to_owned(), reg.url("imgfs/oci:nope"), mnt.display().to_string()];
    args.extend(reg.args(dir.path()));
    let o = run_imgfs(&args, ERROR_TIMEOUT);
    let mounted = is_mounted(&mnt);
    if mounted {
        force_unmount(&mnt);
    }
    assert!(!o.ok() && !mounted, "mount of a missing tag succeeded");
    let err = one_line_error(&o);
    assert!(
        err.contains("imgfs/oci:nope") && err.contains("manifest nope not found"),
        "{err}"
    );
}

#[test]
fn registry_basic_auth_over_tls_from_every_credential_source() {
    let reg = Registry::with_oci_v2(Setup {
        tls: true,
        basic: Some(("alice", "pa55-w0rd")),
        ..Setup::default()
    });
    let url = reg.url("imgfs/oci:v2");
    let cache = tempdir();
    let tls = ["--cert-dir".to_owned(), reg.cert_dir().display().to_string()];
    let cache_args = ["--cache-dir".to_owned(), cache.path().display().to_string()];
    let ok = |extra: &[String], env: &[(&str, &Path)]| {
        let mut cmd = Command::new(imgfs());
        cmd.args(["ls", "-R", &url]).args(&cache_args).args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = run(&mut cmd, ERROR_TIMEOUT);
        assert!(o.ok(), "{extra:?}: {}", o.stderr_str());
        let want = format!("images/{}/imgfs/oci:v2/rootfs/etc/", reg.host);
        assert!(o.stdout_str().contains(&want), "{extra:?}");
        assert!(!o.stderr_str().contains("pa55-w0rd"));
    };
    // --creds
    ok(&[&tls[..], &["--creds".into(), "alice:pa55-w0rd".into()]].concat(), &[]);
    // --authfile (containers' auth.json)
    let home = tempdir();
    let authfile = home.path().join("auth.json");
    std::fs::write(&authfile, auth_json(&reg.host, "alice", "pa55-w0rd")).unwrap();
    ok(
        &[&tls[..], &["--authfile".into(), authfile.display().to_string()]].concat(),
        &[],
    );
    // $REGISTRY_AUTH_FILE
    ok(&tls, &[("REGISTRY_AUTH_FILE", &authfile), ("HOME", home.path())]);
    // ~/.docker/config.json with a credential helper
    let bin = home.path().join("bin");
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-imgfstest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = '{}' ] || {{ echo 'credentials not found'; exit 1; }}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"pa55-w0rd\"}}' \"$server\"\n",
            reg.host
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        format!("{{\"credHelpers\":{{\"{}\":\"imgfstest\"}}}}", reg.host),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    ok(&tls, &[("HOME", home.path()), ("PATH", Path::new(&path))]);
    // --tls-verify=false instead of trusting the CA.
    ok(
        &["--tls-verify=false".into(), "--creds".into(), "alice:pa55-w0rd".into()],
        &[],
    );

    // Failures: one line, naming the reference, never the password.
    let fail = |extra: &[String], want: &str| {
        let mut cmd = Command::new(imgfs());
        cmd.args(["inspect", &url])
            .args(&cache_args)
            .args(extra)
            .env("HOME", tempdir().path());
        let o = run(&mut cmd, ERROR_TIMEOUT);
        assert!(!o.ok(), "{extra:?} succeeded");
        let err = one_line_error(&o);
        assert!(err.contains(&format!("docker://{}/imgfs/oci:v2", reg.host)), "{err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!o.stderr_str().contains("wrong-pass"), "{err}");
    };
    fail(
        &[&tls[..], &["--creds".into(), "alice:wrong-pass".into()]].concat(),
        "refused the credentials",
    );
    fail(&tls, "requires credentials");
    fail(&["--creds".into(), "alice:wrong-pass".into()], "--cert-dir");

    // A mount with credentials works like any other, and survives a bad password elsewhere.
    let m = mount(
        &url,
        &[&tls[..], &cache_args, &["--creds".into(), "alice:pa55-w0rd".into()]].concat(),
    );
    assert!(m.path(&format!("{}/rootfs/etc", image_dir(&m))).is_dir());
}

#[test]
fn registry_token_auth_gets_and_refreshes_tokens() {
    let reg = Registry::with_oci_v2(Setup {
        token: Some(("bob", "t0ken-pass", 2)),
        ..Setup::default()
    });
    let cache = tempdir();
    let log = cache.path().join("imgfs.log");
    let mut args = reg.args(cache.path());
    args.extend([
        "--creds".into(),
        "bob:t0ken-pass".into(),
        "--log-file".into(),
        log.display().to_string(),
        "-v".into(),
    ]);
    let m = mount(reg.url("imgfs/oci:v2"), &args);
    let first = reg.token_requests();
    assert!(first >= 1, "no token was asked for");
    let config = m.read(&format!("{}/config.json", image_dir(&m)));
    assert!(!config.is_empty());
    // Tokens live 2 s: after 3 s the next request needs a new one.
    std::thread::sleep(Duration::from_secs(3));
    assert!(m.path(&format!("{}/rootfs/etc", image_dir(&m))).is_dir());
    assert!(reg.token_requests() > first, "no new token after the first expired");
    drop(m);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("t0ken-pass") && !text.contains("eyJ"),
        "secrets in the log:\n{text}"
    );

    let mut bad = reg.args(cache.path());
    bad.extend(["--creds".into(), "bob:wrong-pass".into()]);
    let o = run_imgfs(
        [&["inspect".to_owned(), reg.url("imgfs/oci:v2")][..], &bad].concat(),
        ERROR_TIMEOUT,
    );
    assert!(!o.ok());
    let err = one_line_error(&o);
    assert!(err.contains("refused") && !err.contains("wrong-pass"), "{err}");
}

#[test]
fn registry_that_stops_answering_or_dies_fails_reads_with_eio_in_bounded_time() {
    let mut reg = Registry::with_oci_v2(Setup::default());
    let cache = tempdir();
    let mut args = reg.args(cache.path());
    args.extend(["--registry-timeout".into(), "2".into()]);
    let m = mount(reg.url("imgfs/oci:v2"), &args);
    let big = largest_layer(&m);

    reg.signal(libc::SIGSTOP);
    let started = Instant::now();
    let err = list_dir(&m.path(&format!("{}/rootfs", image_dir(&m))))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // The mount stays usable.
    assert!(m.ls("").contains("index.json"));
    assert!(!m.read(&format!("{}/manifest.json", image_dir(&m))).is_empty());
    reg.signal(libc::SIGCONT);

    reg.kill();
    let started = Instant::now();
    let f = std::fs::File::open(m.path(&format!("blobs/sha256/{big}"))).unwrap();
    let err = f.read_exact_at(&mut [0u8; 4096], 4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(!m.read(&format!("{}/config.json", image_dir(&m))).is_empty());
    drop(m); // unmounts cleanly (the guard checks)
}

#[test]
fn registry_blob_with_wrong_bytes_fails_with_eio_and_a_log_line() {
    let reg = shared();
    let digest = {
        let cache = tempdir();
        let m = mount(reg.url("imgfs/oci:v2"), &reg.args(cache.path()));
        largest_layer(&m)
    };
    let proxy = Proxy::start(reg, &["--corrupt", &format!("sha256:{digest}")]);
    let cache = tempdir();
    let log = cache.path().join("imgfs.log");
    let mut args = reg.args(cache.path());
    args.extend(["--log-file".into(), log.display().to_string()]);
    let m = mount(format!("docker://{}/imgfs/oci:v2", proxy.host), &args);
    let err = list_dir(&m.path(&format!("{}/rootfs", image_dir(&m))))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
    let err = std::fs::read(m.path(&format!("blobs/sha256/{digest}"))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
    assert!(
        !m.read(&format!("{}/config.json", image_dir(&m))).is_empty(),
        "the mount stays usable"
    );
    drop(m);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains(&digest) && text.contains("does not match its digest"),
        "{text}"
    );
    assert!(
        !cache.path().join(format!("blob-sha256-{digest}")).exists(),
        "a bad blob was cached"
    );
}

// ------------------------------------------------------------------------------------------------
// Helpers: registries, proxies, daemons
// ------------------------------------------------------------------------------------------------

/// The registry shared by the read-only tests, with every fixture image pushed once.
pub(crate) fn shared() -> &'static Registry {
    static SHARED: OnceLock<Registry> = OnceLock::new();
    SHARED.get_or_init(|| {
        let reg = Registry::start(Setup::default());
        let fx = fixtures();
        let oci = |rel: &str, r: &str| format!("oci:{}:{r}", fx.join(rel).display());
        reg.push(&oci("oci", "v2"), "imgfs/oci:v2", &["--format", "oci"]);
        reg.push(&oci("oci", "v2"), "imgfs/docker:v2", &["--format", "v2s2"]);
        reg.push(&oci("oci-zstd", "v2"), "imgfs/zstd:v2", &[]);
        reg.push(&oci("multi", "multi"), "imgfs/multi:1", &["--all"]);
        reg.push(
            &oci("multi", "multi"),
            "imgfs/multi-docker:1",
            &["--all", "--format", "v2s2"],
        );
        reg.push(
            &format!("oci:{}:edge", edge().join("oci").display()),
            "imgfs/edge:1",
            &[],
        );
        reg
    })
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The error line of a failed imgfs command: exactly one line.
pub(crate) fn one_line_error(o: &crate::util::Outcome) -> String {
    let text = o.stderr_str();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("imgfs: ")).collect();
    assert_eq!(lines.len(), 1, "want one error line, got:\n{text}");
    lines[0].to_owned()
}

/// Hex digest of the largest layer of the mount's image.
pub(crate) fn largest_layer(m: &Mount) -> String {
    let manifest = m.json(&format!("{}/manifest.json", image_dir(m)));
    let layers = manifest["layers"].as_array().expect("layers");
    let big = layers.iter().max_by_key(|l| l["size"].as_u64()).expect("a layer");
    big["digest"].as_str().expect("digest")["sha256:".len()..].to_owned()
}

/// The path of a registry mount's image: `images/` and its reference (index.json's first ref).
pub(crate) fn image_dir(m: &Mount) -> String {
    let index = m.json("index.json");
    let name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .expect("a ref name")
        .to_owned();
    format!("images/{name}")
}

/// `imgfs mount SRC DIR ARGS...` with owned arguments.
pub(crate) fn mount(source: impl AsRef<std::ffi::OsStr>, args: &[String]) -> Mount {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Mount::with_args(source, &args)
}

/// Lists a directory, failing if any step of it fails.
pub(crate) fn list_dir(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)?.collect()
}

pub(crate) fn auth_json(host: &str, user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("{{\"auths\":{{\"{host}\":{{\"auth\":\"{auth}\"}}}}}}")
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn wait_for_file(path: &Path, what: &str) -> String {
    let started = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A background process under `sh`, which kills it when our end of its stdin closes (also when
/// the test process dies). Stopped by PID on drop.
pub(crate) struct Daemon {
    pid: i32,
    wrapper: Child,
    _stdin: ChildStdin,
}

impl Daemon {
    pub(crate) fn spawn(log: &Path, argv: &[String], env: &[(&str, String)]) -> Daemon {
        let script =
            r#"log=$1; shift; "$@" >"$log" 2>&1 & echo $!; read _; kill -CONT $! 2>/dev/null; kill $! 2>/dev/null"#;
        Daemon::spawn_script(script, &[log], argv, env)
    }

    /// Like `spawn`, for a daemon that mounts things under `dir` (dockerd bind-mounts its data
    /// root) and may outlive every guard (kept in a static): when our end of its stdin closes,
    /// the wrapper stops it (TERM, KILL after 5 s), unmounts what is left under `dir` and
    /// removes `dir`.
    pub(crate) fn spawn_cleaning(log: &Path, argv: &[String], dir: &Path) -> Daemon {
        let script = r#"dir=$1; log=$2; shift 2; "$@" >"$log" 2>&1 & pid=$!; echo $pid; read _;
            kill $pid 2>/dev/null; i=0
            while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
            kill -9 $pid 2>/dev/null
            grep -F " $dir/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
            rm -rf "$dir""#;
        Daemon::spawn_script(script, &[dir, log], argv, &[])
    }

    fn spawn_script(script: &str, paths: &[&Path], argv: &[String], env: &[(&str, String)]) -> Daemon {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .args(paths)
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut wrapper = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        let stdin = wrapper.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("daemon pid");
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad pid line {line:?} for {argv:?}"));
        Daemon {
            pid,
            wrapper,
            _stdin: stdin,
        }
    }

    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a PID we started.
        unsafe { libc::kill(self.pid, sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGKILL);
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

#[derive(Default)]
pub(crate) struct Setup {
    /// Serve HTTPS with a self-signed certificate for 127.0.0.1.
    pub(crate) tls: bool,
    /// htpasswd basic auth (user, password).
    pub(crate) basic: Option<(&'static str, &'static str)>,
    /// Token auth: (user, password, token lifetime in seconds).
    pub(crate) token: Option<(&'static str, &'static str, u64)>,
    /// Write the access log (one line per request, with the response size) to `registry.log`.
    pub(crate) access_log: bool,
}

/// A `docker-registry serve` on 127.0.0.1 with its storage in a temporary directory.
pub(crate) struct Registry {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    push_creds: Option<String>,
    daemon: Option<Daemon>,
    _token_server: Option<Daemon>,
}

impl Registry {
    /// A registry set up as `setup` says, holding the `oci` fixture as `imgfs/oci:v2`.
    pub(crate) fn with_oci_v2(setup: Setup) -> Registry {
        let reg = Registry::start(setup);
        reg.push(
            &format!("oci:{}:v2", fixtures().join("oci").display()),
            "imgfs/oci:v2",
            &[],
        );
        reg
    }

    pub(crate) fn start(setup: Setup) -> Registry {
        require(&["docker-registry", "skopeo", "openssl", "htpasswd", "python3"]);
        let dir = tempdir();
        let d = dir.path();
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: {}}}}}\n\
             storage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            !setup.access_log,
            d.join("data").display()
        );
        if setup.tls {
            make_ca_and_server_cert(d);
            yaml += &format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                d.join("registry.crt").display(),
                d.join("registry.key").display()
            );
        }
        let mut push_creds = None;
        let mut token_server = None;
        if let Some((user, pass)) = setup.basic {
            let o = run(
                Command::new("htpasswd").args(["-Bbn", user, pass]),
                Duration::from_secs(30),
            );
            assert!(o.ok(), "htpasswd: {}", o.stderr_str());
            std::fs::write(d.join("htpasswd"), o.stdout).unwrap();
            yaml += &format!(
                "auth:\n  htpasswd: {{realm: imgfs-test, path: {}}}\n",
                d.join("htpasswd").display()
            );
            push_creds = Some(format!("{user}:{pass}"));
        }
        if let Some((user, pass, ttl)) = setup.token {
            make_cert(d, "token", "/CN=imgfs-token", None);
            let port_file = d.join("token.port");
            let argv: Vec<String> = vec![
                "python3".into(),
                crate_root()
                    .join("tests/registry/token_server.py")
                    .display()
                    .to_string(),
                "--port-file".into(),
                port_file.display().to_string(),
                "--key".into(),
                d.join("token.key").display().to_string(),
                "--cert".into(),
                d.join("token.crt").display().to_string(),
                "--issuer".into(),
                "imgfs-test-issuer".into(),
                "--service".into(),
                "imgfs-test".into(),
                "--user".into(),
                format!("{user}:{pass}"),
                "--ttl".into(),
                ttl.to_string(),
                "--log".into(),
                d.join("token-requests.log").display().to_string(),
            ];
            token_server = Some(Daemon::spawn(&d.join("token-server.log"), &argv, &[]));
            let tport = wait_for_file(&port_file, "the token server");
            yaml += &format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: imgfs-test\n    \
                 issuer: imgfs-test-issuer\n    rootcertbundle: {}\n",
                d.join("token.crt").display()
            );
            push_creds = Some(format!("{user}:{pass}"));
        }
        std::fs::write(d.join("config.yml"), yaml).unwrap();
        let mut reg = Registry {
            host: format!("127.0.0.1:{port}"),
            port,
            tls: setup.tls,
            push_creds,
            daemon: None,
            _token_server: token_server,
            dir,
        };
        reg.restart();
        reg
    }

    pub(crate) fn restart(&mut self) {
        self.daemon = None;
        let d = self.dir.path();
        let argv = vec![
            "docker-registry".to_owned(),
            "serve".into(),
            d.join("config.yml").display().to_string(),
        ];
        // Debian's registry reads its config from the argument; keep it from finding another.
        self.daemon = Some(Daemon::spawn(&d.join("registry.log"), &argv, &[]));
        wait_for_port(self.port, "docker-registry");
    }

    pub(crate) fn kill(&mut self) {
        self.daemon = None;
    }

    pub(crate) fn signal(&self, sig: i32) {
        if let Some(d) = &self.daemon {
            d.signal(sig);
        }
    }

    pub(crate) fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub(crate) fn url(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.host)
    }

    /// imgfs flags to reach this registry: the CA (TLS) or plain HTTP, and a cache directory.
    pub(crate) fn args(&self, cache: &Path) -> Vec<String> {
        let mut a = vec!["--cache-dir".to_owned(), cache.display().to_string()];
        if self.tls {
            a.extend(["--cert-dir".into(), self.cert_dir().display().to_string()]);
        } else {
            a.push("--tls-verify=false".into());
        }
        a
    }

    pub(crate) fn push(&self, src: &str, name: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "-q"]).args(extra);
        if self.tls {
            cmd.arg("--dest-cert-dir").arg(self.cert_dir());
        } else {
            cmd.arg("--dest-tls-verify=false");
        }
        if let Some(c) = &self.push_creds {
            cmd.args(["--dest-creds", c]);
        }
        cmd.arg(src).arg(format!("docker://{}/{name}", self.host));
        let o = run(&mut cmd, Duration::from_secs(180));
        assert!(o.ok(), "skopeo push of {src} failed: {}", o.stderr_str());
    }

    /// The registry's access log (with `Setup::access_log`): (method, path, status, bytes sent)
    /// of each request, in order.
    pub(crate) fn access_log(&self) -> Vec<(String, String, u16, u64)> {
        let text = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                // `... "GET /v2/... HTTP/1.1" 206 1048576 "" "imgfs/..."`
                let (_, rest) = l.split_once('"')?;
                let (request, rest) = rest.split_once('"')?;
                let mut r = request.split(' ');
                let (method, path) = (r.next()?, r.next()?);
                let mut n = rest.split_whitespace();
                let status = n.next()?.parse().ok()?;
                let bytes = n.next()?.parse().unwrap_or(0);
                Some((method.to_owned(), path.to_owned(), status, bytes))
            })
            .collect()
    }

    fn token_requests(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("token-requests.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("GET /token"))
            .count()
    }
}

/// A CA (`certs/ca.crt`, what `--cert-dir` trusts) and a server certificate for 127.0.0.1
/// signed by it (`registry.crt`, `registry.key`): webpki refuses a CA certificate as a server's.
fn make_ca_and_server_cert(d: &Path) {
    make_cert(d, "ca", "/CN=imgfs-test-ca", None);
    let ossl = |args: &[&str]| {
        let o = run(
            Command::new("openssl").args(args).current_dir(d),
            Duration::from_secs(60),
        );
        assert!(o.ok(), "openssl {args:?}: {}", o.stderr_str());
    };
    ossl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "registry.key",
        "-out",
        "registry.csr",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "registry.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "registry.crt",
    ]);
    std::fs::create_dir_all(d.join("certs")).unwrap();
    std::fs::copy(d.join("ca.crt"), d.join("certs/ca.crt")).unwrap();
}

fn make_cert(dir: &Path, name: &str, subject: &str, ext: Option<&str>) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
    ])
    .arg("-keyout")
    .arg(dir.join(format!("{name}.key")))
    .arg("-out")
    .arg(dir.join(format!("{name}.crt")));
    if let Some(e) = ext {
        cmd.args(["-addext", e]);
    }
    let o = run(&mut cmd, Duration::from_secs(60));
    assert!(o.ok(), "openssl: {}", o.stderr_str());
}

/// tests/registry/proxy.py in front of a plain-HTTP registry.
pub(crate) struct Proxy {
    pub(crate) host: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _daemon: Daemon,
}

impl Proxy {
    pub(crate) fn start(reg: &Registry, faults: &[&str]) -> Proxy {
        assert!(!reg.tls, "the proxy speaks plain HTTP to its registry");
        let dir = tempdir();
        let port_file = dir.path().join("port");
        let log = dir.path().join("requests.log");
        let mut argv: Vec<String> = vec![
            "python3".into(),
            crate_root().join("tests/registry/proxy.py").display().to_string(),
            "--upstream".into(),
            format!("http://{}", reg.host),
            "--port-file".into(),
            port_file.display().to_string(),
            "--log".into(),
            log.display().to_string(),
        ];
        argv.extend(faults.iter().map(|s| s.to_string()));
        let daemon = Daemon::spawn(&dir.path().join("proxy.log"), &argv, &[]);
        let port = wait_for_file(&port_file, "the proxy");
        Proxy {
            host: format!("127.0.0.1:{}", port.trim()),
            log,
            _dir: dir,
            _daemon: daemon,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn blob_gets(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("GET ") && l.contains("/blobs/"))
            .count()
    }
}
