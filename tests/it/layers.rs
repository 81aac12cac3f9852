//! Layer indexing (issue 4): each layer is indexed once per mount however many images share it,
//! the index cache makes a second mount read no layer data, a corrupt cache file is rebuilt, and
//! a layer whose bytes do not match its digest or diff_id fails its views with EIO and one log
//! line while the rest of the mount keeps working. Also the pre-1.0 OCI layout (`refs/`).

use crate::rootfs::edge;
use crate::util::{fx, sha256_bytes, tempdir, Mount};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// Mounts `source` with a cache dir and a fresh log file (-v).
fn mount_logged(source: &Path, cache: &Path, log: &Path) -> Mount {
    let _ = fs::remove_file(log);
    let (cache, log) = (cache.display().to_string(), log.display().to_string());
    Mount::with_args(source, &["--cache-dir", &cache, "--log-file", &log, "-v"])
}

/// Mounts `source` with a cache dir and a log file (-v), lists every rootfs fully, unmounts,
/// and returns the log.
fn mount_and_list(source: &Path, cache: &Path, log: &Path) -> String {
    {
        let m = mount_logged(source, cache, log);
        for r in m.ls("images") {
            walk(&m.path(&format!("images/{r}/rootfs")));
        }
    }
    fs::read_to_string(log).unwrap_or_default()
}

/// Lists a tree recursively (readdir + lstat of everything).
fn walk(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("readdir {}: {e}", d.display())) {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            n += 1;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    n
}

/// opendir + readdir to the end (a view's errors surface at readdir, not at opendir).
fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn shared_layers_are_indexed_once_and_a_warm_cache_reads_no_layer() {
    let edge = edge();
    let tmp = tempdir();
    let (cache, log) = (tmp.path().join("cache"), tmp.path().join("log"));
    // The edge layout has refs l1, l2, l3 and edge sharing 3 layers: each is indexed once.
    let cold = mount_and_list(&edge.join("oci"), &cache, &log);
    assert_eq!(count(&cold, "indexed layer"), 3, "cold mount log:\n{cold}");
    assert_eq!(count(&cold, "loaded from the cache"), 0, "cold mount log:\n{cold}");
    // Four manifests (empty, l1, l2, l3 = edge): four merged rootfs trees, also cached.
    assert_eq!(count(&cold, "inodes merged"), 4, "cold mount log:\n{cold}");
    let warm = mount_and_list(&edge.join("oci"), &cache, &log);
    assert_eq!(count(&warm, "indexed layer"), 0, "warm mount indexed again:\n{warm}");
    assert_eq!(
        count(&warm, "entries loaded from the cache"),
        3,
        "warm mount log:\n{warm}"
    );
    assert_eq!(count(&warm, "inodes merged"), 0, "warm mount merged again:\n{warm}");
    assert_eq!(
        count(&warm, "inodes loaded from the cache"),
        4,
        "warm mount log:\n{warm}"
    );

    // One flipped byte in a cache file: that index is rebuilt, never trusted.
    let victim = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("layer-")));
    let victim = victim.expect("a layer index in the cache");
    let mut bytes = fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&victim, &bytes).unwrap();
    let again = mount_and_list(&edge.join("oci"), &cache, &log);
    assert_eq!(
        count(&again, "indexed layer"),
        1,
        "corrupt cache file not rebuilt:\n{again}"
    );
    assert!(
        again.contains("corrupt"),
        "no warning about the corrupt cache file:\n{again}"
    );
}

