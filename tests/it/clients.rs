//! Every image tool accepts the mount (issue 16), for every source kind: OCI layout,
//! oci-archive, docker save (Docker <= 24, skopeo's docker-archive, the v1 format), a Docker 25
//! style archive (with and without ref names in index.json), `dir:` with schema2 and with OCI
//! manifests, and a registry holding schema2, a Docker manifest list, OCI and zstd images. For each:
//!
//! - every ref: `skopeo inspect oci:MNT:REF` (the digest index.json names), `skopeo copy
//!   oci:MNT:REF oci:...`, and `umoci unpack --image MNT:REF` whose rootfs equals the mount's
//!   `images/<ref>/rootfs/` (not for zstd layers, which umoci 0.4 cannot read, nor for a
//!   multi-platform ref);
//! - `tar -C MNT -cf - --exclude=./images . | docker load` (exactly the command docs/layout.md
//!   gives; dockerd 20.10, which reads only manifest.json) then `docker image inspect` of every
//!   image manifest.json lists (running is impossible here), and `ctr images import` of the same
//!   tar (containerd 1.6);
//! - `oci-image-tool validate --type image` on a `--layout-only` mount.
//!
//! One dockerd and one containerd serve the whole module; they are stopped (and their roots
//! removed) when the test process ends, by PID.

use crate::registry::{shared, Daemon};
use crate::rootfs::{assert_same_tree, dump};
use crate::util::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The Debian client matching dockerd 20.10 (/usr/local/bin/docker may be another one).
const DOCKER_CLI: &str = "/usr/bin/docker";

/// dockerd and containerd, started once for the module.
struct Engines {
    docker_sock: PathBuf,
    containerd_sock: PathBuf,
    /// docker load, inspect and rmi of one case at a time: cases share images (the same config
    /// from several formats), and one case's rmi must not remove another's image.
    docker_lock: Mutex<()>,
    _daemons: Vec<Daemon>,
}

fn engines() -> &'static Engines {
    static E: OnceLock<Engines> = OnceLock::new();
    E.get_or_init(|| {
        require(&["dockerd", "containerd", "ctr", "tar"]);
        assert!(Path::new(DOCKER_CLI).is_file(), "{DOCKER_CLI} missing: {INSTALL_HINT}");
        // Kept past this process: the daemon's wrapper removes it after stopping the daemon.
        let dir = tempdir().keep();
        let d = dir.join("docker");
        let c = dir.join("containerd");
        for sub in [d.join("root"), d.join("exec"), c.clone()] {
            std::fs::create_dir_all(&sub).unwrap();
        }
        let docker_sock = d.join("docker.sock");
        let docker = Daemon::spawn_cleaning(
            &dir.join("dockerd.log"),
            &[
                "/usr/sbin/dockerd".into(),
                "--data-root".into(),
                p(&d.join("root")),
                "--exec-root".into(),
                p(&d.join("exec")),
                "-H".into(),
                format!("unix://{}", p(&docker_sock)),
                "-p".into(),
                p(&d.join("docker.pid")),
                "--storage-driver".into(),
                "vfs".into(),
                "--iptables=false".into(),
                "--ip6tables=false".into(),
                "--ip-forward=false".into(),
                "--ip-masq=false".into(),
                "--bridge=none".into(),
            ],
            &dir,
        );
        let containerd_sock = c.join("containerd.sock");
        std::fs::write(
            c.join("config.toml"),
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"\"\n",
                root = p(&c.join("root")),
                state = p(&c.join("state")),
                sock = p(&containerd_sock),
            ),
        )
        .unwrap();
        let containerd = Daemon::spawn(
            &dir.join("containerd.log"),
            &["containerd".into(), "--config".into(), p(&c.join("config.toml"))],
            &[],
        );
        let e = Engines {
            docker_sock,
            containerd_sock,
            docker_lock: Mutex::new(()),
            _daemons: vec![docker, containerd],
        };
        let started = Instant::now();
        loop {
            let up = |cmd: &mut Command| run(cmd, Duration::from_secs(10)).ok();
            if up(e.docker().arg("version")) && up(e.ctr("default").arg("version")) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "dockerd or containerd did not start: see {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    })
}

impl Engines {
    fn docker(&self) -> Command {
        let mut c = Command::new(DOCKER_CLI);
        c.arg("-H").arg(format!("unix://{}", p(&self.docker_sock)));
        c
    }

    fn ctr(&self, namespace: &str) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.containerd_sock).args(["-n", namespace]);
        c
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// What one source must give.
struct Case<'a> {
    /// Also the containerd namespace.
    name: &'a str,
    source: String,
    args: Vec<String>,
    /// Every ref index.json must name.
    refs: Vec<String>,
    /// Docker tags `docker load` must create (besides loading every manifest.json image).
    docker_tags: Vec<String>,
    /// zstd layers: no umoci (0.4 cannot read them); dockerd 20.10 refuses to load them and
    /// oci-image-tool 1.0.0-rc1 to validate them (both predate zstd layers).
    zstd: bool,
}

