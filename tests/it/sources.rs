//! Every source format mounts and shows the tree of docs/layout.md; real clients (skopeo, umoci)
//! accept the mount; the same image reads the same from every format; the CLI without FUSE;
//! real archives from other projects.

use crate::util::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// What kind of source a fixture is, which decides what the mount must show at its top.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// OCI image layout (directory or tar): index.json and blobs are the source's bytes.
    Oci,
    /// Docker >= 25 `docker save` / `ctr export`: OCI layout plus manifest.json.
    DockerOci,
    /// `docker save` (<= 24) or skopeo docker-archive: manifest.json (+ repositories).
    Docker,
    /// The legacy v1 format: repositories + <id>/{json,VERSION,layer.tar}.
    DockerV1,
    /// containers-image dir: transport.
    Dir,
}

const BASE_TOP: [&str; 4] = ["blobs", "images", "index.json", "oci-layout"];

fn json(b: &[u8], what: &str) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
}

/// The ref directory names the source implies, from its own metadata (None: not knowable, e.g.
/// untagged docker images are named by the digest of a synthesized manifest).
fn expected_refs(kind: Kind, src: &SourceFiles) -> Option<BTreeSet<String>> {
    match kind {
        Kind::Oci | Kind::DockerOci => {
            let idx = json(&src.get("index.json")?, "source index.json");
            let mut out = BTreeSet::new();
            for d in idx["manifests"].as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
                if is_image_entry(d) {
                    out.insert(ref_dir_name(d));
                }
            }
            if kind == Kind::DockerOci && out.is_empty() {
                return None; // Docker 25 archives may keep their images in manifest.json only
            }
            Some(out)
        }
        Kind::Docker => {
            let man = json(&src.get("manifest.json")?, "source manifest.json");
            let mut out = BTreeSet::new();
            for e in man.as_array()? {
                let tags = e["RepoTags"].as_array().cloned().unwrap_or_default();
                if tags.is_empty() {
                    return None;
                }
                for t in tags {
                    out.insert(escape_ref(t.as_str()?));
                }
            }
            Some(out)
        }
        Kind::DockerV1 => {
            let repos = json(&src.get("repositories")?, "source repositories");
            let mut out = BTreeSet::new();
            for (repo, tags) in repos.as_object()? {
                for tag in tags.as_object()?.keys() {
                    out.insert(escape_ref(&format!("{repo}:{tag}")));
                }
            }
            Some(out)
        }
        Kind::Dir => Some(set(&["latest"])),
    }
}