#[test]
fn no_cache_writes_nothing_and_the_default_cache_is_under_xdg_cache_home() {
    let edge = edge();
    let tmp = tempdir();
    let ls = |extra: &[&str]| {
        let mut cmd = crate::util::imgfs_cmd(["ls", "-R"]);
        cmd.arg(edge.join("oci"))
            .arg("images/edge/rootfs")
            .args(extra)
            .env("XDG_CACHE_HOME", tmp.path());
        let o = crate::util::run(&mut cmd, crate::util::CMD_TIMEOUT).assert_ok();
        assert!(
            o.stdout_str().contains("data/xattr"),
            "imgfs ls -R rootfs: {}",
            o.stdout_str()
        );
    };
    ls(&["--no-cache"]);
    assert!(
        fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "--no-cache wrote into XDG_CACHE_HOME"
    );
    ls(&[]);
    let names: Vec<String> = fs::read_dir(tmp.path().join("imgfs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let layers = names.iter().filter(|n| n.starts_with("layer-")).count();
    let views = names.iter().filter(|n| n.starts_with("view-")).count();
    assert_eq!(
        (layers, views),
        (3, 1),
        "expected one index per layer and the rootfs tree: {names:?}"
    );
}

/// A copy of the edge OCI layout (only what ref `edge` needs) in a fresh directory.
pub(crate) fn copy_layout(dst: &Path) -> PathBuf {
    let src = edge().join("oci");
    let out = dst.join("oci");
    fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    for name in ["oci-layout", "index.json"] {
        fs::copy(src.join(name), out.join(name)).unwrap();
    }
    for e in fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), out.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    out
}

/// A mount starts loading one rootfs whose merged tree is cached before anything is accessed
/// (`Views::warm_up`); the first access then finds it built, and nothing is loaded twice.
#[test]
fn a_warm_mount_loads_one_cached_rootfs_before_any_access() {
    let edge = edge();
    let tmp = tempdir();
    let (cache, log) = (tmp.path().join("cache"), tmp.path().join("log"));
    let cold = mount_and_list(&edge.join("oci"), &cache, &log);
    assert_eq!(count(&cold, "inodes merged"), 4, "cold mount log:\n{cold}");
    let m = mount_logged(&edge.join("oci"), &cache, &log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let loaded = |log: &Path| {
        count(
            &fs::read_to_string(log).unwrap_or_default(),
            "inodes loaded from the cache",
        )
    };
    while loaded(&log) == 0 {
        assert!(std::time::Instant::now() < deadline, "no rootfs was warmed up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(loaded(&log), 1, "exactly one rootfs is warmed up");
    for r in m.ls("images") {
        walk(&m.path(&format!("images/{r}/rootfs")));
    }
    drop(m);
    let warm = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        count(&warm, "inodes loaded from the cache"),
        4,
        "warm mount log:\n{warm}"
    );
    assert_eq!(count(&warm, "inodes merged"), 0, "warm mount log:\n{warm}");
}

/// Layers that no name or config gives a digest (every layer of the v1 format) are hashed at
/// mount, once per file: the next mount of the same file takes the digest from the cache; a
/// changed file (here: a new mtime) is hashed again.
#[test]
fn unnamed_layers_are_hashed_once_per_file() {
    let tmp = tempdir();
    let (cache, log) = (tmp.path().join("cache"), tmp.path().join("log"));
    let archive = tmp.path().join("v1.tar");
    fs::copy(fx("v1-legacy.tar"), &archive).unwrap();
    let mount = || {
        let m = mount_logged(&archive, &cache, &log);
        let blobs = m.ls("blobs/sha256");
        drop(m);
        (
            blobs,
            count(&fs::read_to_string(&log).unwrap_or_default(), "to name it"),
        )
    };
    let (first, hashed) = mount();
    assert_eq!(hashed, 2, "the two v1 layers are hashed on the first mount");
    let (second, hashed) = mount();
    assert_eq!((&second, hashed), (&first, 0), "second mount of the same file");
    let f = fs::File::options().write(true).open(&archive).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let (third, hashed) = mount();
    assert_eq!(
        (&third, hashed),
        (&first, 2),
        "a file with another mtime is hashed again"
    );
}

pub(crate) fn edge_manifest(layout: &Path) -> Value {
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "edge")
        .unwrap()
        .clone();
    let hex = desc["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

#[test]
fn layer_with_wrong_bytes_fails_its_views_with_eio_and_one_log_line() {
    let tmp = tempdir();
    let layout = copy_layout(tmp.path());
    let manifest = edge_manifest(&layout);
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = layout.join("blobs/sha256").join(top.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&path).unwrap();
    // The gzip header's MTIME field: the stream still inflates, but the digest no longer matches.
    bytes[5] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let log = tmp.path().join("log");
    let m = Mount::with_args(
        &layout,
        &[
            "--cache-dir",
            &tmp.path().join("cache").display().to_string(),
            "--log-file",
            &log.display().to_string(),
        ],
    );
    let err = list_dir(&m.path("images/edge/rootfs")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "rootfs of a corrupt layer: {err}");
    // Reading the corrupt blob through blobs/ to its end fails too.
    let err = fs::read(m.path(&format!("blobs/sha256/{}", top.trim_start_matches("sha256:")))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "blob with wrong bytes: {err}");
    // The rest of the mount works: other images, documents, lower layers' trees.
    assert!(!m.ls("images/l1/rootfs").is_empty());
    assert_eq!(m.read("index.json"), fs::read(layout.join("index.json")).unwrap());
    assert!(m.ls("images/edge/layers/0").contains("etc"));
    drop(m);
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&top) && l.contains("hash"))
        .collect();
    assert!(!lines.is_empty(), "no log line names the corrupt layer {top}:\n{text}");
    assert_eq!(
        count(&text, &format!("layer {top}: bytes hash to")),
        1,
        "the layer error is logged once:\n{text}"
    );
}

#[test]
fn wrong_diff_id_fails_rootfs_with_eio() {
    let tmp = tempdir();
    let layout = copy_layout(tmp.path());
    let mut manifest = edge_manifest(&layout);
    // Rewrite the config with a wrong diff_id for layer 0, then the manifest and index over it.
    let config_hex = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let mut config: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&config_hex)).unwrap()).unwrap();
    config["rootfs"]["diff_ids"][0] = Value::String(format!("sha256:{}", "0".repeat(64)));
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_hex = sha256_bytes(&config_bytes);
    fs::write(layout.join("blobs/sha256").join(&config_hex), &config_bytes).unwrap();
    manifest["config"]["digest"] = Value::String(format!("sha256:{config_hex}"));
    manifest["config"]["size"] = Value::from(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_hex = sha256_bytes(&manifest_bytes);
    fs::write(layout.join("blobs/sha256").join(&manifest_hex), &manifest_bytes).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{manifest_hex}"), "size": manifest_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "bad"}}]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let log = tmp.path().join("log");
    let m = Mount::with_args(&layout, &["--no-cache", "--log-file", &log.display().to_string()]);
    let err = list_dir(&m.path("images/bad/rootfs")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    drop(m);
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("diff_id"), "no log line about the diff_id:\n{text}");
}

#[test]
fn pre_1_0_layout_with_refs_directory() {
    let tmp = tempdir();
    let layout = copy_layout(tmp.path());
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    fs::remove_file(layout.join("index.json")).unwrap();
    fs::create_dir(layout.join("refs")).unwrap();
    let mut names = Vec::new();
    for d in index["manifests"].as_array().unwrap() {
        let name = d["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap()
            .to_owned();
        let desc = serde_json::json!({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"]});
        fs::write(layout.join("refs").join(&name), serde_json::to_vec(&desc).unwrap()).unwrap();
        names.push(name);
    }
    let m = Mount::new(&layout);
    let images = m.ls("images");
    for n in &names {
        assert!(images.contains(n), "ref {n} from refs/ not shown: {images:?}");
    }
    assert_eq!(m.read("images/edge/rootfs/readd"), b"new\n");
}