impl Case<'_> {
    fn new<'a>(name: &'a str, source: impl Into<String>, refs: &[&str], docker_tags: &[&str]) -> Case<'a> {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Case {
            name,
            source: source.into(),
            args: Vec::new(),
            refs: owned(refs),
            docker_tags: owned(docker_tags),
            zstd: false,
        }
    }
}

/// Runs every client against a mount of the case; returns the mount for further checks.
fn check(case: &Case<'_>) -> Mount {
    require(&["skopeo", "umoci", "oci-image-tool"]);
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    let m = Mount::with_args(&case.source, &args);
    let index = m.json("index.json");
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let named: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_owned)
        .collect();
    let want: BTreeSet<String> = case.refs.iter().map(|r| r.to_string()).collect();
    assert_eq!(named, want, "{}: ref names of index.json", case.name);
    for e in &entries {
        let mt = e["mediaType"].as_str().unwrap_or("");
        assert!(
            mt.starts_with("application/vnd.oci.image."),
            "{}: index.json lists {mt}",
            case.name
        );
    }
    for r in &case.refs {
        oci_clients(case, &m, r);
    }
    docker_load(case, &m);
    ctr_import(case, &m);
    validate_layout(case, &args);
    m
}

/// skopeo inspect, skopeo copy and umoci unpack of oci:MNT:REF.
fn oci_clients(case: &Case<'_>, m: &Mount, r: &str) {
    let what = format!("{}: oci:MNT:{r}", case.name);
    let mnt = p(&m.dir);
    let entry = m.json("index.json")["manifests"]
        .as_array()
        .and_then(|es| {
            es.iter()
                .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == r)
                .cloned()
        })
        .unwrap_or_else(|| panic!("{what}: not in index.json"));
    let o = run(
        Command::new("skopeo").arg("inspect").arg(format!("oci:{mnt}:{r}")),
        CMD_TIMEOUT,
    );
    assert!(o.ok(), "{what}: skopeo inspect: {}", o.stderr_str());
    let info: Value = serde_json::from_slice(&o.stdout).expect("skopeo inspect JSON");
    let index_ref = entry["mediaType"] == MT_INDEX;
    if !index_ref {
        assert_eq!(info["Digest"], entry["digest"], "{what}: skopeo inspect digest");
    }
    let tmp = tempdir();
    let copy = tmp.path().join("copy");
    let o = run(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("oci:{mnt}:{r}"))
            .arg(format!("oci:{}:copy", p(&copy))),
        CMD_TIMEOUT,
    );
    assert!(o.ok(), "{what}: skopeo copy: {}", o.stderr_str());
    let copied = run(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci:{}:copy", p(&copy))),
        CMD_TIMEOUT,
    )
    .assert_ok();
    let config: Value = serde_json::from_slice(&copied.stdout).unwrap();
    let rootfs = if index_ref {
        None
    } else {
        let dir = format!("images/{}", escape_ref(r));
        assert_eq!(
            config["rootfs"],
            m.json(&format!("{dir}/config.json"))["rootfs"],
            "{what}: skopeo copy gives the image's diff_ids"
        );
        Some(dir)
    };
    let (Some(dir), false) = (rootfs, case.zstd) else {
        return;
    };
    let bundle = tmp.path().join("bundle");
    let o = run(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{mnt}:{r}"))
            .arg(&bundle),
        CMD_TIMEOUT,
    );
    assert!(o.ok(), "{what}: umoci unpack: {}{}", o.stdout_str(), o.stderr_str());
    assert_same_tree(
        &format!("{what} (umoci unpack)"),
        &dump(&m.path(&format!("{dir}/rootfs"))),
        &dump(&bundle.join("rootfs")),
    );
}

