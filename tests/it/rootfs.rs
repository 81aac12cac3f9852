//! The merged rootfs and the per-layer trees (issue 4), checked against the reference unpacker:
//! for every source format the edge-case image comes in, `images/<ref>/rootfs` dumps exactly like
//! `umoci unpack` of the same image — paths, types, modes, owners, sizes, content hashes, symlink
//! targets, hardlink groups, xattrs, mtimes — with a cold index cache and again with a warm one.

use crate::util::{assert_same_dump, crate_root, imgfs, ref_dirs, require, run, tempdir, treedump, Mount};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The edge-case image and its reference unpack, built once per run.
pub fn edge() -> &'static Path {
    static EDGE: OnceLock<PathBuf> = OnceLock::new();
    EDGE.get_or_init(|| {
        built_fixture(
            "tests/fixtures/edge/make-edge-image.sh",
            "test-fixtures-edge",
            &["umoci", "skopeo", "python3", "tar", "gzip"],
        )
    })
}

/// `target/OUT`, made (or found up to date) by the fixture script `script` (a path in the crate),
/// which needs `tools`.
pub fn built_fixture(script: &str, out: &str, tools: &[&str]) -> PathBuf {
    require(tools);
    let target = imgfs().parent().and_then(Path::parent).expect("target dir");
    let out = target.join(out);
    let o = run(
        Command::new("bash").arg(crate_root().join(script)).arg(&out),
        Duration::from_secs(300),
    );
    assert!(o.ok(), "{script} failed: {}\n{}", o.describe(), o.stderr_str());
    out
}

/// The canonical dump of a tree (tests/fixtures/edge/treedump.py).
pub fn dump(dir: &Path) -> String {
    treedump(dir, &[])
}

pub fn assert_same_tree(what: &str, got: &str, want: &str) {
    assert_same_dump(
        &format!("{what}: rootfs differs from umoci unpack"),
        got,
        want,
        ["umoci", "imgfs"],
    );
}

/// (source, ref directory) of every format the edge image is converted to.
fn variants(edge: &Path) -> Vec<(String, &'static str)> {
    let p = |rel: &str| edge.join(rel).display().to_string();
    vec![
        (p("oci"), "edge"),
        (p("edge-oci.tar"), "edge"),
        (p("oci-zstd"), "edge"),
        (p("edge-docker.tar"), "imgfs/edge:1"),
        (p("edge-docker.tar.gz"), "imgfs/edge:1"),
    ]
}

#[test]
fn rootfs_equals_umoci_unpack_for_every_format_cold_and_warm() {
    let edge = edge();
    let want = dump(&edge.join("bundle/rootfs"));
    for (source, r) in variants(edge) {
        let cache = tempdir();
        let cache_arg = cache.path().display().to_string();
        for pass in ["cold cache", "warm cache"] {
            let m = Mount::with_args(&source, &["--cache-dir", &cache_arg]);
            let got = dump(&m.path(&format!("images/{r}/rootfs")));
            assert_same_tree(&format!("{source} ({pass})"), &got, &want);
        }
        let cached = std::fs::read_dir(cache.path()).map(|d| d.count()).unwrap_or(0);
        assert!(
            cached >= 3,
            "{source}: expected the layer indexes in the cache, found {cached} files"
        );
    }
}

#[test]
fn layer_trees_show_whiteouts_as_stored() {
    let edge = edge();
    let m = Mount::new(edge.join("oci"));
    let layers = m.ls("images/edge/layers");
    assert_eq!(layers, ["0", "1", "2"].iter().map(|s| s.to_string()).collect());
    let l1 = m.ls("images/edge/layers/1");
    assert!(
        l1.contains(".wh.gone-dir") && l1.contains(".wh.readd"),
        "layer 1 lacks its whiteouts: {l1:?}"
    );
    assert!(m.ls("images/edge/layers/1/opaque").contains(".wh..wh..opq"));
    // The merged view hides them.
    let root = m.ls("images/edge/rootfs");
    assert!(
        !root.iter().any(|n| n.starts_with(".wh.")),
        "whiteout visible in rootfs: {root:?}"
    );
    assert_eq!(m.read("images/edge/rootfs/readd"), b"new\n");
    assert_eq!(m.read("images/edge/layers/0/readd"), b"old\n");
}

#[test]
fn sparse_file_reads_with_zero_holes() {
    let edge = edge();
    let m = Mount::new(edge.join("edge-oci.tar"));
    let got = std::fs::read(m.path("images/edge/rootfs/sparse/pax10")).expect("read sparse file");
    let want = std::fs::read(edge.join("sparse-src/sparse/pax10")).expect("read original");
    assert_eq!(got.len(), 8 << 20);
    assert!(got == want, "sparse file content differs from the original");
}

/// Real archives written by other projects (shared/fixtures): the rootfs imgfs shows equals
/// `umoci unpack` of the same image (converted to an OCI layout by skopeo). umoci 0.4 cannot
/// unpack zstd layers, so the zstd variant of dive's image is compared with its gzip twin.
#[test]
fn real_archives_rootfs_equal_umoci_unpack() {
    require(&["umoci", "skopeo"]);
    let root = crate::util::shared_fixtures();
    let cases = [
        ("google-go-containerregistry/mutate/whiteout_image.tar", None),
        ("google-go-containerregistry/mutate/whiteout_dir.tar", None),
        ("google-go-containerregistry/mutate/overwritten_file.tar", None),
        ("wagoodman-dive/test-docker-image.tar", None),
        ("wagoodman-dive/test-kaniko-image.tar", None),
        ("wagoodman-dive/test-oci-gzip-image.tar", None),
        (
            "wagoodman-dive/test-oci-zstd-image.tar",
            Some("wagoodman-dive/test-oci-gzip-image.tar"),
        ),
    ];
    for (rel, reference_of) in cases {
        let src = root.join(rel);
        let reference = root.join(reference_of.unwrap_or(rel));
        let tmp = tempdir();
        let transport = if crate::util::run(Command::new("tar").arg("-tf").arg(&reference), Duration::from_secs(30))
            .stdout_str()
            .lines()
            .any(|l| l.trim_start_matches("./") == "index.json")
        {
            "oci-archive"
        } else {
            "docker-archive"
        };
        let layout = tmp.path().join("oci");
        let o = run(
            Command::new("skopeo")
                .arg("copy")
                .arg("--quiet")
                .arg(format!("{transport}:{}", reference.display()))
                .arg(format!("oci:{}:x", layout.display())),
            Duration::from_secs(120),
        );
        assert!(o.ok(), "skopeo copy {rel}: {}", o.stderr_str());
        let bundle = tmp.path().join("bundle");
        let o = run(
            Command::new("umoci")
                .arg("unpack")
                .arg("--image")
                .arg(format!("{}:x", layout.display()))
                .arg(&bundle),
            Duration::from_secs(120),
        );
        assert!(o.ok(), "umoci unpack {rel}: {}", o.stderr_str());
        let want = dump(&bundle.join("rootfs"));
        let m = Mount::new(&src);
        let refs = ref_dirs(&m);
        assert_eq!(refs.len(), 1, "{rel}: expected one image, got {refs:?}");
        let r = refs.iter().next().unwrap();
        let got = dump(&m.path(&format!("images/{r}/rootfs")));
        assert_same_tree(rel, &got, &want);
    }
}