/// Checks one ref directory (or platform directory) against its descriptor.
fn check_ref_dir(m: &Mount, rel: &str, desc: &Value, f: &mut Failures, depth: usize) {
    let digest = desc["digest"].as_str().unwrap_or("");
    let blob = m.path(&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")));
    let doc: Option<Value> = fs::read(&blob).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let dir = m.path(rel);
    if !dir.is_dir() {
        f.push(format!("{}: {rel}/ is missing (for {digest})", m.source));
        return;
    }
    let index = is_index(desc, doc.as_ref());
    let (plain, converted) = match index {
        true => ("index.json", "index.oci.json"),
        false => ("manifest.json", "manifest.oci.json"),
    };
    let p = dir.join(plain);
    if !p.is_file() {
        f.push(format!("{}: {rel}/{plain} missing", m.source));
        return;
    }
    // docs/layout.md: a Docker-typed document is shown as it is, its OCI conversion (what an
    // OCI index names) beside it; the children of an index are those of the original.
    let sum = sha256_file(&p);
    let oci_sum = dir.join(converted).is_file().then(|| sha256_file(&dir.join(converted)));
    f.check(
        format!("sha256:{sum}") == digest || oci_sum.as_ref().is_some_and(|o| format!("sha256:{o}") == digest),
        || format!("{}: {rel}/{plain} (or {converted}) does not hash to {digest}", m.source),
    );
    if oci_sum.is_some() {
        let mt = |name: &str| {
            let v: Option<Value> = fs::read(dir.join(name))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            v.and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let (orig, conv) = (mt(plain), mt(converted));
        f.check(conv.starts_with("application/vnd.oci."), || {
            format!("{}: {rel}/{converted} has media type {conv:?}", m.source)
        });
        f.check(orig != conv, || {
            format!("{}: {rel}/{converted} beside an OCI {plain}", m.source)
        });
    }
    let doc: Option<Value> = fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if index {
        let Some(doc) = doc else { return };
        let children = doc["manifests"].as_array().cloned().unwrap_or_default();
        let names: Vec<Option<String>> = children.iter().map(|c| platform_dir(&c["platform"])).collect();
        // docs/layout.md: `<os>-<arch>[-<variant>]`, "falling back to sha256:<hex> when an entry
        // has no platform or two entries share one". Two readings of the second case are
        // accepted: every entry sharing a platform falls back, or all but the first do.
        let got = ls(&dir);
        let mut readings = Vec::new();
        for first_keeps in [false, true] {
            let mut expected = vec![("index.json".to_owned(), None)];
            for (i, (c, name)) in children.iter().zip(&names).enumerate() {
                let shared = names.iter().filter(|n| *n == name).count() > 1;
                let first = names.iter().position(|n| n == name) == Some(i);
                let keep = name.is_some() && (!shared || (first_keeps && first));
                let n = if keep {
                    name.clone().unwrap()
                } else {
                    c["digest"].as_str().unwrap().to_owned()
                };
                expected.push((n, Some(c)));
            }
            readings.push(expected);
        }
        if oci_sum.is_some() {
            for r in &mut readings {
                r.push(("index.oci.json".to_owned(), None));
            }
        }
        let matching = readings
            .iter()
            .find(|r| r.iter().map(|(n, _)| n.clone()).collect::<BTreeSet<_>>() == got);
        match matching {
            None => f.push(format!(
                "{}: {rel}/ lists {got:?}, expected {:?}",
                m.source,
                readings[0].iter().map(|(n, _)| n.clone()).collect::<BTreeSet<_>>()
            )),
            Some(r) => {
                if depth < 8 {
                    for (n, c) in r.iter().filter_map(|(n, c)| c.map(|c| (n, c))) {
                        check_ref_dir(m, &format!("{rel}/{n}"), c, f, depth + 1);
                    }
                }
            }
        }
    } else {
        let Some(doc) = doc else { return };
        let cfg = doc["config"]["digest"].as_str().unwrap_or("");
        let cp = dir.join("config.json");
        if !cp.is_file() {
            f.push(format!("{}: {rel}/config.json missing", m.source));
            return;
        }
        let csum = sha256_file(&cp);
        f.check(format!("sha256:{csum}") == cfg, || {
            format!("{}: {rel}/config.json hashes to {csum}, manifest says {cfg}", m.source)
        });
    }
}

/// Everything docs/layout.md says about the metadata part of a mount of `src_path`.
pub fn check_mount(m: &Mount, src_path: &Path, kind: Kind, f: &mut Failures) {
    let src = SourceFiles::open(src_path);
    let s = &m.source;

    // top level
    // every mount has the manifest.json `docker load` reads (checked by tests/it/clients.rs);
    // a docker archive's own manifest.json is manifest.source.json
    let top = m.ls("");
    let mut want = set(&BASE_TOP);
    want.insert("manifest.json".into());
    let dir_source = matches!(kind, Kind::Dir);
    if src.get("manifest.json").is_some() && !dir_source {
        want.insert("manifest.source.json".into());
    }
    if src.get("repositories").is_some() {
        want.insert("repositories".into());
    }
    f.check(top == want, || format!("{s}: top level is {top:?}, expected {want:?}"));
    for (shown, name) in [
        ("manifest.source.json", "manifest.json"),
        ("repositories", "repositories"),
    ] {
        if top.contains(shown) {
            let own = src.get(name);
            f.check(own.as_deref() == Some(&m.read(shown)[..]), || {
                format!("{s}: {shown} differs from the archive's own {name}")
            });
        }
    }

    // oci-layout
    if top.contains("oci-layout") {
        let ol = m.read("oci-layout");
        match serde_json::from_slice::<Value>(&ol) {
            Ok(v) => f.check(v["imageLayoutVersion"].is_string(), || {
                format!("{s}: oci-layout has no imageLayoutVersion")
            }),
            Err(e) => f.push(format!("{s}: oci-layout is not JSON: {e}")),
        }
        if matches!(kind, Kind::Oci | Kind::DockerOci) {
            if let Some(own) = src.get("oci-layout") {
                f.check(own == ol, || format!("{s}: oci-layout differs from the source's bytes"));
            }
        }
    }

    // blobs: each hashes to its name; exactly the reachable ones
    if !top.contains("blobs") || !top.contains("index.json") {
        return;
    }
    let b = m.ls("blobs");
    f.check(b == set(&["sha256"]), || {
        format!("{s}: blobs/ lists {b:?}, expected only sha256")
    });
    let names = m.ls("blobs/sha256");
    f.check(!names.is_empty(), || format!("{s}: blobs/sha256 is empty"));
    for n in &names {
        let p = m.path(&format!("blobs/sha256/{n}"));
        let md = fs::symlink_metadata(&p).unwrap();
        f.check(md.is_file(), || format!("{s}: blobs/sha256/{n} is not a regular file"));
        f.check(n.len() == 64 && n.bytes().all(|c| c.is_ascii_hexdigit()), || {
            format!("{s}: blob name {n} is not a sha256 hex")
        });
        let sum = sha256_file(&p);
        f.check(&sum == n, || format!("{s}: blobs/sha256/{n} hashes to {sum}"));
        f.check(
            md.len() == fs::read(&p).map(|b| b.len() as u64).unwrap_or(u64::MAX),
            || {
                format!(
                    "{s}: blobs/sha256/{n}: st_size {} differs from the bytes read",
                    md.len()
                )
            },
        );
    }
    // Docker-typed documents replaced in index.json by their OCI conversions are shown too.
    let (originals, conversions) = converted_documents(m);
    let mut reach: BTreeSet<String> = reachable(m).into_iter().map(|d| digest_hex(&d).to_owned()).collect();
    reach.extend(originals.iter().cloned());
    f.check(reach == names, || {
        format!(
            "{s}: blobs/sha256 differs from the blobs reachable from index.json: shown but unreachable {:?}, reachable but not shown {:?}",
            names.difference(&reach).collect::<Vec<_>>(),
            reach.difference(&names).collect::<Vec<_>>()
        )
    });

    // OCI sources: the source's own bytes
    let index_bytes = m.read("index.json");
    let idx = json(&index_bytes, "mounted index.json");
    if matches!(kind, Kind::Oci | Kind::DockerOci) {
        let own = src.get("index.json");
        // An index.json that lists nothing (go-containerregistry writes `"manifests": null` beside
        // docker's manifest.json) is replaced by one listing the layout's own manifests.
        let lists_nothing = own
            .as_deref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .is_some_and(|v| v["manifests"].as_array().is_none_or(|a| a.is_empty()));
        let renamed = kind == Kind::DockerOci && idx["manifests"].as_array().map(Vec::len) != own_entries(&own);
        f.check(
            lists_nothing || renamed || !conversions.is_empty() || own.as_deref() == Some(&index_bytes[..]),
            || format!("{s}: index.json differs from the source's bytes"),
        );
        for n in names.difference(&conversions) {
            let own = src.get(&format!("blobs/sha256/{n}"));
            f.check(
                own.as_ref().map(|b| sha256_bytes(b)).as_deref() == Some(n.as_str()),
                || format!("{s}: blob {n} is not the source's blob"),
            );
        }
    }

    // images/: one dir per index.json entry
    let all_entries = idx["manifests"].as_array().cloned().unwrap_or_default();
    // entries whose media type is neither a manifest nor an index (e.g. a bare descriptor
    // blob) have no layout in docs/layout.md: they are not checked here
    let entries: Vec<Value> = all_entries.iter().filter(|d| is_image_entry(d)).cloned().collect();
    let from_index: BTreeSet<String> = entries.iter().map(ref_dir_name).collect();
    let images = ref_dirs(m);
    let all_names: BTreeSet<String> = all_entries.iter().map(ref_dir_name).collect();
    f.check(from_index.is_subset(&images) && images.is_subset(&all_names), || {
        format!("{s}: images/ lists {images:?}, index.json names {from_index:?}")
    });
    if let Some(want) = expected_refs(kind, &src) {
        f.check(want.is_subset(&images) && images.is_subset(&all_names), || {
            format!("{s}: images/ lists {images:?}, the source has refs {want:?}")
        });
    }
    f.check(!images.is_empty(), || format!("{s}: images/ is empty"));
    let mut seen = BTreeSet::new();
    for e in &entries {
        let name = ref_dir_name(e);
        if seen.insert(name.clone()) {
            check_ref_dir(m, &format!("images/{name}"), e, f, 0);
        }
    }

    // synthesized manifests of docker archives
    match kind {
        Kind::Docker => check_docker_synthesized(m, &src, f),
        Kind::DockerV1 => check_v1_synthesized(m, &src, f),
        Kind::Dir => {
            let own = src.get("manifest.json").expect("dir: source has manifest.json");
            let want = format!("sha256:{}", sha256_bytes(&own));
            let got: Vec<&str> = all_entries.iter().filter_map(|e| e["digest"].as_str()).collect();
            f.check(got == vec![want.as_str()], || {
                format!("{s}: index.json names {got:?}, expected only the dir's manifest {want}")
            });
        }
        _ => {}
    }
}

/// Number of entries of a source's index.json.
fn own_entries(own: &Option<Vec<u8>>) -> Option<usize> {
    let v: Value = serde_json::from_slice(own.as_deref()?).ok()?;
    v["manifests"].as_array().map(Vec::len)
}

/// The hex digests of the Docker-typed documents shown beside an OCI conversion under images/
/// (`manifest.json` beside `manifest.oci.json`, `index.json` beside `index.oci.json`), and of
/// those conversions.
pub fn converted_documents(m: &Mount) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut originals, mut conversions) = (BTreeSet::new(), BTreeSet::new());
    for rel in walk_metadata(&m.path("images")) {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let plain = match name {
            "manifest.oci.json" => "manifest.json",
            "index.oci.json" => "index.json",
            _ => continue,
        };
        let path = m.path("images").join(&rel);
        conversions.insert(sha256_file(&path));
        originals.insert(sha256_file(&path.with_file_name(plain)));
    }
    (originals, conversions)
}

