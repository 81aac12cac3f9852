//! Podman runs images straight from an imgfs mount (issue 19, docs/podman.md): the mount's
//! `containers-storage/` is an additional image store of a private podman root. A two-layer
//! image (`image()`: whiteouts, an opaque directory, a file replaced by a directory, a hardlink)
//! is run from an OCI layout, a docker-archive and a registry, with the host's static busybox
//! bound in (the image has no shell of its own), and `podman image inspect` of it must equal
//! what a `podman pull` of the same source shows. (The edge-case image of tests/fixtures/edge
//! cannot be the reference: podman cannot pull it, its hardlink to a lower layer's file fails
//! "processing tar file(no such file or directory)".)
//!
//! podman 4.3 runs containers in this sandbox only with `--runtime runc` and explicit rlimits
//! (crun: "cgroups in hybrid mode not supported"; runc with podman's default rlimits: "error
//! setting rlimit type 7"). When podman cannot run containers at all, these tests fail and say why.

use crate::registry::shared;
use crate::util::{crate_root, force_unmount, imgfs, require, run, tempdir, Mount, Outcome, CMD_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Writes the two layer tars of the test image into the directory given.
const LAYERS_PY: &str = r#"
import io, os, sys, tarfile
out = sys.argv[1]
def layer(name, entries):
    with tarfile.open(os.path.join(out, name), "w", format=tarfile.PAX_FORMAT) as t:
        for path, kind, data in entries:
            ti = tarfile.TarInfo(path)
            ti.mtime, ti.mode = 1600000000, 0o755 if kind == tarfile.DIRTYPE else 0o644
            ti.type = kind
            if kind == tarfile.LNKTYPE:
                ti.linkname = data
                t.addfile(ti)
            else:
                ti.size = len(data or b"")
                t.addfile(ti, io.BytesIO(data or b""))
D, F, L = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.LNKTYPE
layer("layer1.tar", [
    ("etc", D, None), ("etc/hello", F, b"hello\n"), ("etc/keep", F, b"kept\n"),
    ("data", D, None), ("data/hl-target", F, b"linked content\n"), ("data/hl-same-layer", L, "data/hl-target"),
    ("gone-dir", D, None), ("gone-dir/sub", D, None), ("gone-dir/sub/file", F, b"gone\n"),
    ("opaque", D, None), ("opaque/lower-a", F, b"a\n"), ("opaque/lower-b", F, b"b\n"),
    ("file-becomes-dir", F, b"was a file\n"), ("readd", F, b"old\n"),
])
layer("layer2.tar", [
    ("etc", D, None), ("etc/.wh.hello", F, b""), (".wh.gone-dir", F, b""),
    ("opaque", D, None), ("opaque/.wh..wh..opq", F, b""), ("opaque/upper-c", F, b"c\n"),
    ("file-becomes-dir", D, None), ("file-becomes-dir/inside", F, b"inside\n"), ("readd", F, b"new\n"),
])
"#;

/// The test image as an OCI layout (`DIR/oci`, ref `edge`) and a docker-archive
/// (`DIR/edge-docker.tar`, tag `imgfs/edge:1`), made once per run by umoci and skopeo.
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        require(&["umoci", "skopeo", "python3"]);
        let target = imgfs().parent().and_then(Path::parent).expect("target dir");
        let out = target.join("test-fixtures-podman");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("fixture dir");
        let sh = |script: &str| {
            let o = run(
                Command::new("bash")
                    .args(["-euc", script, "make"])
                    .arg(&out)
                    .current_dir(crate_root()),
                CMD_TIMEOUT,
            );
            assert!(
                o.ok(),
                "making the podman test image failed: {}\n{}",
                o.describe(),
                o.stderr_str()
            );
        };
        std::fs::write(out.join("layers.py"), LAYERS_PY).expect("write layers.py");
        sh("cd \"$1\"; python3 layers.py .");
        sh("cd \"$1\"; umoci init --layout oci; umoci new --image oci:empty; \
            umoci config --image oci:empty --no-history --config.cmd /busybox; \
            umoci raw add-layer --image oci:empty --tag l1 layer1.tar; \
            umoci raw add-layer --image oci:l1 --tag edge layer2.tar; \
            skopeo copy -q oci:oci:edge docker-archive:edge-docker.tar:imgfs/edge:1");
        out
    })
}

const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// Flags every container needs here (see the module's comment).
const RUN_FLAGS: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1000:1000",
    "--network",
    "none",
];

