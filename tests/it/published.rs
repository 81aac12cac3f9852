//! Published layer indexes (issue 19, docs/registry.md "Published indexes"): `imgfs index push`
//! publishes imgfs's layer indexes as an OCI referrer artifact of the image (the referrers tag
//! schema here: Distribution 2.8 has no referrers API), and `imgfs mount --published-index` on
//! an empty cache lists and reads the image without fetching any layer whole: only Range reads
//! of the blocks its reads touch, seen in the registry's own access log. Tampered and corrupt
//! indexes are refused with one line each and the layer is indexed from its blob.

use crate::registry::{Registry, Setup};
use crate::util::{crate_root, expect, fixtures, run, run_imgfs, tempdir, tree_dump, walk, Mount, CMD_TIMEOUT};
use crate::zstd_checkpoints::{checkpoints_loaded, single_frame_image, FrameImage, LAST, REF};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A registry with an access log, holding the gzip fixture as `imgfs/oci:v2` and the zstd one as
/// `imgfs/zstd:v2`.
fn registry() -> Registry {
    let reg = Registry::start(Setup {
        access_log: true,
        ..Setup::default()
    });
    let fx = fixtures();
    reg.push(&format!("oci:{}:v2", fx.join("oci").display()), "imgfs/oci:v2", &[]);
    reg.push(
        &format!("oci:{}:v2", fx.join("oci-zstd").display()),
        "imgfs/zstd:v2",
        &[],
    );
    reg
}

/// `imgfs index push ARGS...` against `reg` (plain HTTP), with a cache of its own; its stdout.
fn index_push(reg: &Registry, args: &[&str]) -> String {
    let cache = tempdir();
    let mut all = vec!["index".to_owned(), "push".into()];
    all.extend(reg.args(cache.path()));
    all.extend(args.iter().map(|a| a.to_string()));
    let o = run_imgfs(&all, CMD_TIMEOUT);
    assert!(
        o.ok(),
        "imgfs index push {args:?}: {}\n{}",
        o.describe(),
        o.stderr_str()
    );
    o.stdout_str()
}

/// Mounts `url` with `--published-index` on the empty cache `cache`, logging at info level to
/// `log`.
fn mount_published(reg: &Registry, url: &str, cache: &Path, log: &Path, extra: &[&str]) -> Mount {
    let mut args = reg.args(cache);
    args.extend(["--published-index".into(), "-v".into(), "--log-file".into()]);
    args.push(log.display().to_string());
    args.extend(extra.iter().map(|a| a.to_string()));
    crate::registry::mount(url, &args)
}

/// The layers of the manifest of a fixture layout (digest -> size), and the manifest digest.
fn layers_of(layout: &str) -> (String, BTreeMap<String, u64>) {
    let dir = fixtures().join(layout);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "v2")
        .expect("a v2 image")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = dir.join("blobs/sha256").join(&m["sha256:".len()..]);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
    let layers = doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["digest"].as_str().unwrap().to_owned(), l["size"].as_u64().unwrap()))
        .collect();
    (m, layers)
}

/// GETs of each layer blob since entry `from` of the access log: (status, bytes) per request.
fn layer_gets(reg: &Registry, from: usize, layers: &BTreeMap<String, u64>) -> BTreeMap<String, Vec<(u16, u64)>> {
    let mut out: BTreeMap<String, Vec<(u16, u64)>> = BTreeMap::new();
    for (method, path, status, bytes) in reg.access_log().into_iter().skip(from) {
        if method != "GET" {
            continue;
        }
        if let Some(d) = layers.keys().find(|d| path.ends_with(&format!("/blobs/{d}"))) {
            out.entry(d.clone()).or_default().push((status, bytes));
        }
    }
    out
}

/// No layer was fetched whole: every GET of a layer blob was a Range request (206) of at most
/// one 1 MiB block, and no downloaded blob is in the cache.
fn assert_no_whole_layer(gets: &BTreeMap<String, Vec<(u16, u64)>>, cache: &Path, what: &str) {
    for (d, list) in gets {
        for (status, bytes) in list {
            assert!(
                *status == 206 && *bytes <= 1 << 20,
                "{what}: layer {d} was fetched with a {status} of {bytes} bytes: {list:?}"
            );
        }
    }
    let downloads: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("blob-"))
        .collect();
    assert!(downloads.is_empty(), "{what}: layers downloaded whole: {downloads:?}");
}