/// docker-archive: one synthesized OCI manifest per manifest.json entry, config = the archive's
/// config bytes, layers = sha256 of the member bytes.
fn check_docker_synthesized(m: &Mount, src: &SourceFiles, f: &mut Failures) {
    let s = &m.source;
    let man = json(&src.get("manifest.json").unwrap(), "manifest.json");
    for e in man.as_array().unwrap() {
        let Some(tag) = e["RepoTags"].as_array().and_then(|t| t.first()).and_then(Value::as_str) else {
            continue;
        };
        let rel = format!("images/{}", escape_ref(tag));
        let p = m.path(&format!("{rel}/manifest.json"));
        let Ok(b) = fs::read(&p) else {
            f.push(format!("{s}: {rel}/manifest.json unreadable"));
            continue;
        };
        let doc = json(&b, "synthesized manifest");
        f.check(doc["mediaType"] == MT_MANIFEST, || {
            format!("{s}: {rel}: mediaType is {}", doc["mediaType"])
        });
        f.check(
            doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json",
            || format!("{s}: {rel}: config mediaType is {}", doc["config"]["mediaType"]),
        );
        let cfg_member = e["Config"].as_str().unwrap();
        let cfg_own = src
            .get(cfg_member)
            .unwrap_or_else(|| panic!("archive lacks {cfg_member}"));
        f.check(
            doc["config"]["digest"] == format!("sha256:{}", sha256_bytes(&cfg_own)),
            || {
                format!(
                    "{s}: {rel}: config digest {} is not the sha256 of {cfg_member}",
                    doc["config"]["digest"]
                )
            },
        );
        f.check(m.read(&format!("{rel}/config.json")) == cfg_own, || {
            format!("{s}: {rel}/config.json differs from {cfg_member}")
        });
        let cfg = json(&cfg_own, cfg_member);
        let layers = doc["layers"].as_array().cloned().unwrap_or_default();
        let members = e["Layers"].as_array().cloned().unwrap_or_default();
        f.check(layers.len() == members.len(), || {
            format!(
                "{s}: {rel}: {} layers, manifest.json has {}",
                layers.len(),
                members.len()
            )
        });
        for (i, (l, member)) in layers.iter().zip(&members).enumerate() {
            let member = member.as_str().unwrap();
            let own = src.get(member).unwrap_or_else(|| panic!("archive lacks {member}"));
            let want = format!("sha256:{}", sha256_bytes(&own));
            f.check(l["digest"] == want, || {
                format!(
                    "{s}: {rel}: layer {i} digest {} is not the sha256 of {member} ({want})",
                    l["digest"]
                )
            });
            let compressed = own.starts_with(&[0x1f, 0x8b]) || own.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
            let mt = l["mediaType"].as_str().unwrap_or("");
            let want_mt = if own.starts_with(&[0x1f, 0x8b]) {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else if compressed {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            f.check(mt == want_mt, || {
                format!("{s}: {rel}: layer {i} mediaType {mt}, expected {want_mt}")
            });
            if !compressed {
                f.check(cfg["rootfs"]["diff_ids"][i] == want, || {
                    format!("{s}: {rel}: layer {i} digest is not diff_id {i}")
                });
            }
        }
    }
}

/// v1 legacy: the layers are the <id>/layer.tar members bottom-up; the config is synthesized
/// with diff_ids equal to them.
fn check_v1_synthesized(m: &Mount, src: &SourceFiles, f: &mut Failures) {
    let s = &m.source;
    let repos = json(&src.get("repositories").unwrap(), "repositories");
    for (repo, tags) in repos.as_object().unwrap() {
        for (tag, top) in tags.as_object().unwrap() {
            let mut chain = Vec::new();
            let mut id = top.as_str().map(str::to_owned);
            while let Some(i) = id {
                let j = json(&src.get(&format!("{i}/json")).unwrap(), "layer json");
                chain.push(i);
                id = j["parent"].as_str().map(str::to_owned);
            }
            chain.reverse();
            let want: Vec<String> = chain
                .iter()
                .map(|i| format!("sha256:{}", sha256_bytes(&src.get(&format!("{i}/layer.tar")).unwrap())))
                .collect();
            let rel = format!("images/{}", escape_ref(&format!("{repo}:{tag}")));
            let Ok(b) = fs::read(m.path(&format!("{rel}/manifest.json"))) else {
                f.push(format!("{s}: {rel}/manifest.json unreadable"));
                continue;
            };
            let doc = json(&b, "synthesized manifest");
            f.check(doc["mediaType"] == MT_MANIFEST, || {
                format!("{s}: {rel}: mediaType {}", doc["mediaType"])
            });
            let got: Vec<String> = doc["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned())
                .collect();
            f.check(got == want, || {
                format!("{s}: {rel}: layers {got:?}, expected the layer.tar digests {want:?}")
            });
            let Ok(cb) = fs::read(m.path(&format!("{rel}/config.json"))) else {
                f.push(format!("{s}: {rel}/config.json unreadable"));
                continue;
            };
            let cfg = json(&cb, "synthesized config");
            let diff: Vec<String> = cfg["rootfs"]["diff_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            f.check(diff == want, || {
                format!("{s}: {rel}: config diff_ids {diff:?}, expected {want:?}")
            });
            f.check(cfg["architecture"] == "amd64" && cfg["os"] == "linux", || {
                format!("{s}: {rel}: config platform {}/{}", cfg["os"], cfg["architecture"])
            });
        }
    }
}

/// Mounts `spec` and runs `check_mount` against the fixture at `path`.
fn mount_and_check(spec: &str, path: &Path, kind: Kind) -> Mount {
    let m = Mount::new(spec);
    let mut f = Failures::default();
    check_mount(&m, path, kind, &mut f);
    f.assert_none(&format!("mount of {spec}"));
    m
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

// ------------------------------------------------------------------------------------------------
// Every source format mounts
// ------------------------------------------------------------------------------------------------

#[test]
fn mount_oci_layout() {
    let src = fx("oci");
    let m = mount_and_check(&p(&src), &src, Kind::Oci);
    assert_eq!(m.ls("images"), set(&["latest", "v1", "v2"]));
    let v1 = expect("OCI_V1_MANIFEST");
    let v2 = expect("OCI_V2_MANIFEST");
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/v1/manifest.json"))),
        v1
    );
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/v2/manifest.json"))),
        v2
    );
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/latest/manifest.json"))),
        v2
    );
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/v2/config.json"))),
        expect("OCI_V2_CONFIG")
    );
    assert_eq!(m.json("images/v2/manifest.json")["layers"].as_array().unwrap().len(), 3);
}