/// A podman root of its own (root, run root, tmp dir, events file), optionally reading an
/// additional image store. Whatever podman left mounted below it is unmounted on drop.
struct Podman {
    dir: tempfile::TempDir,
    store: Option<PathBuf>,
}

impl Podman {
    fn new(store: Option<&Path>) -> Podman {
        require(&["podman", "runc", "skopeo"]);
        Podman {
            dir: tempdir(),
            store: store.map(Path::to_owned),
        }
    }

    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"]);
        if let Some(s) = &self.store {
            c.arg("--storage-opt")
                .arg(format!("additionalimagestore={}", s.display()));
        }
        c
    }

    fn run(&self, args: &[&str]) -> Outcome {
        run(self.cmd().args(args), PODMAN_TIMEOUT)
    }

    /// `podman image inspect IMAGE`, the one image's JSON.
    fn inspect(&self, image: &str) -> serde_json::Value {
        let o = self.run(&["image", "inspect", image]).assert_ok();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect JSON");
        v[0].clone()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let root = std::fs::canonicalize(self.dir.path()).unwrap_or_else(|_| self.dir.path().to_owned());
        let mut left: Vec<PathBuf> = crate::util::mountinfo()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&root))
            .collect();
        left.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in left {
            force_unmount(&p);
        }
    }
}

/// Runs `script` (busybox sh) in IMAGE from the store, busybox bound in at /busybox.
fn run_in(podman: &Podman, image: &str, script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(RUN_FLAGS);
    args.extend(["-v", "/bin/busybox:/busybox:ro", image, "/busybox", "sh", "-c", script]);
    let o = podman.run(&args);
    assert!(
        o.ok(),
        "podman cannot run {image} from the imgfs store: {}\n--- stderr:\n{}\n--- stdout:\n{}",
        o.describe(),
        o.stderr_str(),
        o.stdout_str()
    );
    o.stdout_str()
}

/// The test image run from the store: files of the upper layer, whiteouts and an opaque
/// directory honoured, a hardlink intact.
fn check_container(podman: &Podman, image: &str) {
    let script = "cd /; /busybox cat opaque/upper-c file-becomes-dir/inside readd; \
                  echo etc:; /busybox ls -a etc; echo opaque:; /busybox ls -a opaque; echo end:; \
                  /busybox test -e gone-dir && echo gone-dir-present; \
                  /busybox stat -c '%i %h' data/hl-target data/hl-same-layer; /busybox cat data/hl-same-layer";
    let out = run_in(podman, image, script);
    let lines: Vec<&str> = out.lines().collect();
    let rest = &lines[lines.len().saturating_sub(3)..];
    assert_eq!(lines[..3], ["c", "inside", "new"], "{image}: upper-layer files\n{out}");
    // podman adds hostname, hosts and mtab to /etc.
    let etc = section(&lines, "etc:", "opaque:");
    assert!(
        etc.contains(&"keep") && !etc.iter().any(|n| *n == "hello" || n.starts_with(".wh.")),
        "{image}: /etc shows a whited-out file or a whiteout\n{out}"
    );
    let opaque = section(&lines, "opaque:", "end:");
    assert_eq!(
        opaque,
        [".", "..", "upper-c"],
        "{image}: the opaque directory hides the lower layer's files\n{out}"
    );
    assert!(
        !out.contains("gone-dir-present"),
        "{image}: a whited-out directory is back\n{out}"
    );
    let inode = |l: &str| l.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let (a, b) = (inode(rest[0]), inode(rest[1]));
    assert_eq!(a, b, "{image}: hardlinked files are one inode with 2 links\n{out}");
    assert_eq!(a[1], "2", "{image}: link count\n{out}");
    assert_eq!(rest[2], "linked content", "{image}\n{out}");
}

/// The lines after `from` up to `to` (or the next line that is a header).
fn section<'a>(lines: &[&'a str], from: &str, to: &str) -> Vec<&'a str> {
    let start = lines.iter().position(|l| *l == from).map_or(lines.len(), |i| i + 1);
    lines[start..]
        .iter()
        .take_while(|l| **l != to && !l.ends_with(':'))
        .copied()
        .collect()
}

/// The fields of `podman image inspect` that describe the image itself (not where it is stored).
const SAME_FIELDS: &[&str] = &[
    "Id",
    "Digest",
    "Config",
    "RootFS",
    "Architecture",
    "Os",
    "Created",
    "Author",
    "History",
    "Size",
    "ManifestType",
];

