//! OCI image layouts (image-spec 1.0/1.1): `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
//! Docker >= 25 and `ctr export` write this plus a `manifest.json`, which is shown as it is.
//! Layouts from before image-spec 1.0 kept one descriptor per ref in `refs/<name>`.

use super::files::Files;
use super::SourceFiles;
use super::{parse_json, read_doc, Format, RawLayout, Result, SourceError, OCI_LAYOUT_BYTES};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::oci::{synthesize_index, Descriptor, DocKind, IndexEntry, MT_OCI_MANIFEST, REF_NAME};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// Reads an OCI layout, keeping `index.json` and every blob as stored.
pub fn read(files: Files, cache: &Cache) -> Result<RawLayout> {
    let index_json = read_doc(&files, "index.json")?;
    let oci_layout = layout_bytes(&files)?;
    let docker = files.is_file("manifest.json");
    if docker && lists_no_manifest(&index_json) {
        // Some writers (go-containerregistry's docker tarballs) leave `"manifests": null` and
        // describe the images only in docker's manifest.json. Index the layout's own manifests
        // when they can be found, else read it as a docker archive.
        let Some(entries) = manifests_for_save_entries(&files)? else {
            let mut raw = super::docker_archive::read(files, cache)?;
            raw.format = Format::DockerOciArchive;
            return Ok(raw);
        };
        let extras = docker_extras(&files)?;
        let mut raw = read_with_index(files, synthesize_index(&entries))?;
        raw.format = Format::DockerOciArchive;
        raw.extras = extras;
        return Ok(raw);
    }
    let extras = if docker { docker_extras(&files)? } else { Vec::new() };
    let index_json = match docker {
        true => named_by_repo_tags(&files, &index_json)?.unwrap_or(index_json),
        false => index_json,
    };
    Ok(RawLayout {
        format: if docker {
            Format::DockerOciArchive
        } else {
            Format::OciLayout
        },
        path: files.display().to_path_buf(),
        mtime: SystemTime::UNIX_EPOCH,
        oci_layout,
        index_json,
        extras,
        known_blobs: BTreeMap::new(),
        files: SourceFiles::Local(files),
        selector: None,
    })
}

/// Reads a pre-1.0 layout: each `refs/<name>` holds a descriptor; they become a synthesized index.
pub fn read_pre1(files: Files) -> Result<RawLayout> {
    let mut entries = Vec::new();
    for name in files.list("refs") {
        let file = format!("refs/{name}");
        let bytes = read_doc(&files, &file)?;
        let desc: serde_json::Value = parse_json(&bytes, files.display(), &file)?;
        entries.push(descriptor_of(desc, files.display(), &file, &name)?);
    }
    let mut raw = read_with_index(files, synthesize_index(&entries))?;
    raw.format = Format::OciLayoutPre1;
    Ok(raw)
}

/// Reads a loose descriptor (a pre-1.0 `refs/` file) as an index entry named `ref_name`.
fn descriptor_of(v: serde_json::Value, path: &Path, file: &str, ref_name: &str) -> Result<IndexEntry> {
    let d = Descriptor::from_json(&v).map_err(|e| SourceError::descriptor(e, path, file))?;
    // Only what the entry of a synthesized index.json says: type, digest, size, ref name.
    let mt = if d.media_type.is_empty() {
        MT_OCI_MANIFEST
    } else {
        &d.media_type
    };
    Ok(IndexEntry::new(mt, d.digest, d.size).with_ref_name(Some(ref_name)))
}

fn read_with_index(files: Files, index_json: Vec<u8>) -> Result<RawLayout> {
    let oci_layout = layout_bytes(&files)?;
    Ok(RawLayout {
        format: Format::OciLayout,
        path: files.display().to_path_buf(),
        mtime: SystemTime::UNIX_EPOCH,
        oci_layout,
        index_json,
        extras: Vec::new(),
        known_blobs: BTreeMap::new(),
        files: SourceFiles::Local(files),
        selector: None,
    })
}

/// docker's own top-level files, shown as they are.
fn docker_extras(files: &Files) -> Result<Vec<(String, std::sync::Arc<dyn crate::blob::ReadAt>)>> {
    let mut extras = Vec::new();
    for name in ["manifest.json", "repositories"] {
        if let Some(blob) = files.open(name)? {
            extras.push((name.to_owned(), blob));
        }
    }
    Ok(extras)
}