#[test]
fn mount_oci_transport_syntax() {
    let src = fx("oci");
    let bare = Mount::new(&src);
    let m = mount_and_check(&format!("oci:{}", p(&src)), &src, Kind::Oci);
    assert_eq!(m.read("index.json"), bare.read("index.json"));
    // oci:DIR:REF selects an image of the layout: it must be shown
    let r = Mount::new(format!("oci:{}:v1", p(&src)));
    assert!(
        r.ls("images").contains("v1"),
        "oci:DIR:v1 shows images/ {:?}",
        r.ls("images")
    );
    let v1 = r.path("images/v1/manifest.json");
    assert_eq!(format!("sha256:{}", sha256_file(&v1)), expect("OCI_V1_MANIFEST"));
}

#[test]
fn mount_multi_platform_index() {
    let src = fx("multi");
    let m = mount_and_check(&p(&src), &src, Kind::Oci);
    assert_eq!(m.ls("images"), set(&["multi"]));
    assert_eq!(m.ls("images/multi"), set(&["index.json", "linux-amd64", "linux-arm64"]));
    let idx = m.json("images/multi/index.json");
    for (i, plat) in ["linux-amd64", "linux-arm64"].iter().enumerate() {
        let d = idx["manifests"][i]["digest"].as_str().unwrap();
        let got = sha256_file(&m.path(&format!("images/multi/{plat}/manifest.json")));
        assert_eq!(format!("sha256:{got}"), d, "{plat}/manifest.json");
        let cfg = m.json(&format!("images/multi/{plat}/config.json"));
        assert_eq!(
            cfg["architecture"],
            plat.trim_start_matches("linux-"),
            "{plat}/config.json"
        );
    }
    assert_eq!(
        format!(
            "sha256:{}",
            sha256_file(&m.path("images/multi/linux-amd64/manifest.json"))
        ),
        expect("OCI_V2_MANIFEST")
    );
}

#[test]
fn mount_oci_archive() {
    let src = fx("oci-archive.tar");
    let m = mount_and_check(&p(&src), &src, Kind::Oci);
    assert_eq!(m.ls("images"), set(&["v2"]));
    let m2 = mount_and_check(&format!("oci-archive:{}", p(&src)), &src, Kind::Oci);
    assert_eq!(m.read("index.json"), m2.read("index.json"));
}

#[test]
fn mount_oci_archive_gzip() {
    let src = fx("oci-archive.tar.gz");
    let m = mount_and_check(&p(&src), &src, Kind::Oci);
    assert_eq!(m.ls("images"), set(&["v2"]));
}

#[test]
fn mount_oci_archive_dotslash_names() {
    let src = fx("oci-archive-dotslash.tar");
    let m = mount_and_check(&p(&src), &src, Kind::Oci);
    assert_eq!(m.ls("images"), set(&["latest", "v1", "v2"]));
}

#[test]
fn mount_oci_zstd_layers() {
    let src = fx("oci-zstd");
    let m = mount_and_check(&p(&src), &src, Kind::Oci);
    let man = m.json("images/v2/manifest.json");
    for l in man["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
    }
}

#[test]
fn mount_docker_archive_skopeo() {
    let src = fx("docker-archive.tar");
    let m = mount_and_check(&p(&src), &src, Kind::Docker);
    assert_eq!(ref_dirs(&m), set(&["imgfs/test:latest", "imgfs/test:v2"]));
    // the synthesized index names its refs so that oci:MNT:REF finds them
    let names: BTreeSet<String> = m.json("index.json")["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(names, set(&["docker.io/imgfs/test:latest", "docker.io/imgfs/test:v2"]));
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/imgfs/test:v2/config.json"))),
        expect("OCI_V2_CONFIG")
    );
    // deterministic synthesis: a second mount shows the same bytes
    let m2 = Mount::new(&src);
    assert_eq!(m.read("index.json"), m2.read("index.json"));
    assert_eq!(m.ls("blobs/sha256"), m2.ls("blobs/sha256"));
}