#[test]
fn published_index_mounts_gzip_and_zstd_images_reading_only_ranges_of_their_layers() {
    let reg = registry();
    let fx = fixtures();
    // gzip: indexed from a local copy of the image (no download); zstd: from the registry.
    let out = index_push(
        &reg,
        &[
            &format!("oci:{}:v2", fx.join("oci").display()),
            &reg.url("imgfs/oci:v2"),
        ],
    );
    assert!(out.contains("3 layers") && out.contains("referrers tag"), "{out}");
    index_push(&reg, &[&reg.url("imgfs/zstd:v2")]);
    for (layout, repo) in [("oci", "imgfs/oci:v2"), ("oci-zstd", "imgfs/zstd:v2")] {
        let (_, layers) = layers_of(layout);
        let cache = tempdir();
        let logs = tempdir();
        let log = logs.path().join("mount.log");
        let from = reg.access_log().len();
        let m = mount_published(&reg, &reg.url(repo), cache.path(), &log, &[]);
        let image = crate::registry::image_dir(&m);
        let rootfs = m.path(&format!("{image}/rootfs"));
        // The whole tree listed and one small file read: only Range blocks of the big layer.
        assert!(walk(&rootfs).len() > 10, "{repo}: rootfs listing");
        assert_eq!(
            String::from_utf8(m.read(&format!("{image}/rootfs/etc/hello.txt"))).unwrap(),
            format!("{}\n", expect("HELLO_TEXT")),
            "{repo}: etc/hello.txt"
        );
        let gets = layer_gets(&reg, from, &layers);
        assert_no_whole_layer(&gets, cache.path(), repo);
        // gzip resumes at an access point near the file; this zstd layer is one frame, decoded
        // from its start (its blocks are still Range reads, checked chunk by chunk).
        if layout == "oci" {
            let (big, size) = layers.iter().max_by_key(|(_, s)| **s).unwrap();
            let fetched: u64 = gets.get(big).map_or(0, |l| l.iter().map(|(_, b)| b).sum());
            assert!(
                fetched < *size,
                "{repo}: {fetched} bytes of the {size}-byte layer fetched for one small file"
            );
        }
        // Every file byte for byte as the local layout shows it, still by Range reads only.
        let local = Mount::with_args(format!("oci:{}:v2", fx.join(layout).display()), &["--no-cache"]);
        let want = tree_dump(&local.path("images/v2/rootfs"));
        assert_eq!(tree_dump(&rootfs), want, "{repo}: rootfs over the published index");
        assert_no_whole_layer(&layer_gets(&reg, from, &layers), cache.path(), repo);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            text.matches("index installed from the published index").count(),
            layers.len(),
            "{repo}: mount log:\n{text}"
        );
    }
}

#[test]
fn published_index_tampered_corrupt_or_absent_is_refused_and_the_layer_indexed_from_its_blob() {
    let reg = registry();
    index_push(&reg, &[&reg.url("imgfs/oci:v2")]);
    let (subject, layers) = layers_of("oci");
    let (big, _) = layers.iter().max_by_key(|(_, s)| **s).unwrap();
    let local = Mount::with_args(format!("oci:{}:v2", fixtures().join("oci").display()), &["--no-cache"]);
    let want = tree_dump(&local.path("images/v2/rootfs"));
    // Each case: the damage, then the line the mount must log, naming the layer (or the image).
    let check = |what: &str, repo: &str, line: &str, names: &str| {
        let cache = tempdir();
        let logs = tempdir();
        let log = logs.path().join("mount.log");
        let m = mount_published(&reg, &reg.url(repo), cache.path(), &log, &[]);
        let image = crate::registry::image_dir(&m);
        assert_eq!(tree_dump(&m.path(&format!("{image}/rootfs"))), want, "{what}: rootfs");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let hits: Vec<&str> = text.lines().filter(|l| l.contains(line)).collect();
        assert_eq!(hits.len(), 1, "{what}: want one line with {line:?}:\n{text}");
        assert!(hits[0].contains(names), "{what}: the line names {names}: {}", hits[0]);
        // The layer was indexed from its blob: downloaded whole into the cache.
        if repo == "imgfs/oci:v2" {
            assert!(
                cache
                    .path()
                    .join(format!("blob-sha256-{}", &big["sha256:".len()..]))
                    .is_file(),
                "{what}: the layer was not indexed from its blob:\n{text}"
            );
        }
    };
    // An index blob whose bytes no longer hash to its digest (changed in the registry's
    // storage), then put back.
    let data = reg.dir.path().join("data/docker/registry/v2/blobs/sha256");
    let blob = largest_index_blob(&data, &layers);
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 1;
    std::fs::write(&blob, bad).unwrap();
    check("wrong digest", "imgfs/oci:v2", "that hash to", big);
    std::fs::write(&blob, good).unwrap();
    // A correctly digested index blob, damaged: a CRC that fails, then a valid file of another
    // format version (tests/registry/tamper_index.py publishes each).
    for (mode, line) in [
        ("crc", "refused: its checksum (CRC-32) does not match"),
        ("format", "refused: layer index: other format version"),
    ] {
        let o = run(
            Command::new("python3")
                .arg(crate_root().join("tests/registry/tamper_index.py"))
                .args(["--registry", &reg.host, "--repo", "imgfs/oci", "--subject", &subject])
                .args(["--mode", mode]),
            CMD_TIMEOUT,
        );
        assert!(o.ok(), "tamper_index.py {mode}: {}", o.stderr_str());
        assert_eq!(o.stdout_str().trim(), big, "tamper_index.py {mode}");
        check(mode, "imgfs/oci:v2", line, big);
    }
    // No referrer at all: the image is indexed as without the option.
    let (zstd_image, _) = layers_of("oci-zstd");
    check("no referrer", "imgfs/zstd:v2", "no published index for", &zstd_image);
}

