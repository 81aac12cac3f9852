//! The everyday CLI (issue 18): a mistyped subcommand, `imgfs ls -l` against GNU `ls -ln` of
//! the mount, `ls` of one file, `cat` through symlinks resolved inside the image like chroot.

use crate::util::*;
use std::process::Command;
use std::time::Duration;

fn imgfs_ok(args: &[&str]) -> Vec<u8> {
    run_imgfs(args, CMD_TIMEOUT).assert_ok().stdout
}

/// `imgfs inpsect foo` is a typo, not a mount-helper call: clap's suggestion, exit 2.
#[test]
fn a_mistyped_subcommand_gets_a_suggestion() {
    let o = run_imgfs(["inpsect", "foo"], ERROR_TIMEOUT);
    assert_eq!(o.status.and_then(|s| s.code()), Some(2), "{}", o.stderr_str());
    let err = o.stderr_str();
    assert!(err.contains("unrecognized subcommand 'inpsect'"), "{err}");
    assert!(err.contains("a similar subcommand exists: 'inspect'"), "{err}");
    // Two operands without -o are not the mount.fuse3 form either.
    let src = fx("oci");
    let o = run_imgfs([src.to_str().unwrap(), "/nonexistent-mnt"], ERROR_TIMEOUT);
    assert_eq!(o.status.and_then(|s| s.code()), Some(2), "{}", o.stderr_str());
    assert!(o.stderr_str().contains("unrecognized subcommand"), "{}", o.stderr_str());
}

/// `imgfs ls -l` prints what GNU `ls -ln --time-style=long-iso` prints on the mount (less its
/// "total" line), for a directory and for one file; `imgfs ls SRC FILE` prints that entry.
#[test]
fn ls_long_matches_ls_of_the_mount() {
    require(&["ls"]);
    let src = fx("oci");
    let s = src.to_str().unwrap();
    let m = Mount::new(&src);
    for rel in [
        "images/v2/rootfs",
        "images/v2/rootfs/bin",
        "images/v2/rootfs/bin/sh",
        "images/v2/rootfs/tmp",
        "images/v2",
        "images/v2/config.json",
    ] {
        let o = run(
            Command::new("ls")
                .args(["-ln", "--time-style=long-iso"])
                .arg(m.path(rel))
                .env("TZ", "UTC")
                .env("LC_ALL", "C"),
            CMD_TIMEOUT,
        )
        .assert_ok();
        let mnt_prefix = format!("{}/", m.dir.display());
        let want: Vec<String> = o
            .stdout_str()
            .lines()
            .filter(|l| !l.starts_with("total "))
            .map(|l| l.replace(&mnt_prefix, ""))
            .collect();
        let got = String::from_utf8(imgfs_ok(&["ls", "-l", s, rel])).unwrap();
        let got: Vec<&str> = got.lines().collect();
        assert_eq!(got, want, "imgfs ls -l {rel}");
    }
    // Without -l: one file prints its path, as ls does (it printed a blank line).
    assert_eq!(
        imgfs_ok(&["ls", s, "images/v2/config.json"]),
        b"images/v2/config.json\n"
    );
    assert_eq!(
        imgfs_ok(&["ls", s, "images/v2/rootfs/bin/busybox"]),
        b"images/v2/rootfs/bin/busybox\n"
    );
}