/// The tar of the layout, exactly as docs/layout.md gives it.
const TAR_LAYOUT: &str = r#"tar -C "$1" -cf - --exclude=./images ."#;

/// `tar ... | docker load`, then `docker image inspect` of every image manifest.json lists.
fn docker_load(case: &Case<'_>, m: &Mount) {
    let e = engines();
    let _one = e.docker_lock.lock().unwrap_or_else(|p| p.into_inner());
    let docker = format!("{DOCKER_CLI} -H unix://{}", p(&e.docker_sock));
    let o = run(
        Command::new("bash")
            .arg("-c")
            .arg(format!("set -o pipefail; {TAR_LAYOUT} | {docker} load"))
            .arg("sh")
            .arg(&m.dir),
        CMD_TIMEOUT,
    );
    if case.zstd {
        // dockerd 20.10 decompresses gzip only (zstd came with Docker 23).
        assert!(!o.ok(), "{}: docker 20.10 loaded zstd layers", case.name);
        assert!(
            o.stderr_str().contains("archive/tar: invalid tar header"),
            "{}: {}",
            case.name,
            o.stderr_str()
        );
        return;
    }
    assert!(
        o.ok(),
        "{}: docker load: {}{}",
        case.name,
        o.stdout_str(),
        o.stderr_str()
    );
    let loads = m.json("manifest.json");
    let loads = loads.as_array().expect("manifest.json is a list");
    assert!(!loads.is_empty(), "{}: manifest.json lists no image", case.name);
    let mut tags = BTreeSet::new();
    let mut ids = Vec::new();
    for l in loads {
        let config = l["Config"].as_str().unwrap();
        let id = format!(
            "sha256:{}",
            config.strip_prefix("blobs/sha256/").expect("a blobs/ path")
        );
        let o = run(e.docker().args(["image", "inspect", &id]), CMD_TIMEOUT);
        assert!(o.ok(), "{}: docker image inspect {id}: {}", case.name, o.stderr_str());
        let info: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(info[0]["Id"], id, "{}", case.name);
        let cfg: Value = serde_json::from_slice(&m.read(config)).unwrap();
        assert_eq!(
            info[0]["RootFS"]["Layers"], cfg["rootfs"]["diff_ids"],
            "{}: layers Docker loaded",
            case.name
        );
        for t in info[0]["RepoTags"].as_array().into_iter().flatten() {
            tags.insert(t.as_str().unwrap_or_default().to_owned());
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let want: BTreeSet<String> = case.docker_tags.iter().map(|t| t.to_string()).collect();
    assert_eq!(tags, want, "{}: tags after docker load", case.name);
    // The next case loads its layers afresh.
    let o = run(e.docker().args(["rmi", "-f"]).args(&ids), CMD_TIMEOUT);
    assert!(o.ok(), "{}: docker rmi: {}", case.name, o.stderr_str());
}

/// `ctr images import` of the same tar: every image index.json names is imported.
fn ctr_import(case: &Case<'_>, m: &Mount) {
    let e = engines();
    let o = run(
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; {TAR_LAYOUT} | ctr --address \"$2\" -n \"$3\" images import --digests --base-name imgfs.test/\"$3\" -"
            ))
            .arg("sh")
            .arg(&m.dir)
            .arg(&e.containerd_sock)
            .arg(case.name),
        CMD_TIMEOUT,
    );
    assert!(
        o.ok(),
        "{}: ctr images import: {}{}",
        case.name,
        o.stdout_str(),
        o.stderr_str()
    );
    let ls = run(e.ctr(case.name).args(["images", "ls"]), CMD_TIMEOUT).assert_ok();
    let digests: BTreeSet<String> = ls
        .stdout_str()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    for entry in m.json("index.json")["manifests"].as_array().into_iter().flatten() {
        let d = entry["digest"].as_str().unwrap_or_default();
        assert!(
            digests.contains(d),
            "{}: ctr images ls has no image {d}:\n{}",
            case.name,
            ls.stdout_str()
        );
    }
}