/// Mounts `source` with the store (plus `mount_args`), runs and inspects `image` from it, and
/// compares the inspect output with that of the same image in another root after `podman
/// pull` (or `load`) with `fetch`. A docker-archive has no manifest of its own: imgfs and podman
/// each synthesize one, so `Digest`, `ManifestType` and `Size` (which counts the manifest) differ
/// there (`skip`).
/// Returns the mount, the podman that reads it and its inspect output, for more checks.
fn run_and_compare(
    source: &str,
    mount_args: &[&str],
    image: &str,
    fetch: &[&str],
    skip: &[&str],
) -> (Mount, Podman, serde_json::Value) {
    let mut args = vec!["--containers-storage"];
    args.extend_from_slice(mount_args);
    let m = Mount::with_args(source, &args);
    let podman = Podman::new(Some(&m.path("containers-storage")));
    let mine = podman.inspect(image);
    let id = mine["Id"].as_str().unwrap_or_default();

    let reference = Podman::new(None);
    reference.run(fetch).assert_ok();
    let ids = reference
        .run(&["images", "--no-trunc", "--format", "{{.ID}}"])
        .assert_ok()
        .stdout_str();
    assert!(
        ids.lines().any(|l| l.trim_start_matches("sha256:") == id),
        "{source}: the store's image ID {id} is not what podman {fetch:?} gives: {ids}"
    );
    let theirs = reference.inspect(id);
    for field in SAME_FIELDS.iter().filter(|f| !skip.contains(f)) {
        assert_eq!(
            mine[field], theirs[field],
            "{source}: podman image inspect {image}: {field} differs from podman {fetch:?}"
        );
    }
    check_container(&podman, image);
    // The store is read-only: podman says so.
    let o = podman.run(&["rmi", image]);
    assert!(
        !o.ok() && o.stderr_str().contains("cannot remove read-only image"),
        "{source}: podman rmi of a store image: {}\n{}",
        o.describe(),
        o.stderr_str()
    );
    (m, podman, mine)
}

/// `podman save` of a store image writes each layer byte for byte (its sha256 is its diff_id):
/// containers/storage rebuilds the tars from the store's tar-split files and `diff/` trees.
fn check_save(podman: &Podman, image: &str, inspect: &serde_json::Value) {
    let dir = tempdir();
    let out = dir.path().join("saved.tar");
    let out_s = out.display().to_string();
    podman
        .run(&["save", "--format", "docker-archive", "-o", &out_s, image])
        .assert_ok();
    let archive = crate::util::read_archive(&out);
    let manifest: serde_json::Value =
        serde_json::from_slice(archive.get("manifest.json").expect("manifest.json in the save")).expect("JSON");
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| {
            let bytes = archive.get(l.as_str().unwrap_or_default()).expect("a saved layer");
            format!("sha256:{}", crate::util::sha256_bytes(bytes))
        })
        .collect();
    let want: Vec<String> = serde_json::from_value(inspect["RootFS"]["Layers"].clone()).expect("RootFS.Layers");
    assert_eq!(
        layers, want,
        "podman save {image}: layer tars differ from the image's diff_ids"
    );
}

/// `podman build` of a Containerfile `FROM` a store image.
fn check_build(podman: &Podman, image: &str) {
    let ctx = tempdir();
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).expect("copy busybox");
    let file = format!(
        "FROM {image}\nCOPY busybox /busybox\nRUN [\"/busybox\", \"sh\", \"-c\", \"/busybox cat /opaque/upper-c /readd > /built\"]\n"
    );
    std::fs::write(ctx.path().join("Containerfile"), file).expect("Containerfile");
    let ctx_s = ctx.path().display().to_string();
    let mut args = vec!["build", "-q", "-t", "localhost/built-from-store:1"];
    args.extend_from_slice(&RUN_FLAGS[..6]);
    args.extend(["--network", "none", &ctx_s]);
    podman.run(&args).assert_ok();
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(RUN_FLAGS);
    args.extend(["localhost/built-from-store:1", "/busybox", "cat", "/built"]);
    let o = podman.run(&args).assert_ok();
    assert_eq!(
        o.stdout_str(),
        "c\nnew\n",
        "a RUN step of a build FROM {image} sees its files"
    );
}

#[test]
fn podman_runs_an_oci_layout_from_the_imgfs_store() {
    let layout = format!("oci:{}:edge", image().join("oci").display());
    // An OCI ref name that is not a Docker tag is named as podman names local images.
    let image = "localhost/edge:latest";
    let (_m, podman, inspect) = run_and_compare(&layout, &["--no-cache"], image, &["pull", "-q", &layout], &[]);
    check_save(&podman, image, &inspect);
    check_build(&podman, image);
}