/// `imgfs cat` follows symlinks inside the image's root, as `chroot IMAGE cat` would: relative
/// and absolute targets, chains; a loop and an over-long chain give one line; `..` and `/` in
/// a target never leave the image.
#[test]
fn cat_follows_symlinks_inside_the_image() {
    let src = fx("oci");
    let s = src.to_str().unwrap();
    // bin/sh -> busybox
    assert_eq!(
        sha256_bytes(&imgfs_ok(&["cat", s, "images/v2/rootfs/bin/sh"])),
        expect("BUSYBOX_SHA256")
    );
    let hostile = hostile_fixtures().join("layers");
    let h = hostile.to_str().unwrap();
    let root = "images/symlinks/rootfs";
    // a chain of 30 links, and an absolute link whose target the image lacks
    assert_eq!(imgfs_ok(&["cat", h, &format!("{root}/c00")]), b"T\n");
    for (link, reason) in [
        (
            "loop-a",
            "too many levels of symbolic links (a symlink loop in the image)",
        ),
        (
            "self",
            "too many levels of symbolic links (a symlink loop in the image)",
        ),
        ("e00", "too many levels of symbolic links (a symlink loop in the image)"),
        // `/etc/passwd` and `../../..../tmp` resolve inside the image, which has neither
        ("abs-passwd", "no such file or directory"),
        ("up/imgfs-hostile-escape-rel", "no such file or directory"),
        ("hostroot/etc/passwd", "no such file or directory"),
    ] {
        let path = format!("{root}/{link}");
        let o = run_imgfs(["cat", h, &path], CMD_TIMEOUT);
        assert_no_panic(&o);
        assert!(!o.ok() && o.stdout.is_empty(), "cat {link}: {}", o.describe());
        let err = o.stderr_str();
        let last = err.lines().last().unwrap_or("");
        assert_eq!(last, format!("imgfs: {path} in {h}: {reason}"), "cat {link}: {err}");
    }
    // `hostroot -> /` is the image's root: its own `target` file, not the host's.
    assert_eq!(imgfs_ok(&["cat", h, &format!("{root}/hostroot/target")]), b"T\n");
    // `ls -l` of a link shows the link; with a trailing slash, `ls` follows it like ls(1)
    let line = String::from_utf8(imgfs_ok(&["ls", "-l", h, &format!("{root}/abs-passwd")])).unwrap();
    assert!(
        line.starts_with("lrwxrwxrwx ") && line.ends_with(&format!(" {root}/abs-passwd -> /etc/passwd\n")),
        "{line}"
    );
}

/// The oci/ fixture's layout with index.json replaced: one entry per ref name, all naming the
/// v2 manifest.
fn layout_with_refs(dir: &std::path::Path, names: &[&str]) -> std::path::PathBuf {
    let src = fx("oci");
    let out = dir.join("layout");
    let o = run(Command::new("cp").arg("-a").arg(&src).arg(&out), CMD_TIMEOUT);
    o.assert_ok();
    let digest = expect("OCI_V2_MANIFEST");
    let size = std::fs::metadata(src.join("blobs/sha256").join(digest_hex(digest)))
        .unwrap()
        .len();
    let manifests: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            serde_json::json!({
                "mediaType": MT_MANIFEST, "digest": digest, "size": size,
                "annotations": { "org.opencontainers.image.ref.name": n },
            })
        })
        .collect();
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    out
}