/// The stored blob of the largest imgfs index in the registry's storage (an imgfs cache file
/// that is not a layer of `layers`; the largest layer's, before anything was tampered with).
fn largest_index_blob(data: &Path, layers: &BTreeMap<String, u64>) -> std::path::PathBuf {
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    for prefix in std::fs::read_dir(data).unwrap().flatten() {
        for d in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let f = d.path().join("data");
            let name = format!("sha256:{}", d.file_name().to_string_lossy());
            let head = std::fs::read(&f).unwrap_or_default();
            if layers.contains_key(&name) || !head.starts_with(b"IMGFSIDX") {
                continue;
            }
            let len = head.len() as u64;
            if best.as_ref().is_none_or(|(l, _)| len > *l) {
                best = Some((len, f));
            }
        }
    }
    best.expect("an index blob in the registry").1
}

/// Pushing needs a token with `pull,push` scope: against a token-auth registry, with the
/// credentials in a file (never in argv), the index is published and used, and no secret is
/// in the output.
#[test]
fn published_index_push_and_use_with_token_auth() {
    let reg = Registry::with_oci_v2(Setup {
        token: Some(("alice", "pu5h-s3cret", 60)),
        ..Setup::default()
    });
    let dir = tempdir();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "alice:pu5h-s3cret\n").unwrap();
    let creds_args = ["--creds-file".to_owned(), creds.display().to_string(), "-v".into()];
    let mut push = vec!["index".to_owned(), "push".into(), reg.url("imgfs/oci:v2")];
    push.extend(reg.args(&dir.path().join("producer")));
    push.extend(creds_args.iter().cloned());
    let o = run_imgfs(&push, CMD_TIMEOUT);
    let all = format!("{}{}", o.stdout_str(), o.stderr_str());
    assert!(o.ok(), "imgfs index push with a token: {}\n{all}", o.describe());
    assert!(
        !all.contains("pu5h-s3cret") && !all.contains("eyJ"),
        "secrets in the output:\n{all}"
    );
    // Without credentials the registry refuses the push, in one line.
    let mut anon = vec!["index".to_owned(), "push".into(), reg.url("imgfs/oci:v2")];
    anon.extend(reg.args(&dir.path().join("anon")));
    let o = run_imgfs(&anon, CMD_TIMEOUT);
    assert!(!o.ok(), "an anonymous push was accepted");
    let err = crate::registry::one_line_error(&o);
    assert!(err.contains("requires credentials"), "{err}");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let log = dir.path().join("mount.log");
    let m = mount_published(
        &reg,
        &reg.url("imgfs/oci:v2"),
        &cache,
        &log,
        &creds_args[..2].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let image = crate::registry::image_dir(&m);
    assert!(m.path(&format!("{image}/rootfs/etc/hello.txt")).is_file());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches("index installed from the published index").count(),
        3,
        "{text}"
    );
}

