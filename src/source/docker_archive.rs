//! `docker save` archives of Docker <= 24 (`manifest.json` + `<id>/layer.tar` + `<config>.json`)
//! and the legacy v1 format (`repositories` + per-layer `<id>/json`, `<id>/layer.tar`).
//!
//! They carry no OCI manifests, so imgfs synthesizes them (see `crate::oci::synthesize_*`):
//! deterministically, so the same archive gives the same digests on every mount. Layer digests
//! are the hash of the member's bytes. For an uncompressed Docker layer that is its diff_id,
//! known from the config without reading the layer; other layers (gzip layers written by
//! nixpkgs, every v1 layer) are hashed while opening, once per file: the digest is cached
//! under the file's identity.

use super::files::Files;
use super::outer::{sniff, Compression};
use super::SourceFiles;
use super::{parse_json, read_doc, Format, RawLayout, Result, SourceError, OCI_LAYOUT_BYTES};
use crate::blob::ReadAt;
use crate::cache::Cache;
use crate::digest::{Algorithm, Digest};
use crate::oci::{self, Descriptor, MT_OCI_CONFIG, MT_OCI_MANIFEST};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

/// A v1 parent chain longer than this is treated as a loop.
const MAX_V1_CHAIN: usize = 1000;

/// One entry of docker save's manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SaveEntry {
    pub(super) config: String,
    #[serde(default)]
    pub(super) repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The entries of docker save's manifest.json.
pub(super) fn save_entries(files: &Files) -> Result<Vec<SaveEntry>> {
    let bytes = read_doc(files, "manifest.json")?;
    parse_json(&bytes, files.display(), "manifest.json")
}

/// Builds the OCI view of a docker-archive.
pub fn read(files: Files, cache: &Cache) -> Result<RawLayout> {
    let mut extras = Vec::new();
    for name in ["manifest.json", "repositories"] {
        if let Some(blob) = files.open(name)? {
            extras.push((name.to_owned(), blob));
        }
    }
    let mut known = BTreeMap::new();
    let (format, entries) = if files.is_file("manifest.json") {
        (Format::DockerArchive, read_save_manifest(&files, &mut known, cache)?)
    } else {
        (Format::DockerV1, read_v1(&files, &mut known, cache)?)
    };
    Ok(RawLayout {
        format,
        path: files.display().to_path_buf(),
        mtime: SystemTime::UNIX_EPOCH,
        oci_layout: OCI_LAYOUT_BYTES.to_vec(),
        index_json: oci::synthesize_index(&entries),
        extras,
        known_blobs: known,
        files: SourceFiles::Local(files),
        selector: None,
    })
}

type Known = BTreeMap<Digest, Arc<dyn ReadAt>>;

fn read_save_manifest(files: &Files, known: &mut Known, cache: &Cache) -> Result<Vec<Descriptor>> {
    let saved = save_entries(files)?;
    let mut index = Vec::new();
    for entry in &saved {
        let config_bytes = read_doc(files, &entry.config)?;
        let config: oci::ConfigSummary = parse_json(&config_bytes, files.display(), &entry.config)?;
        let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        let config_desc = add_doc(known, MT_OCI_CONFIG, config_bytes);
        let mut layers = Vec::new();
        for (i, path) in entry.layers.iter().enumerate() {
            layers.push(add_layer(
                files,
                known,
                cache,
                path,
                diff_ids.get(i).map(String::as_str),
            )?);
        }
        let manifest = oci::synthesize_manifest(&config_desc, &layers);
        let manifest_desc = add_doc(known, MT_OCI_MANIFEST, manifest);
        let tags = entry.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            index.push(manifest_desc);
        } else {
            for tag in tags {
                index.push(manifest_desc.clone().with_ref_name(Some(&tag)));
            }
        }
    }
    Ok(index)
}

/// Stores a synthesized or in-memory document and returns its descriptor.
fn add_doc(known: &mut Known, media_type: &str, bytes: Vec<u8>) -> Descriptor {
    let digest = Digest::sha256_of(&bytes);
    let desc = Descriptor::new(media_type, digest.clone(), bytes.len() as u64);
    known.insert(digest, Arc::new(bytes));
    desc
}

/// Describes a layer member: its compression by magic bytes, its digest from its path
/// (`blobs/sha256/<hex>`), from the diff_id when it is uncompressed, or by hashing it.
fn add_layer(files: &Files, known: &mut Known, cache: &Cache, path: &str, diff_id: Option<&str>) -> Result<Descriptor> {
    let blob = files.open(path)?.ok_or_else(|| SourceError::Invalid {
        path: files.display().to_path_buf(),
        file: "manifest.json".into(),
        reason: format!("layer {path} is missing from the archive"),
    })?;
    let mut head = [0u8; 4];
    let n = blob
        .read_at(&mut head, 0)
        .map_err(|e| SourceError::io(files.display(), path, e))?;
    let compression = sniff(&head[..n]);
    let media_type = match compression {
        Compression::None => oci::MT_OCI_LAYER_TAR,
        Compression::Gzip => oci::MT_OCI_LAYER_GZIP,
        Compression::Zstd => oci::MT_OCI_LAYER_ZSTD,
    };
    let digest = match (digest_from_blob_path(path), diff_id) {
        (Some(d), _) => d,
        (None, Some(id)) if compression == Compression::None => {
            id.parse().map_err(|source| SourceError::BadDigest {
                path: files.display().to_path_buf(),
                file: "config rootfs.diff_ids".into(),
                source,
            })?
        }
        _ => name_by_hash(blob.as_ref(), files, cache, path)?,
    };
    let desc = Descriptor::new(media_type, digest.clone(), blob.len());
    known.insert(digest, blob);
    Ok(desc)
}