/// Refs are shown at the paths users write them as (docs/layout.md): docker's short names,
/// `/` as directory levels, only impossible components escaped, collisions resolved the same
/// way on every mount, inode numbers stable.
#[test]
fn images_shows_refs_as_paths() {
    let t = tempdir();
    let names = [
        "a/b:1",
        "a",
        "docker.io/library/x:1",
        "docker.io/myorg/myapp:2.0",
        "quay.io/org/img:1",
        "../up",
        "v1",
    ];
    let layout = layout_with_refs(t.path(), &names);
    let m = Mount::new(&layout);
    assert_eq!(
        ref_dirs(&m),
        set(&[
            "a",
            "a%2Fb:1",
            "x:1",
            "myorg/myapp:2.0",
            "quay.io/org/img:1",
            "..%2Fup",
            "v1"
        ])
    );
    let ino = |m: &Mount, rel: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(m.path(rel)).unwrap());
    let probes = [
        "images/quay.io/org/img:1/config.json",
        "images/myorg/myapp:2.0/rootfs/bin/busybox",
        "images/a",
    ];
    let first: Vec<u64> = probes.iter().map(|p| ino(&m, p)).collect();
    drop(m);
    let m = Mount::new(&layout);
    let again: Vec<u64> = probes.iter().map(|p| ino(&m, p)).collect();
    assert_eq!(first, again, "inode numbers change between mounts");
    assert_eq!(
        m.read("images/quay.io/org/img:1/config.json"),
        m.read("images/v1/config.json")
    );

    // Every spelling docker/skopeo accept selects the same ref (`oci:DIR:REF`).
    let l = layout.display().to_string();
    let d = expect("OCI_V2_MANIFEST");
    for (sel, dir) in [
        ("myorg/myapp:2.0", "myorg/myapp:2.0"),
        ("docker.io/myorg/myapp:2.0", "myorg/myapp:2.0"),
        ("x:1", "x:1"),
        ("docker.io/library/x:1", "x:1"),
        ("index.docker.io/library/x:1", "x:1"),
        (&format!("quay.io/org/img@{d}"), "quay.io/org/img:1"),
        (&format!("quay.io/org/img:1@{d}"), "quay.io/org/img:1"),
        // alone, `a/b:1` collides with nothing: its own path
        ("a/b:1", "a/b:1"),
    ] {
        let o = run_imgfs(["ls", &format!("oci:{l}:{sel}"), "images", "-R"], CMD_TIMEOUT);
        let o = o.assert_ok();
        let first = o.stdout_str().lines().next().unwrap_or("").to_owned();
        assert!(
            o.stdout_str().lines().any(|line| line == format!("{dir}/config.json")),
            "oci:DIR:{sel} shows {first}..."
        );
    }
    // `x` means `x:latest`, which this layout does not have.
    let o = run_imgfs(["ls", &format!("oci:{l}:x"), "images"], CMD_TIMEOUT);
    assert!(
        !o.ok() && o.stderr_str().contains("no image \"x\" in this source"),
        "{}",
        o.stderr_str()
    );
}

/// docker-archive RepoTags select by every spelling too: skopeo writes `docker.io/imgfs/test:v2`,
/// docker writes `imgfs/test:v2`; both are `images/imgfs/test:v2/`.
#[test]
fn docker_archive_refs_select_by_any_spelling() {
    for fixture in ["docker-archive.tar", "docker-save-legacy.tar"] {
        let src = fx_required(fixture);
        for sel in [
            "imgfs/test:v2",
            "docker.io/imgfs/test:v2",
            "docker.io/imgfs/test:v2@",
            "@0",
        ] {
            let sel = sel.trim_end_matches('@');
            if sel == "@0" && fixture == "docker-archive.tar" {
                continue; // its image 0 is :latest
            }
            let reference = format!("docker-archive:{}:{sel}", src.display());
            let o = run_imgfs(["ls", &reference, "images/imgfs"], CMD_TIMEOUT).assert_ok();
            assert_eq!(o.stdout_str(), "test:v2/\n", "{reference}");
        }
    }
}

/// `imgfs mount SRC MNT --image [REF]` mounts that image's merged rootfs at MNT (and `--layer N`
/// one layer), for every kind of local source; `-o image=REF,layer=N` does the same for fstab.
#[test]
fn image_mounts_one_rootfs_for_every_source_kind() {
    let cases: &[(&str, &[&str], &str)] = &[
        // (fixture, extra mount arguments, the ref directory of the same image in a full mount)
        ("oci", &["--image", "v2"], "images/v2"),
        ("oci-archive.tar", &["--image", "v2"], "images/v2"),
        (
            "oci-archive.tar.gz",
            &["--image=docker.io/library/v2:latest"],
            "images/v2",
        ),
        (
            "docker-archive.tar",
            &["--image", "imgfs/test:v2"],
            "images/imgfs/test:v2",
        ),
        (
            "docker-save-legacy.tar",
            &["--image", "docker.io/imgfs/test:v2"],
            "images/imgfs/test:v2",
        ),
        ("v1-legacy.tar", &["--image"], "images/legacy:1"),
        ("dir", &["--image"], "images/latest"),
        ("dir.tar", &["-o", "image"], "images/latest"),
        ("oci", &["-o", "ro,image=v2"], "images/v2"),
        ("oci", &["--image", "v2", "--layer", "1"], "images/v2/layers/1"),
        ("oci", &["-o", "image=v2,layer=0"], "images/v2/layers/0"),
    ];
    for (fixture, args, want_dir) in cases {
        let src = fx_required(fixture);
        let full = Mount::new(&src);
        let want = if want_dir.contains("/layers/") {
            tree_dump(&full.path(want_dir))
        } else {
            tree_dump(&full.path(&format!("{want_dir}/rootfs")))
        };
        drop(full);
        let one = Mount::with_args(&src, args);
        assert!(!want.is_empty());
        assert_eq!(tree_dump(&one.dir), want, "{fixture} {args:?}: differs from {want_dir}");
    }
}