#[test]
fn podman_runs_a_docker_archive_from_the_imgfs_store() {
    let archive = image().join("edge-docker.tar").display().to_string();
    run_and_compare(
        &archive,
        &["--no-cache"],
        "docker.io/imgfs/edge:1",
        &["load", "-q", "-i", &archive],
        &["Digest", "ManifestType", "Size"],
    );
}

#[test]
fn podman_runs_a_registry_image_from_the_imgfs_store() {
    let reg = shared();
    reg.push(
        &format!("oci:{}:edge", image().join("oci").display()),
        "imgfs/podman:1",
        &[],
    );
    let cache = tempdir();
    let args = reg.args(cache.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let url = reg.url("imgfs/podman:1");
    let image = format!("{}/imgfs/podman:1", reg.host);
    let (_m, podman, inspect) = run_and_compare(&url, &args, &image, &["pull", "-q", "--tls-verify=false", &url], &[]);
    // `podman push` of the store image: the registry gets the same layers (by diff_id).
    let pushed = reg.url("imgfs/pushed-from-store:1");
    podman
        .run(&["push", "-q", "--tls-verify=false", &image, &pushed])
        .assert_ok();
    let o = run(
        Command::new("skopeo").args(["inspect", "--tls-verify=false", "--config", &pushed]),
        CMD_TIMEOUT,
    )
    .assert_ok();
    let config: serde_json::Value = serde_json::from_slice(&o.stdout).expect("config JSON");
    assert_eq!(
        config["rootfs"]["diff_ids"], inspect["RootFS"]["Layers"],
        "podman push of {image} from the store"
    );
}

#[test]
fn containers_storage_with_image_is_refused_in_one_line() {
    let dir = tempdir();
    let src = crate::util::fixtures().join("oci");
    let o = crate::util::run_imgfs(
        [
            "mount".as_ref(),
            "--containers-storage".as_ref(),
            "--image".as_ref(),
            "v2".as_ref(),
            src.as_os_str(),
            dir.path().as_os_str(),
        ],
        crate::util::ERROR_TIMEOUT,
    );
    assert!(!o.ok(), "{}", o.describe());
    assert_eq!(
        crate::registry::one_line_error(&o),
        "imgfs: --containers-storage shows every image of the source and --image one image's rootfs: give one of them"
    );
}

/// From nothing, over a published index (`imgfs index push`, `--published-index`; docs/podman.md):
/// the container runs with files of every layer, whiteouts and a hardlink honoured, no layer
/// was downloaded whole, and `layers.json` gives each layer's exact uncompressed size from its
/// index (no gzip trailer read).
#[test]
fn podman_runs_a_registry_image_over_a_published_index() {
    let reg = shared();
    let oci = format!("oci:{}:edge", image().join("oci").display());
    reg.push(&oci, "imgfs/podman-published:1", &[]);
    let url = reg.url("imgfs/podman-published:1");
    let producer = tempdir();
    let mut push = vec!["index".to_owned(), "push".into(), oci, url.clone()];
    push.extend(reg.args(producer.path()));
    let o = crate::util::run_imgfs(&push, CMD_TIMEOUT);
    assert!(o.ok(), "imgfs index push: {}\n{}", o.describe(), o.stderr_str());
    let cache = tempdir();
    let mut args = reg.args(cache.path());
    args.extend(["--containers-storage".into(), "--published-index".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let m = Mount::with_args(&url, &args);
    let podman = Podman::new(Some(&m.path("containers-storage")));
    check_container(&podman, &format!("{}/imgfs/podman-published:1", reg.host));
    let downloads: Vec<String> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("blob-"))
        .collect();
    assert!(downloads.is_empty(), "layers downloaded whole: {downloads:?}");
    let layers = m.json("containers-storage/overlay-layers/layers.json");
    let mut sizes: Vec<u64> = layers
        .as_array()
        .expect("layers.json is a list")
        .iter()
        .map(|l| l["diff-size"].as_u64().unwrap_or(0))
        .collect();
    sizes.sort();
    let mut want: Vec<u64> = ["layer1.tar", "layer2.tar"]
        .iter()
        .map(|t| std::fs::metadata(image().join(t)).expect("layer tar").len())
        .collect();
    want.sort();
    assert_eq!(sizes, want, "layers.json diff-size from the published index");
}