/// `blobs/sha256/<hex>` -> the digest it names.
pub(super) fn digest_from_blob_path(path: &str) -> Option<Digest> {
    let rest = super::files::normalize(path)?;
    let mut parts = rest.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("blobs"), Some(alg), Some(hex), None) => Digest::from_parts(alg, hex).ok(),
        _ => None,
    }
}

/// The digest of a member no name or config gives, from the cache when this very file was
/// hashed before (`Files::identity`: path, size, times, inode), else by hashing it (and caching
/// that). A stale entry cannot serve wrong bytes: every layer's digest is checked again by its
/// index pass, and `blobs/` reads verify theirs.
fn name_by_hash(blob: &dyn ReadAt, files: &Files, cache: &Cache, path: &str) -> Result<Digest> {
    let key = files.identity(path);
    let cached = key
        .as_deref()
        .and_then(|k| cache.load("digest", k))
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<Digest>().ok());
    if let Some(d) = cached {
        return Ok(d);
    }
    let digest = hash_blob(blob, files, path)?;
    if let Some(k) = key {
        cache.store("digest", &k, digest.to_string().as_bytes());
    }
    Ok(digest)
}

fn hash_blob(blob: &dyn ReadAt, files: &Files, path: &str) -> Result<Digest> {
    log::info!("{}: hashing {path} to name it", files.display().display());
    let progress = crate::progress::opening().task(path, blob.len());
    progress.set(crate::progress::LayerState::Indexing);
    let counted = progress.counting(blob);
    let mut hasher = crate::digest::Hasher::new(Algorithm::Sha256);
    let mut reader = crate::blob::Cursor::new(&counted, 0);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            progress.fail(e.to_string(), false);
            SourceError::io(files.display(), path, e)
        })?;
        if n == 0 {
            progress.set(crate::progress::LayerState::Ready);
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

/// `<id>/json` of the v1 format (only what imgfs carries over).
#[derive(Debug, Deserialize)]
struct V1Json {
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// The v1 format: `repositories` maps repo -> tag -> top layer id; each layer's json names its
/// parent. A config is synthesized from the top layer's json with diff_ids of the layers.
fn read_v1(files: &Files, known: &mut Known, cache: &Cache) -> Result<Vec<Descriptor>> {
    let bytes = read_doc(files, "repositories")?;
    let repos: BTreeMap<String, BTreeMap<String, String>> = parse_json(&bytes, files.display(), "repositories")?;
    let mut index = Vec::new();
    let mut built: BTreeMap<String, Descriptor> = BTreeMap::new();
    for (repo, tags) in &repos {
        for (tag, top) in tags {
            let desc = match built.get(top) {
                Some(d) => d.clone(),
                None => {
                    let d = v1_image(files, known, cache, top)?;
                    built.insert(top.clone(), d.clone());
                    d
                }
            };
            index.push(desc.with_ref_name(Some(&format!("{repo}:{tag}"))));
        }
    }
    Ok(index)
}

fn v1_image(files: &Files, known: &mut Known, cache: &Cache, top: &str) -> Result<Descriptor> {
    let chain = v1_chain(files, top)?;
    let top_json = &chain[chain.len() - 1].1;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (id, _) in &chain {
        let d = add_layer(files, known, cache, &format!("{id}/layer.tar"), None)?;
        diff_ids.push(d.digest.to_string());
        layers.push(d);
    }
    let history: Vec<serde_json::Value> = chain
        .iter()
        .map(|(_, j)| serde_json::json!({ "created": j.created }))
        .collect();
    let config = serde_json::json!({
        "architecture": top_json.architecture.as_deref().unwrap_or("amd64"),
        "os": top_json.os.as_deref().unwrap_or("linux"),
        "created": top_json.created,
        "config": top_json.config.clone().unwrap_or_else(|| serde_json::json!({})),
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    // serde_json's default map is a BTreeMap: keys are sorted, so the bytes are deterministic.
    let config_desc = add_doc(known, MT_OCI_CONFIG, serde_json::to_vec(&config).unwrap_or_default());
    let manifest = oci::synthesize_manifest(&config_desc, &layers);
    Ok(add_doc(known, MT_OCI_MANIFEST, manifest))
}

/// The layers of a v1 image, bottom first, following `parent` links from `top`.
fn v1_chain(files: &Files, top: &str) -> Result<Vec<(String, V1Json)>> {
    let mut chain = Vec::new();
    let mut next = Some(top.to_owned());
    while let Some(id) = next {
        if chain.len() >= MAX_V1_CHAIN || chain.iter().any(|(seen, _)| seen == &id) {
            return Err(SourceError::Invalid {
                path: files.display().to_path_buf(),
                file: format!("{id}/json"),
                reason: "parent chain loops or is too long".into(),
            });
        }
        let file = format!("{id}/json");
        let json: V1Json = parse_json(&read_doc(files, &file)?, files.display(), &file)?;
        next = json.parent.clone().filter(|p| !p.is_empty());
        chain.push((id, json));
    }
    chain.reverse();
    Ok(chain)
}