#[test]
fn mount_docker_archive_transport_syntax() {
    let src = fx("docker-archive.tar");
    let m = Mount::new(format!("docker-archive:{}", p(&src)));
    let mut f = Failures::default();
    check_mount(&m, &src, Kind::Docker, &mut f);
    f.assert_none("docker-archive:FILE");
    for sel in ["docker.io/imgfs/test:v2", "@0"] {
        let m = Mount::new(format!("docker-archive:{}:{sel}", p(&src)));
        let imgs = ref_dirs(&m);
        assert!(
            imgs.contains("imgfs/test:v2"),
            "docker-archive:FILE:{sel} shows images/ {imgs:?}"
        );
    }
}

#[test]
fn mount_docker_archive_gzip() {
    let src = fx("docker-archive.tar.gz");
    mount_and_check(&p(&src), &src, Kind::Docker);
}

#[test]
fn mount_docker_archive_two_images() {
    let src = fx_required("docker-archive-multi.tar");
    let m = mount_and_check(&p(&src), &src, Kind::Docker);
    assert_eq!(ref_dirs(&m), set(&["imgfs/test:v1", "imgfs/test:v2"]));
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/imgfs/test:v2/config.json"))),
        expect("OCI_V2_CONFIG")
    );
}

#[test]
fn mount_docker_save_legacy() {
    let src = fx_required("docker-save-legacy.tar");
    let m = mount_and_check(&p(&src), &src, Kind::Docker);
    assert_eq!(ref_dirs(&m), set(&["imgfs/test:v2"]));
}

#[test]
fn mount_docker_save_legacy_gzip() {
    let src = fx_required("docker-save-legacy.tar.gz");
    mount_and_check(&p(&src), &src, Kind::Docker);
}

#[test]
fn mount_containerd_export() {
    let src = fx_required("containerd-export.tar");
    let m = mount_and_check(&p(&src), &src, Kind::DockerOci);
    assert_eq!(m.ls("images"), set(&["v2"]));
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/v2/manifest.json"))),
        expect("OCI_V2_MANIFEST")
    );
}

#[test]
fn mount_v1_legacy() {
    let src = fx("v1-legacy.tar");
    let m = mount_and_check(&p(&src), &src, Kind::DockerV1);
    assert_eq!(m.ls("images"), set(&["legacy:1"]));
    let man = m.json("images/legacy:1/manifest.json");
    assert_eq!(man["layers"].as_array().unwrap().len(), 2);
    // synthesized deterministically
    let m2 = Mount::new(&src);
    assert_eq!(m.read("index.json"), m2.read("index.json"));
    assert_eq!(
        m.read("images/legacy:1/config.json"),
        m2.read("images/legacy:1/config.json")
    );
}

#[test]
fn mount_dir_transport() {
    let src = fx("dir");
    let m = mount_and_check(&p(&src), &src, Kind::Dir);
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/latest/manifest.json"))),
        expect("OCI_V2_MANIFEST")
    );
    let m2 = mount_and_check(&format!("dir:{}", p(&src)), &src, Kind::Dir);
    assert_eq!(m.read("index.json"), m2.read("index.json"));
}

#[test]
fn mount_dir_tar() {
    let src = fx("dir.tar");
    let m = mount_and_check(&p(&src), &src, Kind::Dir);
    assert_eq!(
        format!("sha256:{}", sha256_file(&m.path("images/latest/manifest.json"))),
        expect("OCI_V2_MANIFEST")
    );
}

// ------------------------------------------------------------------------------------------------
// The same image from every format
// ------------------------------------------------------------------------------------------------

/// (fixture, ref dir, needs docker/containerd)
const SAME_IMAGE: &[(&str, &str, bool)] = &[
    ("oci", "v2", false),
    ("oci-archive.tar", "v2", false),
    ("oci-archive.tar.gz", "v2", false),
    ("oci-archive-dotslash.tar", "v2", false),
    ("oci-zstd", "v2", false),
    ("docker-archive.tar", "imgfs/test:v2", false),
    ("docker-archive.tar.gz", "imgfs/test:v2", false),
    ("dir", "latest", false),
    ("dir.tar", "latest", false),
    ("docker-save-legacy.tar", "imgfs/test:v2", true),
    ("docker-save-legacy.tar.gz", "imgfs/test:v2", true),
    ("docker-archive-multi.tar", "imgfs/test:v2", true),
    ("containerd-export.tar", "v2", true),
];

#[test]
fn same_image_across_formats() {
    let mut f = Failures::default();
    let want_cfg = expect("OCI_V2_CONFIG");
    let mut diff_ids: Option<Value> = None;
    for (name, rref, real) in SAME_IMAGE {
        let src = if *real { fx_required(name) } else { fx(name) };
        let m = match Mount::try_new(&src) {
            Ok(m) => m,
            Err(o) => {
                f.push(format!("{name}: mount failed: {}", o.stderr_str().trim()));
                continue;
            }
        };
        let dir = format!("images/{rref}");
        let cfg_bytes = match fs::read(m.path(&format!("{dir}/config.json"))) {
            Ok(b) => b,
            Err(e) => {
                f.push(format!("{name}: {dir}/config.json: {e}"));
                continue;
            }
        };
        f.check(format!("sha256:{}", sha256_bytes(&cfg_bytes)) == want_cfg, || {
            format!("{name}: config is not {want_cfg}")
        });
        let cfg: Value = serde_json::from_slice(&cfg_bytes).unwrap();
        let ids = cfg["rootfs"]["diff_ids"].clone();
        match &diff_ids {
            None => diff_ids = Some(ids.clone()),
            Some(d) => f.check(*d == ids, || format!("{name}: diff_ids {ids} differ from oci/'s {d}")),
        }
        let man = m.json(&format!("{dir}/manifest.json"));
        let layers = man["layers"].as_array().cloned().unwrap_or_default();
        f.check(layers.len() == 3, || format!("{name}: {} layers", layers.len()));
        for (i, l) in layers.iter().enumerate() {
            let d = l["digest"].as_str().unwrap();
            let blob = m.path(&format!("blobs/sha256/{}", digest_hex(d)));
            let got = format!("sha256:{}", sha256_uncompressed(&blob));
            f.check(ids[i] == got, || {
                format!("{name}: layer {i} ({d}) uncompresses to {got}, diff_id is {}", ids[i])
            });
        }
    }
    f.assert_none("the same image read from every format");
}