/// Mounts `url` (the one-frame image of `zstd_checkpoints.rs`) with `--published-index` on an
/// empty cache, reads its last small file, then dumps the whole rootfs: both as `want` (a local
/// mount's) and without any layer fetched whole. Returns the layer bytes fetched for the one
/// small file, and the mount's log.
fn read_last_file(reg: &Registry, url: &str, img: &FrameImage, want: &[String], extra: &[&str]) -> (u64, String) {
    let layers: BTreeMap<String, u64> = [img.layer.clone()].into();
    let cache = tempdir();
    let logs = tempdir();
    let log = logs.path().join("mount.log");
    let from = reg.access_log().len();
    let m = mount_published(reg, url, cache.path(), &log, extra);
    let rootfs = format!("{}/rootfs", crate::registry::image_dir(&m));
    assert!(
        m.read(&format!("{rootfs}/{LAST}")) == img.files[LAST],
        "{extra:?}: {LAST}"
    );
    let gets = layer_gets(reg, from, &layers);
    assert_no_whole_layer(&gets, cache.path(), url);
    let fetched = gets.values().flatten().map(|(_, b)| b).sum();
    assert_eq!(
        tree_dump(&m.path(&rootfs)),
        want,
        "{extra:?}: rootfs over the published index"
    );
    assert_no_whole_layer(&layer_gets(reg, from, &layers), cache.path(), url);
    drop(m);
    (fetched, std::fs::read_to_string(&log).unwrap_or_default())
}

/// A single-frame zstd layer (~13 MiB of output): published without checkpoints, a consumer
/// asking for them (`-o zstd_checkpoints`) uses the index as is (one line says so) instead of
/// downloading the layer, and decodes the frame from its start to read the last file;
/// published with `--zstd-checkpoints`, the consumer reads that file by fetching only the
/// compressed bytes from the checkpoint before it.
#[test]
fn published_checkpoint_index_reads_a_small_file_from_the_checkpoint_before_it() {
    let reg = Registry::start(Setup {
        access_log: true,
        ..Setup::default()
    });
    let img = single_frame_image();
    reg.push(&img.source(), "imgfs/frame:v1", &[]);
    let url = reg.url("imgfs/frame:v1");
    let size = img.layer.1;
    let local = Mount::with_args(img.source(), &["--no-cache"]);
    let want = tree_dump(&local.path(&format!("images/{REF}/rootfs")));

    index_push(&reg, &[&img.source(), &url]);
    let (fetched, log) = read_last_file(&reg, &url, &img, &want, &["-o", "zstd_checkpoints"]);
    assert_eq!(
        log.matches("index installed from the published index").count(),
        1,
        "{log}"
    );
    let kept = "its index has no zstd checkpoints; used as is (--published-index";
    assert_eq!(log.matches(kept).count(), 1, "no checkpoints published:\n{log}");
    assert!(!log.contains("indexed layer"), "the layer was indexed again:\n{log}");
    assert!(
        fetched > size / 2,
        "without checkpoints {fetched} bytes of the {size}-byte layer read: not from its start?"
    );
    eprintln!("published, no checkpoints: {fetched} bytes of the {size}-byte layer fetched for {LAST}");
    // `imgfs cat` takes the same decision.
    let cache = tempdir();
    let mut args = vec!["cat".to_owned(), url.clone(), LAST.into()];
    args.extend(reg.args(cache.path()));
    args.extend(["--published-index", "--zstd-checkpoints", "-v", "--image"].map(String::from));
    let o = run_imgfs(&args, CMD_TIMEOUT);
    assert!(
        o.ok() && o.stdout == img.files[LAST],
        "imgfs cat: {}\n{}",
        o.describe(),
        o.stderr_str()
    );
    let log = o.stderr_str();
    assert!(
        log.contains(kept) && !log.contains("indexed layer"),
        "imgfs cat:\n{log}"
    );

    // Published again with checkpoints: the newest referrer, used by the next consumer.
    let out = index_push(&reg, &["--zstd-checkpoints", &img.source(), &url]);
    assert!(out.contains("1 layers"), "{out}");
    let (fetched, log) = read_last_file(&reg, &url, &img, &want, &["--zstd-checkpoints"]);
    assert_eq!(
        log.matches("index installed from the published index").count(),
        1,
        "{log}"
    );
    let loaded = checkpoints_loaded(&log);
    assert!(
        loaded.is_some_and(|n| n >= 4),
        "published checkpoints: {loaded:?}\n{log}"
    );
    assert!(!log.contains("indexed layer") && !log.contains(kept), "{log}");
    assert!(
        fetched * 3 < size,
        "{fetched} bytes of the {size}-byte layer fetched for one small file at its end"
    );
    eprintln!("published with {loaded:?} checkpoints: {fetched} bytes of the {size}-byte layer fetched for {LAST}");
}