/// `--platform` picks a platform of a local multi-platform index for `--image` (default: this
/// host's), and is refused where it would do nothing.
#[test]
fn image_platform_on_a_local_multi_platform_index() {
    let src = fx("multi");
    let full = Mount::new(&src);
    let host = match std::env::consts::ARCH {
        "aarch64" => "linux-arm64",
        _ => "linux-amd64",
    };
    for (args, dir) in [
        (vec!["--image"], host),
        (vec!["--image", "multi", "--platform", "linux/arm64"], "linux-arm64"),
        (vec!["--image", "-o", "platform=linux/amd64"], "linux-amd64"),
    ] {
        let one = Mount::with_args(&src, &args);
        assert_eq!(
            tree_dump(&one.dir),
            tree_dump(&full.path(&format!("images/multi/{dir}/rootfs"))),
            "{args:?}"
        );
    }
    let s = src.to_str().unwrap();
    let t = tempdir();
    for (args, want) in [
        (
            vec!["--platform", "linux/arm64"],
            "--platform has no effect here: a local source shows every platform under images/<ref>/; \
             add --image [REF] to mount one platform's image",
        ),
        (
            vec!["--image", "--platform", "linux/s390x"],
            "image \"multi\" has no image for platform linux/s390x (it has: linux/amd64, linux/arm64)",
        ),
    ] {
        let o = run_imgfs(
            [&["mount", s, t.path().to_str().unwrap()][..], &args].concat(),
            ERROR_TIMEOUT,
        );
        assert_eq!(o.stderr_str(), format!("imgfs: {s}: {want}\n"), "{args:?}");
        assert!(!is_mounted(t.path()));
    }
    let oci = fx("oci");
    let o = run_imgfs(
        [
            "ls",
            oci.to_str().unwrap(),
            "--image",
            "v2",
            "--platform",
            "linux/arm64",
        ],
        ERROR_TIMEOUT,
    );
    assert!(
        o.stderr_str().contains("image \"v2\" is linux/amd64, not linux/arm64"),
        "{}",
        o.stderr_str()
    );
}

/// The oci/ fixture's v2 image with its config's run settings replaced by `settings` (a new
/// config and manifest), as the only ref `rich` of a new layout.
fn layout_with_config(dir: &std::path::Path, settings: serde_json::Value) -> std::path::PathBuf {
    let out = layout_with_refs(dir, &["rich"]);
    let blob = |d: &str| out.join("blobs/sha256").join(digest_hex(d));
    let put = |bytes: &[u8]| {
        let d = format!("sha256:{}", sha256_bytes(bytes));
        std::fs::write(blob(&d), bytes).unwrap();
        (d, bytes.len())
    };
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(expect("OCI_V2_MANIFEST"))).unwrap()).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()).unwrap();
    config["config"] = settings;
    config["variant"] = "v3".into();
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": MT_MANIFEST, "digest": md, "size": ms,
        "annotations": { "org.opencontainers.image.ref.name": "rich" },
    }]});
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    out
}

fn json_of(o: crate::util::Outcome) -> serde_json::Value {
    let o = o.assert_ok();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout_str()))
}