// ------------------------------------------------------------------------------------------------
// Real clients accept the mount
// ------------------------------------------------------------------------------------------------

/// Checks the rootfs that umoci unpacked from oci:v2 (or any copy of it).
fn check_known_rootfs(rootfs: &Path, what: &str) {
    let r = |p: &str| rootfs.join(p);
    let hello = fs::read_to_string(r("etc/hello.txt")).unwrap_or_else(|e| panic!("{what}: etc/hello.txt: {e}"));
    assert_eq!(hello, format!("{}\n", expect("HELLO_TEXT")), "{what}: etc/hello.txt");
    let random = fs::read(r("data/random.bin")).unwrap_or_else(|e| panic!("{what}: data/random.bin: {e}"));
    assert!(
        random == random_bytes(),
        "{what}: data/random.bin does not hold the seeded bytes"
    );
    assert_eq!(sha256_bytes(&random), expect("RANDOM_SHA256"));
    assert_eq!(
        sha256_file(&r("bin/busybox")),
        expect("BUSYBOX_SHA256"),
        "{what}: bin/busybox"
    );
    assert_eq!(
        fs::read_link(r("bin/sh")).unwrap().to_str(),
        Some("busybox"),
        "{what}: bin/sh"
    );
    assert_eq!(
        fs::read_link(r("etc/hello.link")).unwrap().to_str(),
        Some("hello.txt"),
        "{what}: etc/hello.link"
    );
    assert!(
        r("empty").is_dir() && ls(&r("empty")).is_empty(),
        "{what}: empty/ must be an empty directory"
    );
    let suid = fs::symlink_metadata(r("bin/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755, "{what}: bin/suid mode");
    assert_eq!(
        fs::read_to_string(r("etc/layer1.txt")).unwrap(),
        "added by layer 1\n",
        "{what}"
    );
    assert_eq!(
        fs::read_to_string(r("etc/layer2.txt")).unwrap(),
        "added by layer 2\n",
        "{what}"
    );
    assert!(
        !r("tmp/to-delete.txt").exists(),
        "{what}: tmp/to-delete.txt was deleted by layer 2 (whiteout)"
    );
    assert!(r("tmp").is_dir(), "{what}: tmp/");
}

/// skopeo inspect + skopeo copy + umoci unpack of oci:MNT:REF. Returns the tree dump of the
/// unpacked rootfs when umoci is asked to unpack.
fn real_clients(fixture: &Path, oci_ref: &str, expect_digest: Option<&str>, unpack: bool) -> Option<Vec<String>> {
    require(&["skopeo", "umoci"]);
    let m = Mount::new(fixture);
    let mnt = p(&m.dir);
    let o = skopeo(&["inspect", &format!("oci:{mnt}:{oci_ref}")]);
    let info: Value = serde_json::from_slice(&o.stdout).expect("skopeo inspect JSON");
    if let Some(d) = expect_digest {
        assert_eq!(info["Digest"], d, "skopeo inspect oci:MNT:{oci_ref}");
    }
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{mnt}:{oci_ref}")]);
    let idx = m.json("index.json");
    let desc = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == oci_ref)
        .unwrap_or_else(|| panic!("index.json has no ref {oci_ref}"))
        .clone();
    assert_eq!(
        format!("sha256:{}", sha256_bytes(&raw.stdout)),
        desc["digest"].as_str().unwrap(),
        "skopeo inspect --raw"
    );

    let tmp = tempdir();
    let out = tmp.path().join("copy.tar");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{mnt}:{oci_ref}"),
        &format!("oci-archive:{}:copy", p(&out)),
    ]);
    let copied = skopeo(&["inspect", "--raw", &format!("oci-archive:{}:copy", p(&out))]);
    let orig: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let copy: Value = serde_json::from_slice(&copied.stdout).unwrap();
    let all_compressed = orig["layers"]
        .as_array()
        .map(|ls| {
            ls.iter().all(|l| {
                l["mediaType"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("+gzip") || m.ends_with("+zstd"))
            })
        })
        .unwrap_or(true);
    if all_compressed {
        // nothing to convert: skopeo copies the manifest as it is
        assert!(
            copied.stdout == raw.stdout,
            "skopeo copy changed the manifest of oci:MNT:{oci_ref}"
        );
    } else {
        // skopeo compresses uncompressed layers on the way: the config stays the same
        assert_eq!(
            copy["config"]["digest"], orig["config"]["digest"],
            "skopeo copy kept the config"
        );
        assert_eq!(
            copy["layers"].as_array().map(Vec::len),
            orig["layers"].as_array().map(Vec::len)
        );
    }

    if !unpack {
        return None;
    }
    let bundle = tmp.path().join("bundle");
    let o = run(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{mnt}:{oci_ref}"))
            .arg(&bundle),
        CMD_TIMEOUT,
    );
    assert!(
        o.ok(),
        "umoci unpack --image MNT:{oci_ref} failed on the read-only mount: {}\n{}{}",
        o.describe(),
        o.stdout_str(),
        o.stderr_str()
    );
    Some(tree_dump(&bundle.join("rootfs")))
}

/// The rootfs umoci unpacks straight from the fixture layout (the reference).
pub fn reference_rootfs() -> &'static Vec<String> {
    static R: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        require(&["umoci"]);
        let tmp = tempdir();
        let bundle = tmp.path().join("b");
        run(
            Command::new("umoci")
                .arg("unpack")
                .arg("--image")
                .arg(format!("{}:v2", p(&fx("oci"))))
                .arg(&bundle),
            CMD_TIMEOUT,
        )
        .assert_ok();
        check_known_rootfs(&bundle.join("rootfs"), "umoci unpack of the fixture itself");
        tree_dump(&bundle.join("rootfs"))
    })
}

fn clients_rootfs_test(fixture: &Path, oci_ref: &str, expect_digest: Option<&str>) {
    let dump = real_clients(fixture, oci_ref, expect_digest, true).unwrap();
    let want = reference_rootfs();
    assert!(
        &dump == want,
        "rootfs unpacked by umoci from a mount of {} differs from the one of oci/:\n{}",
        fixture.display(),
        dump_diff(want, &dump)
    );
}