/// `oci-image-tool validate --type image` on a `--layout-only` mount of the same source.
fn validate_layout(case: &Case<'_>, args: &[&str]) {
    let m = Mount::with_args(&case.source, &[args, &["--layout-only"]].concat());
    assert!(!m.path("images").exists(), "{}: --layout-only shows images/", case.name);
    let o = run(
        Command::new("oci-image-tool")
            .args(["validate", "--type", "image"])
            .arg(&m.dir),
        CMD_TIMEOUT,
    );
    if case.zstd {
        // oci-image-tool 1.0.0-rc1 predates image-spec 1.1's zstd layers.
        let err = o.stderr_str();
        assert!(
            !o.ok() && err.contains(r#"invalid descriptor MediaType \"application/vnd.oci.image.layer.v1.tar+zstd\""#),
            "{}: oci-image-tool validate: {err}",
            case.name
        );
        return;
    }
    assert!(
        o.ok() && o.stdout_str().contains("Validation succeeded"),
        "{}: oci-image-tool validate: {}{}",
        case.name,
        o.stdout_str(),
        o.stderr_str()
    );
}

/// A registry case: the shared registry's image `image`, whose refs are `refs` (with the
/// registry's host in front), flags to reach it. Tagged refs are Docker tags too.
fn registry_case<'a>(name: &'a str, image: &str, refs: &[&str], cache: &Path) -> Case<'a> {
    let reg = shared();
    let refs: Vec<String> = refs.iter().map(|r| format!("{}/{r}", reg.host)).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let tags: Vec<&str> = refs.iter().copied().filter(|r| !r.contains('@')).collect();
    let mut c = Case::new(name, reg.url(image), &refs, &tags);
    c.args = reg.args(cache);
    c
}

// ------------------------------------------------------------------------------------------------
// Local sources
// ------------------------------------------------------------------------------------------------

#[test]
fn clients_oci_layout() {
    check(&Case::new("oci", p(&fx("oci")), &["v1", "v2", "latest"], &[]));
}

#[test]
fn clients_oci_archive() {
    check(&Case::new("oci-archive", p(&fx("oci-archive.tar")), &["v2"], &[]));
}

#[test]
fn clients_docker_save_legacy() {
    let src = fx_required("docker-archive-multi.tar");
    let m = check(&Case::new(
        "docker-save",
        p(&src),
        &["imgfs/test:v1", "imgfs/test:v2"],
        &["imgfs/test:v1", "imgfs/test:v2"],
    ));
    // The archive's own manifest.json, byte-exact, beside the one docker load reads.
    let own = SourceFiles::open(&src).get("manifest.json").unwrap();
    assert_eq!(m.read("manifest.source.json"), own);
}

#[test]
fn clients_docker_archive_skopeo_and_v1() {
    check(&Case::new(
        "docker-archive",
        p(&fx("docker-archive.tar")),
        &["docker.io/imgfs/test:v2", "docker.io/imgfs/test:latest"],
        &["imgfs/test:v2", "imgfs/test:latest"],
    ));
    check(&Case::new(
        "docker-v1",
        p(&fx("v1-legacy.tar")),
        &["legacy:1"],
        &["legacy:1"],
    ));
}

#[test]
fn clients_docker_25_archive() {
    let m = check(&Case::new(
        "docker-25",
        p(&fx_required("containerd-export.tar")),
        &["v2"],
        &["imgfs/test:v2"],
    ));
    assert_eq!(m.ls("images"), set(&["v2"]));
}