/// Largest blob examined when looking for the layout's own manifest of a manifest.json entry.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// For each manifest.json entry, the layout's own manifest whose config is the entry's
/// `Config` blob, as index entries named by RepoTags; `None` unless every entry has one.
fn manifests_for_save_entries(files: &Files) -> Result<Option<Vec<IndexEntry>>> {
    let saved = super::docker_archive::save_entries(files)?;
    let mut by_config = std::collections::HashMap::new();
    for name in files.list("blobs/sha256") {
        let Ok(digest) = crate::digest::Digest::from_parts("sha256", &name) else {
            continue;
        };
        let Some((doc, len)) = small_json(files, &digest)? else {
            continue;
        };
        if crate::oci::kind_of_document(&doc) != crate::oci::DocKind::Manifest {
            continue;
        }
        if let Some(config) = doc.pointer("/config/digest").and_then(|d| d.as_str()) {
            let mt = doc
                .get("mediaType")
                .and_then(|m| m.as_str())
                .unwrap_or(crate::oci::MT_OCI_MANIFEST);
            by_config.insert(config.to_owned(), IndexEntry::new(mt, digest, len));
        }
    }
    let mut entries = Vec::new();
    for e in &saved {
        let Some(config) = super::docker_archive::digest_from_blob_path(&e.config) else {
            return Ok(None);
        };
        let Some(desc) = by_config.get(&config.to_string()) else {
            return Ok(None);
        };
        let tags = e.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            entries.push(desc.clone());
        }
        for tag in tags {
            entries.push(desc.clone().with_ref_name(Some(&tag)));
        }
    }
    Ok(Some(entries))
}

/// A blob of the layout parsed as JSON, with its size; `None` when it is missing, larger than
/// [`MAX_MANIFEST_BYTES`] or not JSON. Used only to name or find images: `crate::image`
/// verifies every document it walks.
fn small_json(files: &Files, digest: &Digest) -> Result<Option<(Value, u64)>> {
    let Some(blob) = files.open(&format!("blobs/{}/{}", digest.algorithm().name(), digest.hex()))? else {
        return Ok(None);
    };
    if blob.len() > MAX_MANIFEST_BYTES {
        return Ok(None);
    }
    let Ok(bytes) = crate::blob::read_all(blob.as_ref()) else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok().map(|doc| (doc, blob.len())))
}

/// Docker >= 25 archives whose index.json entries carry no ref name while manifest.json tags
/// the same images (RepoTags): those entries are named by their RepoTags, one entry per tag,
/// as docker-archive sources are (docs/layout.md). An entry matches a manifest.json entry
/// through its manifest's config (for an index, its platform manifests' configs). `None` when
/// nothing is renamed; entries no RepoTag names keep their digest name.
fn named_by_repo_tags(files: &Files, index_json: &[u8]) -> Result<Option<Vec<u8>>> {
    let Ok(mut index) = serde_json::from_slice::<Value>(index_json) else {
        return Ok(None);
    };
    let unnamed = |e: &Value| {
        e.get("annotations")
            .and_then(|a| a.get(REF_NAME))
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    };
    let Some(entries) = index.get("manifests").and_then(Value::as_array) else {
        return Ok(None);
    };
    if !entries.iter().any(unnamed) {
        return Ok(None);
    }
    // A manifest.json that does not parse is only shown (as manifest.source.json), as before.
    let Ok(saved) = super::docker_archive::save_entries(files) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    let mut changed = false;
    for e in entries {
        let digest = e.get("digest").and_then(Value::as_str).and_then(|d| d.parse().ok());
        let configs = match (unnamed(e), digest) {
            (true, Some(d)) => configs_of(files, &d, 0)?,
            _ => Vec::new(),
        };
        let mut tags: Vec<&String> = Vec::new();
        for s in &saved {
            let config = super::docker_archive::digest_from_blob_path(&s.config);
            if config.is_some_and(|c| configs.contains(&c)) {
                for t in s.repo_tags.iter().flatten() {
                    if !tags.contains(&t) {
                        tags.push(t);
                    }
                }
            }
        }
        if tags.is_empty() {
            out.push(e.clone());
            continue;
        }
        for t in tags {
            let mut named = e.clone();
            if !named.get("annotations").is_some_and(Value::is_object) {
                named["annotations"] = Value::Object(Default::default());
            }
            named["annotations"][REF_NAME] = Value::String(t.clone());
            out.push(named);
        }
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    index["manifests"] = Value::Array(out);
    Ok(Some(crate::oci::convert::to_vec(&index)))
}

/// The configs an index.json entry leads to: its manifest's, or its index's manifests'.
fn configs_of(files: &Files, digest: &Digest, depth: usize) -> Result<Vec<Digest>> {
    let Some((doc, _)) = small_json(files, digest)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    match crate::oci::kind_of_document(&doc) {
        DocKind::Manifest => out.extend(
            doc.pointer("/config/digest")
                .and_then(Value::as_str)
                .and_then(|d| d.parse().ok()),
        ),
        DocKind::Index if depth == 0 => {
            for child in doc.get("manifests").and_then(Value::as_array).into_iter().flatten() {
                if let Some(d) = child.get("digest").and_then(Value::as_str).and_then(|d| d.parse().ok()) {
                    out.extend(configs_of(files, &d, depth + 1)?);
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// True when index.json parses but lists no manifest (missing, null or empty `manifests`).
fn lists_no_manifest(index_json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(index_json)
        .map(|v| {
            v.get("manifests")
                .and_then(|m| m.as_array())
                .is_none_or(|m| m.is_empty())
        })
        .unwrap_or(false)
}

fn layout_bytes(files: &Files) -> Result<Vec<u8>> {
    if files.is_file("oci-layout") {
        read_doc(files, "oci-layout")
    } else {
        Ok(OCI_LAYOUT_BYTES.to_vec())
    }
}