#[test]
fn clients_oci_layout() {
    clients_rootfs_test(&fx("oci"), "v2", Some(expect("OCI_V2_MANIFEST")));
    // and the known files, checked on a bundle unpacked from the mount itself
    let m = Mount::new(fx("oci"));
    let tmp = tempdir();
    let bundle = tmp.path().join("b");
    run(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:v1", p(&m.dir)))
            .arg(&bundle),
        CMD_TIMEOUT,
    )
    .assert_ok();
    assert!(
        bundle.join("rootfs/tmp/to-delete.txt").is_file(),
        "v1 still has tmp/to-delete.txt"
    );
    let bundle2 = tmp.path().join("b2");
    run(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:latest", p(&m.dir)))
            .arg(&bundle2),
        CMD_TIMEOUT,
    )
    .assert_ok();
    check_known_rootfs(&bundle2.join("rootfs"), "umoci unpack of MNT:latest");
}

#[test]
fn clients_oci_archive_gzip() {
    clients_rootfs_test(&fx("oci-archive.tar.gz"), "v2", Some(expect("OCI_V2_MANIFEST")));
}

#[test]
fn clients_docker_archive() {
    clients_rootfs_test(&fx("docker-archive.tar"), "docker.io/imgfs/test:v2", None);
}

#[test]
fn clients_docker_save_legacy() {
    clients_rootfs_test(&fx_required("docker-save-legacy.tar"), "imgfs/test:v2", None);
}

#[test]
fn clients_containerd_export() {
    clients_rootfs_test(
        &fx_required("containerd-export.tar"),
        "v2",
        Some(expect("OCI_V2_MANIFEST")),
    );
}

#[test]
fn clients_dir() {
    clients_rootfs_test(&fx("dir"), "latest", Some(expect("OCI_V2_MANIFEST")));
}

#[test]
fn clients_oci_zstd() {
    // umoci 0.4.7 cannot read zstd layers: skopeo only
    real_clients(&fx("oci-zstd"), "v2", None, false);
}

#[test]
fn clients_v1_legacy() {
    require(&["umoci"]);
    real_clients(&fx("v1-legacy.tar"), "legacy:1", None, false);
    let m = Mount::new(fx("v1-legacy.tar"));
    let tmp = tempdir();
    let bundle = tmp.path().join("b");
    run(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:legacy:1", p(&m.dir)))
            .arg(&bundle),
        CMD_TIMEOUT,
    )
    .assert_ok();
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/legacy1.txt")).unwrap(),
        "legacy layer one\n"
    );
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/legacy2.txt")).unwrap(),
        "legacy layer two\n"
    );
}

#[test]
fn clients_multi_platform() {
    require(&["skopeo"]);
    let m = Mount::new(fx("multi"));
    let mnt = p(&m.dir);
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{mnt}:multi")]);
    assert_eq!(
        raw.stdout,
        m.read("images/multi/index.json"),
        "skopeo inspect --raw gives the index"
    );
    for arch in ["amd64", "arm64"] {
        let o = skopeo(&["--override-arch", arch, "inspect", &format!("oci:{mnt}:multi")]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["Architecture"], arch,
            "skopeo --override-arch {arch} inspect oci:MNT:multi"
        );
        // skopeo reports the digest of what the reference names: the index
        let want = sha256_file(&m.path("images/multi/index.json"));
        assert_eq!(v["Digest"], format!("sha256:{want}"));
        // the platform's own manifest, through the mount
        let per = skopeo(&[
            "--override-arch",
            arch,
            "inspect",
            "--config",
            &format!("oci:{mnt}:multi"),
        ]);
        let cfg = m.read(&format!("images/multi/linux-{arch}/config.json"));
        let a: Value = serde_json::from_slice(&per.stdout).unwrap();
        let b: Value = serde_json::from_slice(&cfg).unwrap();
        assert_eq!(
            a, b,
            "skopeo inspect --config for {arch} is images/multi/linux-{arch}/config.json"
        );
    }
    let tmp = tempdir();
    let out = tmp.path().join("all");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        &format!("oci:{mnt}:multi"),
        &format!("oci:{}:multi", p(&out)),
    ]);
    let copied = skopeo(&["inspect", "--raw", &format!("oci:{}:multi", p(&out))]);
    assert_eq!(copied.stdout, raw.stdout);
}

// ------------------------------------------------------------------------------------------------
// The CLI without FUSE
// ------------------------------------------------------------------------------------------------

#[test]
fn cli_inspect() {
    for (fixture, refs, arches) in [
        ("oci", &["v1", "v2", "latest"][..], &["amd64"][..]),
        ("multi", &["multi"][..], &["amd64", "arm64"][..]),
        ("docker-archive.tar", &["docker.io/imgfs/test:v2"][..], &["amd64"][..]),
    ] {
        let src = fx(fixture);
        let o = run_imgfs(["inspect".as_ref(), src.as_os_str()], MOUNT_TIMEOUT);
        assert_no_panic(&o);
        let o = o.assert_ok();
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("imgfs inspect {fixture}: stdout is not JSON ({e}):\n{}", o.stdout_str()));
        let text = v.to_string();
        for r in refs {
            assert!(
                text.contains(&format!("\"{r}\"")),
                "imgfs inspect {fixture}: no ref {r} in {text}"
            );
        }
        for a in arches {
            assert!(text.contains(a), "imgfs inspect {fixture}: no platform {a} in {text}");
        }
        for key in ["refs", "layers"] {
            assert!(
                text.contains(&format!("\"{key}\"")),
                "imgfs inspect {fixture}: no \"{key}\" key in {text}"
            );
        }
        assert!(
            text.contains("platform"),
            "imgfs inspect {fixture}: no platform key in {text}"
        );
        if fixture != "multi" {
            // every layer digest of v2 is listed
            let m = Mount::new(&src);
            let idx = m.json("index.json");
            let d = idx["manifests"][0]["digest"].as_str().unwrap();
            let man: Value = serde_json::from_slice(&m.read(&format!("blobs/sha256/{}", digest_hex(d)))).unwrap();
            for l in man["layers"].as_array().unwrap() {
                let ld = l["digest"].as_str().unwrap();
                assert!(text.contains(ld), "imgfs inspect {fixture}: layer {ld} not listed");
            }
        }
    }
}