/// Docker >= 25 archives whose index.json has no ref names: names from manifest.json's
/// RepoTags; an image saved untagged keeps its digest name.
#[test]
fn clients_docker_25_archive_named_by_repo_tags() {
    let tmp = tempdir();
    let tagged = tmp.path().join("tagged.tar");
    let untagged = tmp.path().join("untagged.tar");
    strip_ref_names(&fx_required("containerd-export.tar"), &tagged, false);
    strip_ref_names(&fx_required("containerd-export.tar"), &untagged, true);
    let m = check(&Case::new(
        "repo-tags",
        p(&tagged),
        &["imgfs/test:v2"],
        &["imgfs/test:v2"],
    ));
    assert_eq!(ref_dirs(&m), set(&["imgfs/test:v2"]));
    let digest = expect("OCI_V2_MANIFEST");
    assert_eq!(m.json("index.json")["manifests"][0]["digest"], digest);
    drop(m);
    let m = check(&Case::new("untagged", p(&untagged), &[], &[]));
    assert_eq!(m.ls("images"), set(&[digest]));
    assert_eq!(
        m.read("index.json"),
        SourceFiles::open(&untagged).get("index.json").unwrap(),
        "an untagged archive's index.json is shown as it is"
    );
}

/// containerd-export.tar with its index.json annotations removed (and, `untag`, its
/// manifest.json RepoTags emptied), as some Docker >= 25 writers leave them.
fn strip_ref_names(src: &Path, out: &Path, untag: bool) {
    let script = r#"
import io, json, sys, tarfile
src, out, untag = sys.argv[1], sys.argv[2], sys.argv[3] == '1'
with tarfile.open(src) as t, tarfile.open(out, 'w', format=tarfile.USTAR_FORMAT) as o:
    for m in t.getmembers():
        data = t.extractfile(m).read() if m.isfile() else None
        if m.name == 'index.json':
            idx = json.loads(data)
            for e in idx['manifests']:
                e.pop('annotations', None)
            data = json.dumps(idx, separators=(',', ':')).encode()
        if m.name == 'manifest.json' and untag:
            man = json.loads(data)
            for e in man:
                e['RepoTags'] = None
            data = json.dumps(man).encode()
        if data is None:
            o.addfile(m)
        else:
            m.size = len(data)
            o.addfile(m, io.BytesIO(data))
"#;
    run(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(src)
            .arg(out)
            .arg(if untag { "1" } else { "0" }),
        CMD_TIMEOUT,
    )
    .assert_ok();
}

#[test]
fn clients_dir_oci() {
    check(&Case::new("dir-oci", p(&fx("dir")), &["latest"], &[]));
}

/// `dir:` holding a Docker schema2 manifest: index.json points at its OCI conversion; the
/// original stays byte-exact in blobs/ and as images/latest/manifest.json.
#[test]
fn clients_dir_schema2() {
    let tmp = tempdir();
    let dir = tmp.path().join("dir");
    run(
        Command::new("skopeo")
            .args(["copy", "-q", "--format", "v2s2"])
            .arg(format!("oci:{}:v2", p(&fx("oci"))))
            .arg(format!("dir:{}", p(&dir))),
        CMD_TIMEOUT,
    )
    .assert_ok();
    let m = check(&Case::new("dir-schema2", format!("dir:{}", p(&dir)), &["latest"], &[]));
    let own = std::fs::read(dir.join("manifest.json")).unwrap();
    assert_eq!(m.read("images/latest/manifest.json"), own);
    assert!(m.path(&format!("blobs/sha256/{}", sha256_bytes(&own))).is_file());
    check_conversion(&m, "images/latest", &own);
    // Stable: another mount (no shared cache) shows the same converted bytes.
    let again = Mount::with_args(format!("dir:{}", p(&dir)), &["--no-cache"]);
    assert_eq!(again.read("index.json"), m.read("index.json"));
}

