//! OCI image layouts (image-spec 1.0/1.1): `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
//! Docker >= 25 and `ctr export` write this plus a `manifest.json`, which is shown as it is.
//! Layouts from before image-spec 1.0 kept one descriptor per ref in `refs/<name>`.

use super::files::Files;
use super::{parse_json, read_doc, Format, RawLayout, Result, OCI_LAYOUT_BYTES};
use crate::oci::{synthesize_index, IndexEntry};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Reads an OCI layout, keeping `index.json` and every blob as stored.
pub fn read(files: Files) -> Result<RawLayout> {
    let index_json = read_doc(&files, "index.json")?;
    let oci_layout = layout_bytes(&files)?;
    let docker = files.is_file("manifest.json");
    if docker && lists_no_manifest(&index_json) {
        // Some writers (go-containerregistry's docker tarballs) leave `"manifests": null` and
        // describe the images only in docker's manifest.json: read that instead.
        let mut raw = super::docker_archive::read(files)?;
        raw.format = Format::DockerOciArchive;
        return Ok(raw);
    }
    let mut extras = Vec::new();
    if docker {
        for name in ["manifest.json", "repositories"] {
            if let Some(blob) = files.open(name)? {
                extras.push((name.to_owned(), blob));
            }
        }
    }
    Ok(RawLayout {
        format: if docker { Format::DockerOciArchive } else { Format::OciLayout },
        path: files.display().to_path_buf(),
        mtime: SystemTime::UNIX_EPOCH,
        oci_layout,
        index_json,
        extras,
        known_blobs: BTreeMap::new(),
        files,
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
        entries.push(IndexEntry::from_descriptor(desc, files.display(), &file, Some(&name))?);
    }
    let mut raw = read_with_index(files, synthesize_index(&entries))?;
    raw.format = Format::OciLayoutPre1;
    Ok(raw)
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
        files,
        selector: None,
    })
}

/// True when index.json parses but lists no manifest (missing, null or empty `manifests`).
fn lists_no_manifest(index_json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(index_json)
        .map(|v| v.get("manifests").and_then(|m| m.as_array()).is_none_or(|m| m.is_empty()))
        .unwrap_or(false)
}

fn layout_bytes(files: &Files) -> Result<Vec<u8>> {
    if files.is_file("oci-layout") {
        read_doc(files, "oci-layout")
    } else {
        Ok(OCI_LAYOUT_BYTES.to_vec())
    }
}