#[test]
fn cli_ls() {
    for (fixture, want) in [
        ("oci", vec!["latest", "v1", "v2"]),
        ("multi", vec!["multi"]),
        ("docker-archive.tar", vec!["imgfs"]),
        ("v1-legacy.tar", vec!["legacy:1"]),
    ] {
        let src = fx(fixture);
        let o = run_imgfs(["ls".as_ref(), src.as_os_str(), "images".as_ref()], MOUNT_TIMEOUT);
        assert_no_panic(&o);
        let o = o.assert_ok();
        assert_eq!(ls_names(&o.stdout_str()), set(&want), "imgfs ls {fixture} images");
    }
    // and the top level
    let o = run_imgfs(["ls".as_ref(), fx("oci").as_os_str()], MOUNT_TIMEOUT).assert_ok();
    let mut want = set(&BASE_TOP);
    want.insert("manifest.json".into());
    assert_eq!(ls_names(&o.stdout_str()), want, "imgfs ls oci");
}

/// Names printed by `imgfs ls`, one per line; a trailing `/` marking a directory is allowed.
fn ls_names(out: &str) -> BTreeSet<String> {
    out.lines()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn cli_cat() {
    for fixture in [
        "oci",
        "oci-archive.tar.gz",
        "docker-archive.tar",
        "v1-legacy.tar",
        "dir",
    ] {
        let src = fx(fixture);
        let m = Mount::new(&src);
        let mut paths = vec!["index.json".to_owned(), "oci-layout".to_owned()];
        for n in m.ls("blobs/sha256") {
            paths.push(format!("blobs/sha256/{n}"));
        }
        for rel in paths {
            let o = run_imgfs(["cat".as_ref(), src.as_os_str(), rel.as_ref()], MOUNT_TIMEOUT);
            assert_no_panic(&o);
            let o = o.assert_ok();
            assert!(
                o.stdout == m.read(&rel),
                "imgfs cat {fixture} {rel} differs from the mount's bytes"
            );
        }
        if fixture == "oci" {
            let own = fs::read(src.join("index.json")).unwrap();
            let o = run_imgfs(["cat".as_ref(), src.as_os_str(), "index.json".as_ref()], MOUNT_TIMEOUT).assert_ok();
            assert_eq!(o.stdout, own, "imgfs cat oci index.json is the source's bytes");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Real archives from other projects (shared/fixtures)
// ------------------------------------------------------------------------------------------------

/// Complete images among the shared fixtures (every blob present and valid, per
/// IMAGE-STRUCTURE.json), with the kind of source each is.
const REAL_FIXTURES: &[(&str, Kind)] = &[
    ("containers-image/docker-archive/almostempty.tar", Kind::Docker),
    ("google-go-containerregistry/tarball/test_image_1.tar", Kind::Docker),
    ("google-go-containerregistry/tarball/test_image_2.tar", Kind::Docker),
    ("google-go-containerregistry/tarball/test_bundle.tar", Kind::Docker),
    ("google-go-containerregistry/tarball/test_link.tar", Kind::Docker),
    (
        "google-go-containerregistry/tarball/test_load_manifest.tar",
        Kind::Docker,
    ),
    ("google-go-containerregistry/tarball/no_manifest.tar", Kind::DockerV1),
    (
        "google-go-containerregistry/tarball/hello-world-v25.tar",
        Kind::DockerOci,
    ),
    ("google-go-containerregistry/mutate/overwritten_file.tar", Kind::Docker),
    ("google-go-containerregistry/mutate/source_image.tar", Kind::Docker),
    (
        "google-go-containerregistry/mutate/source_image_with_empty_layer_history.tar",
        Kind::Docker,
    ),
    ("google-go-containerregistry/mutate/whiteout_dir.tar", Kind::Docker),
    ("google-go-containerregistry/mutate/whiteout_image.tar", Kind::Docker),
    ("wagoodman-dive/test-docker-image.tar", Kind::Docker),
    ("wagoodman-dive/test-kaniko-image.tar", Kind::Docker),
    ("wagoodman-dive/test-oci-gzip-image.tar", Kind::Oci),
    ("wagoodman-dive/test-oci-uncompressed-image.tar", Kind::Oci),
    ("wagoodman-dive/test-oci-zstd-image.tar", Kind::Oci),
    ("wagoodman-dive/test-oci-estargz-image.tar", Kind::Oci),
    (
        "containers-image/oci-layout/delete_image_two_identical_references",
        Kind::Oci,
    ),
    ("google-go-containerregistry/layout/test_gc_index", Kind::Oci),
    ("google-go-containerregistry/layout/test_index", Kind::Oci),
    ("google-go-containerregistry/layout/test_index_media_type", Kind::Oci),
    ("google-go-containerregistry/layout/test_index_one_image", Kind::Oci),
    ("regclient-regclient/testrepo", Kind::Oci),
    ("regclient-regclient/external", Kind::Oci),
];

fn real_fixture_check(filter: impl Fn(&str) -> bool) {
    let root = shared_fixtures();
    let mut f = Failures::default();
    let mut n = 0;
    for (rel, kind) in REAL_FIXTURES.iter().filter(|(r, _)| filter(r)) {
        let path = root.join(rel);
        assert!(path.exists(), "shared fixture {rel} is missing from {}", root.display());
        n += 1;
        match Mount::try_new(&path) {
            Ok(m) => check_mount(&m, &path, *kind, &mut f),
            Err(o) => f.push(format!(
                "{rel}: mount failed: {} {}",
                o.describe(),
                o.stderr_str().trim()
            )),
        }
    }
    assert!(n > 0);
    f.assert_none("real fixtures");
}

#[test]
fn real_almostempty_docker_archive() {
    real_fixture_check(|r| r.ends_with("almostempty.tar"));
}

#[test]
fn real_docker_archives() {
    real_fixture_check(|r| r.ends_with(".tar") && !r.contains("test-oci-") && !r.ends_with("almostempty.tar"));
}

#[test]
fn real_oci_archives() {
    real_fixture_check(|r| r.contains("test-oci-"));
}

#[test]
fn real_oci_layout_dirs() {
    real_fixture_check(|r| !r.ends_with(".tar"));
}