/// `rel/manifest.oci.json` is `original` with its media types mapped to OCI's and nothing else
/// changed, and index.json names it.
fn check_conversion(m: &Mount, rel: &str, original: &[u8]) {
    let converted = m.read(&format!("{rel}/manifest.oci.json"));
    let mut want: Value = serde_json::from_slice(original).unwrap();
    let map = |v: &mut Value| {
        let mt = v["mediaType"].as_str().unwrap_or_default();
        let new = match mt {
            "application/vnd.docker.distribution.manifest.v2+json" => MT_MANIFEST,
            "application/vnd.docker.container.image.v1+json" => "application/vnd.oci.image.config.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
            other => panic!("unexpected media type {other}"),
        };
        v["mediaType"] = new.into();
    };
    map(&mut want);
    map(&mut want["config"]);
    for l in want["layers"].as_array_mut().unwrap() {
        map(l);
    }
    let got: Value = serde_json::from_slice(&converted).unwrap();
    assert_eq!(got, want, "{rel}/manifest.oci.json");
    let digest = format!("sha256:{}", sha256_bytes(&converted));
    let listed = m.json("index.json")["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["digest"] == digest.as_str());
    assert!(listed, "index.json does not name {digest}");
}

// ------------------------------------------------------------------------------------------------
// Registry sources
// ------------------------------------------------------------------------------------------------

#[test]
fn clients_registry_schema2_and_pinned_digest() {
    let cache = tempdir();
    let host = &shared().host;
    let m = check(&registry_case(
        "reg-schema2",
        "imgfs/docker:v2",
        &["imgfs/docker:v2"],
        cache.path(),
    ));
    let dir = format!("images/{host}/imgfs/docker:v2");
    let own = m.read(&format!("{dir}/manifest.json"));
    check_conversion(&m, &dir, &own);
    let original = format!("sha256:{}", sha256_bytes(&own));
    let converted = m.json("index.json")["manifests"][0]["digest"].clone();
    drop(m);
    // Pinned to the original's digest: it resolves, and keeps its name.
    let pinned = format!("imgfs/docker@{original}");
    let m = check(&registry_case("reg-pinned", &pinned, &[pinned.as_str()], cache.path()));
    assert_eq!(ref_dirs(&m), set(&[format!("{host}/{pinned}").as_str()]));
    assert_eq!(m.json("index.json")["manifests"][0]["digest"], converted);
}

#[test]
fn clients_registry_docker_manifest_list() {
    let cache = tempdir();
    let host = &shared().host;
    let m = check(&registry_case(
        "reg-list",
        "imgfs/multi-docker:1",
        &["imgfs/multi-docker:1", "imgfs/multi-docker:1@index"],
        cache.path(),
    ));
    // The list as pulled, its OCI conversion beside it, naming the converted manifests.
    let all = format!("images/{host}/imgfs/multi-docker:1@index");
    let list = m.json(&format!("{all}/index.json"));
    assert_eq!(list["mediaType"], MT_DOCKER_LIST);
    let oci = m.json(&format!("{all}/index.oci.json"));
    assert_eq!(oci["mediaType"], MT_INDEX);
    for (i, child) in oci["manifests"].as_array().unwrap().iter().enumerate() {
        assert_eq!(child["mediaType"], MT_MANIFEST);
        assert_eq!(child["platform"], list["manifests"][i]["platform"]);
        let arch = child["platform"]["architecture"].as_str().unwrap();
        let converted = m.read(&format!("{all}/linux-{arch}/manifest.oci.json"));
        assert_eq!(child["digest"], format!("sha256:{}", sha256_bytes(&converted)));
    }
}

#[test]
fn clients_registry_oci() {
    let cache = tempdir();
    let host = &shared().host;
    let m = check(&registry_case(
        "reg-oci",
        "imgfs/oci:v2",
        &["imgfs/oci:v2"],
        cache.path(),
    ));
    assert_eq!(
        m.json("index.json")["manifests"][0]["digest"],
        expect("OCI_V2_MANIFEST")
    );
    assert!(
        !m.path(&format!("images/{host}/imgfs/oci:v2/manifest.oci.json"))
            .exists(),
        "an OCI manifest is not converted"
    );
}

#[test]
fn clients_registry_zstd() {
    let cache = tempdir();
    let mut c = registry_case("reg-zstd", "imgfs/zstd:v2", &["imgfs/zstd:v2"], cache.path());
    c.zstd = true;
    check(&c);
}

/// The module's tar command is the one docs/layout.md gives.
#[test]
fn clients_tar_command_is_the_documented_one() {
    let doc = std::fs::read_to_string(crate_root().join("docs/layout.md")).unwrap();
    let documented = TAR_LAYOUT.replace("\"$1\"", "MNT");
    assert!(
        doc.contains(&format!("{documented} | docker load")),
        "docs/layout.md does not give `{documented} | docker load`"
    );
}