/// `imgfs inspect` shows what `skopeo inspect` (and `--config`) shows of an image's config,
/// and where each ref and layer is in the mount (docs/cli.md).
#[test]
fn inspect_shows_the_config_like_skopeo_and_the_paths() {
    require(&["skopeo"]);
    let t = tempdir();
    let settings = serde_json::json!({
        "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
        "Cmd": ["serve", "--port", "8080"],
        "Entrypoint": ["/bin/app"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
        "Labels": { "org.opencontainers.image.title": "rich", "b": "2" },
        "ExposedPorts": { "8080/tcp": {}, "53/udp": {} },
    });
    let layout = layout_with_config(t.path(), settings.clone());
    let sources = [
        (
            format!("oci:{}:rich", layout.display()),
            "images/rich",
            layout.display().to_string(),
        ),
        (
            format!("docker-archive:{}:imgfs/test:v2", fx("docker-archive.tar").display()),
            "images/imgfs/test:v2",
            format!(
                "docker-archive:{}:docker.io/imgfs/test:v2",
                fx("docker-archive.tar").display()
            ),
        ),
    ];
    for (source, path, skopeo_ref) in sources {
        let skopeo_ref = if skopeo_ref.contains(':') {
            skopeo_ref
        } else {
            format!("oci:{skopeo_ref}:rich")
        };
        let doc = json_of(run_imgfs(["inspect", &source], CMD_TIMEOUT));
        assert_eq!(doc["version"], 1);
        let r = &doc["refs"][0];
        assert_eq!(r["path"], path, "{source}");
        assert!(m_is_dir(&source, path), "{source}: {path} is not in the mount");
        let img = &r["image"];
        let sk = json_of(run(Command::new("skopeo").args(["inspect", &skopeo_ref]), CMD_TIMEOUT));
        let skc = json_of(run(
            Command::new("skopeo").args(["inspect", "--config", &skopeo_ref]),
            CMD_TIMEOUT,
        ));
        assert_eq!(img["created"], sk["Created"], "{source}");
        assert_eq!(img["architecture"], sk["Architecture"], "{source}");
        assert_eq!(img["os"], sk["Os"], "{source}");
        assert_eq!(img["env"], sk["Env"], "{source}");
        let labels = if sk["Labels"].is_null() {
            serde_json::Value::Null
        } else {
            sk["Labels"].clone()
        };
        assert_eq!(img["labels"], labels, "{source}");
        let layers: Vec<&serde_json::Value> = img["layers"].as_array().unwrap().iter().map(|l| &l["digest"]).collect();
        let sk_layers: Vec<&serde_json::Value> = sk["Layers"].as_array().unwrap().iter().collect();
        assert_eq!(layers, sk_layers, "{source}");
        let c = &skc["config"];
        for (mine, theirs) in [
            ("cmd", "Cmd"),
            ("entrypoint", "Entrypoint"),
            ("workingDir", "WorkingDir"),
            ("user", "User"),
        ] {
            assert_eq!(img[mine], c[theirs], "{source}: {mine}");
        }
        assert_eq!(img["variant"], skc["variant"], "{source}");
        let ports: Vec<String> = c["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mine: Vec<String> = img["exposedPorts"]
            .as_array()
            .map(|a| a.iter().map(|p| p.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(mine, ports, "{source}");
        let created_by: Vec<&serde_json::Value> = skc["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| &h["created_by"])
            .collect();
        let mine: Vec<&serde_json::Value> = img["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| &h["createdBy"])
            .collect();
        assert_eq!(mine, created_by, "{source}");
        for (i, l) in img["layers"].as_array().unwrap().iter().enumerate() {
            assert_eq!(l["path"], format!("{path}/layers/{i}"));
            assert!(l["size"].as_u64().unwrap() > 0 && l["mediaType"].as_str().unwrap().contains("layer"));
        }
    }
    // the rich config, field by field
    let doc = json_of(run_imgfs(
        ["inspect", &format!("oci:{}", layout.display())],
        CMD_TIMEOUT,
    ));
    let img = &doc["refs"][0]["image"];
    assert_eq!(img["cmd"], settings["Cmd"]);
    assert_eq!(img["exposedPorts"], serde_json::json!(["53/udp", "8080/tcp"]));
    assert_eq!(
        img["platform"],
        serde_json::json!({"os": "linux", "architecture": "amd64", "variant": "v3"})
    );
    // an index: children are objects with their platform and path
    let multi = fx("multi");
    let doc = json_of(run_imgfs(["inspect", multi.to_str().unwrap()], CMD_TIMEOUT));
    let idx = &doc["refs"][0]["image"];
    assert_eq!(idx["type"], "index");
    let arm = idx["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "linux-arm64")
        .expect("linux-arm64");
    assert_eq!(arm["path"], "images/multi/linux-arm64");
    assert_eq!(
        arm["image"]["platform"],
        serde_json::json!({"os": "linux", "architecture": "arm64"})
    );
    // --image with --platform: that platform's manifest alone, at its path
    let doc = json_of(run_imgfs(
        [
            "inspect",
            multi.to_str().unwrap(),
            "--image",
            "multi",
            "--platform",
            "linux/arm64",
        ],
        CMD_TIMEOUT,
    ));
    assert_eq!(doc["refs"].as_array().unwrap().len(), 1);
    assert_eq!(doc["refs"][0]["path"], "images/multi/linux-arm64");
    assert_eq!(doc["refs"][0]["image"]["architecture"], "arm64");
}

/// `imgfs ls SOURCE PATH` succeeds on a directory.
fn m_is_dir(source: &str, path: &str) -> bool {
    run_imgfs(["ls", source, path], CMD_TIMEOUT).ok()
}

/// An archive compressed as a whole with xz or bzip2 is refused in one line naming the
/// compression (docs/layout.md), at mount and for the CLI.
#[test]
fn xz_and_bzip2_archives_are_refused_in_one_line() {
    require(&["xz", "bzip2"]);
    let t = tempdir();
    let tar = fx("docker-archive.tar");
    for (tool, ext) in [("xz", "xz"), ("bzip2", "bz2")] {
        let out = t.path().join(format!("image.tar.{ext}"));
        let o = run(
            Command::new("sh")
                .arg("-c")
                .arg(format!("{tool} -1 -c \"$0\" > \"$1\""))
                .arg(&tar)
                .arg(&out),
            CMD_TIMEOUT,
        );
        o.assert_ok();
        let want = format!(
            "imgfs: {}: compressed with {tool} as a whole, which imgfs cannot read in place; decompress it \
             first ({tool} -dk FILE), or compress it with gzip or zstd instead\n",
            out.display()
        );
        let o = run_imgfs(["ls", out.to_str().unwrap()], ERROR_TIMEOUT);
        assert_eq!(o.stderr_str(), want, "imgfs ls");
        let mnt = t.path().join(format!("mnt-{ext}"));
        std::fs::create_dir(&mnt).unwrap();
        let o = run_imgfs(["mount", out.to_str().unwrap(), mnt.to_str().unwrap()], ERROR_TIMEOUT);
        assert_no_panic(&o);
        assert!(!o.ok() && !is_mounted(&mnt));
        assert_eq!(o.stderr_str(), want, "imgfs mount");
    }
}

/// The biggest gzip layer of a copy of the oci/ fixture: (path, hex of its digest).
fn biggest_gzip_blob(layout: &std::path::Path) -> (std::path::PathBuf, String) {
    let blobs = layout.join("blobs/sha256");
    let mut found: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::read(p).unwrap().starts_with(&[0x1f, 0x8b]))
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    found.sort();
    let (_, path) = found.pop().expect("a gzip layer in the oci fixture");
    let hex = path.file_name().unwrap().to_str().unwrap().to_owned();
    (path, hex)
}

/// Replaces digest `old` by `new` in every document of a layout and renames the documents
/// that changed to their new digests, until nothing names an old digest (flipped bytes keep
/// every size, so only hex strings change).
fn rename_blob_everywhere(layout: &std::path::Path, old: &str, new: &str) {
    let blobs = layout.join("blobs/sha256");
    let mut work = vec![(old.to_owned(), new.to_owned())];
    while let Some((old, new)) = work.pop() {
        for entry in std::fs::read_dir(&blobs).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            if !text.contains(&old) {
                continue;
            }
            let changed = text.replace(&old, &new);
            let hex = sha256_bytes(changed.as_bytes());
            std::fs::write(blobs.join(&hex), &changed).unwrap();
            std::fs::remove_file(&path).unwrap();
            work.push((path.file_name().unwrap().to_str().unwrap().to_owned(), hex));
        }
        let index = layout.join("index.json");
        let text = std::fs::read_to_string(&index).unwrap().replace(&old, &new);
        std::fs::write(&index, text).unwrap();
    }
}

/// A damaged gzip layer is named as such, never as a tar problem (issue 18): a copy whose
/// bytes no longer hash to the layer digest reports the mismatch; a layer published damaged
/// (its digest is of the damaged bytes) reports the broken gzip stream.
#[test]
fn a_corrupt_gzip_layer_is_reported_as_a_digest_mismatch_or_bad_gzip() {
    let t = tempdir();
    let layout = t.path().join("layout");
    run(Command::new("cp").arg("-a").arg(fx("oci")).arg(&layout), CMD_TIMEOUT).assert_ok();
    let (blob, hex) = biggest_gzip_blob(&layout);
    let mut bytes = std::fs::read(&blob).unwrap();
    // Inside the deflate data: zlib inflates on for a while and the tar parser sees garbage first.
    bytes[1000..1004].copy_from_slice(&[0xff; 4]);
    std::fs::write(&blob, &bytes).unwrap();
    let damaged = sha256_bytes(&bytes);
    let src = layout.to_str().unwrap();
    let o = run_imgfs(["ls", "--no-cache", src, "images/latest/rootfs/"], ERROR_TIMEOUT);
    assert_no_panic(&o);
    assert_eq!(
        o.stderr_str(),
        format!("imgfs: layer sha256:{hex}: bytes hash to sha256:{damaged}, not to the layer's digest\n")
    );
    // Published damaged: every document names the damaged bytes' digest.
    std::fs::rename(&blob, blob.with_file_name(&damaged)).unwrap();
    rename_blob_everywhere(&layout, &hex, &damaged);
    let o = run_imgfs(["ls", "--no-cache", src, "images/latest/rootfs/"], ERROR_TIMEOUT);
    assert_no_panic(&o);
    let err = o.stderr_str();
    let want = format!("imgfs: layer sha256:{damaged}: cannot decompress: corrupt gzip stream at compressed offset ");
    assert!(err.starts_with(&want) && err.lines().count() == 1, "{err}");
    assert!(!err.contains("tar"), "{err}");
}

/// `imgfs completions SHELL` prints scripts that bash, zsh and fish load and that complete
/// subcommands and options (bash and fish asked for real completions; zsh checked by `zsh -n`
/// and by loading the function through compinit).
#[test]
fn shell_completions_complete_subcommands_and_options() {
    require(&["bash", "zsh", "fish"]);
    let t = tempdir();
    for (shell, file) in [("bash", "imgfs.bash"), ("zsh", "_imgfs"), ("fish", "imgfs.fish")] {
        std::fs::write(t.path().join(file), imgfs_ok(&["completions", shell])).unwrap();
    }
    let dir = t.path().to_str().unwrap();
    let bash = |words: &str, cword: usize| {
        let script = format!(
            "source {dir}/imgfs.bash; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _imgfs imgfs \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        run(Command::new("bash").arg("-c").arg(script), CMD_TIMEOUT)
            .assert_ok()
            .stdout_str()
    };
    assert_eq!(bash("imgfs mo", 1), "mount\n");
    assert_eq!(bash("imgfs mount --ima", 2), "--image\n");
    let all = bash("imgfs ''", 1);
    for sub in [
        "mount",
        "umount",
        "status",
        "inspect",
        "ls",
        "cat",
        "man",
        "completions",
    ] {
        assert!(all.lines().any(|l| l == sub), "bash lacks {sub}: {all}");
    }
    let fish = |line: &str| {
        let script = format!("source {dir}/imgfs.fish; complete -C '{line}'");
        run(Command::new("fish").arg("-c").arg(script), CMD_TIMEOUT)
            .assert_ok()
            .stdout_str()
    };
    assert!(fish("imgfs mo").starts_with("mount\t"), "{}", fish("imgfs mo"));
    assert!(
        fish("imgfs mount --ima").starts_with("--image\t"),
        "{}",
        fish("imgfs mount --ima")
    );
    run(Command::new("zsh").arg("-n").arg(t.path().join("_imgfs")), CMD_TIMEOUT).assert_ok();
    let loaded = run(
        Command::new("zsh").arg("-fc").arg(format!(
            "fpath=({dir} $fpath); autoload -Uz compinit; compinit -u -d {dir}/zcompdump; \
             autoload -Uz _imgfs; print ${{+functions[_imgfs]}}; print $_comps[imgfs]"
        )),
        CMD_TIMEOUT,
    )
    .assert_ok()
    .stdout_str();
    assert_eq!(loaded, "1\n_imgfs\n");
}

/// The Debian package (scripts/build-deb.sh, cargo-deb) installs with `apt install ./imgfs_*.deb`;
/// then `mount -t fuse.imgfs` works with no manual link (mount.fuse3 finds /usr/bin/imgfs), and
/// its man page renders. The package is removed again at the end.
#[test]
fn debian_package_installs_and_mount_t_fuse_imgfs_works() {
    require(&["apt-get", "dpkg", "mount", "mount.fuse3", "man"]);
    let root = crate_root();
    let o = run(
        Command::new("bash")
            .arg(root.join("scripts/build-deb.sh"))
            .env("IMGFS_DEB_NO_BUILD", "1"),
        Duration::from_secs(600),
    );
    let o = o.assert_ok();
    let deb = o
        .stdout_str()
        .lines()
        .rev()
        .find(|l| l.ends_with(".deb"))
        .expect("the .deb path")
        .trim()
        .to_owned();
    // `man ./imgfs.1` renders every subcommand.
    let page = run(
        Command::new("man")
            .arg("-l")
            .arg(root.join("target/assets/imgfs.1"))
            .env("MANWIDTH", "100"),
        CMD_TIMEOUT,
    )
    .assert_ok()
    .stdout_str();
    for sub in [
        "IMGFS MOUNT",
        "IMGFS UMOUNT",
        "IMGFS INSPECT",
        "IMGFS LS",
        "IMGFS CAT",
        "image[=REF]",
    ] {
        assert!(page.contains(sub), "the man page lacks {sub}:\n{page}");
    }
    let install = run(
        Command::new("apt-get")
            .args(["install", "-y"])
            .arg(&deb)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        Duration::from_secs(300),
    );
    let t = tempdir();
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let src = fx("oci");
    // mount(8) gives its helper no PATH: the default one of /bin/sh finds /usr/bin/imgfs.
    let mounted = install.ok()
        && run(
            Command::new("mount")
                .args(["-t", "fuse.imgfs"])
                .arg(&src)
                .arg(&mnt)
                .args(["-o", "ro"])
                .env_clear(),
            MOUNT_TIMEOUT,
        )
        .ok();
    let top = ls(&mnt);
    let installed_man = std::path::Path::new("/usr/share/man/man1/imgfs.1.gz").is_file();
    let completions = [
        "/usr/share/bash-completion/completions/imgfs",
        "/usr/share/zsh/vendor-completions/_imgfs",
        "/usr/share/fish/vendor_completions.d/imgfs.fish",
    ]
    .map(|p| (p, std::path::Path::new(p).is_file()));
    let _ = run(Command::new("umount").arg(&mnt), MOUNT_TIMEOUT);
    force_unmount(&mnt);
    let removed = run(
        Command::new("dpkg")
            .args(["-r", "imgfs"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        Duration::from_secs(120),
    );
    assert!(
        install.ok(),
        "apt-get install {deb}: {}\n{}",
        install.stderr_str(),
        install.stdout_str()
    );
    assert!(mounted, "mount -t fuse.imgfs failed");
    // Every mount shows a Docker-25 style manifest.json (docs/layout.md).
    assert_eq!(
        top,
        set(&["blobs", "images", "index.json", "manifest.json", "oci-layout"])
    );
    assert!(installed_man);
    for (path, there) in completions {
        assert!(there, "the package did not install {path}");
    }
    assert!(removed.ok(), "dpkg -r imgfs: {}", removed.stderr_str());
    assert!(!std::path::Path::new("/usr/bin/imgfs").exists());
}
