//! containers-image's `dir:` transport (`skopeo copy ... dir:D`, `podman save --format
//! docker-dir|oci-dir`, nixpkgs' dockerTools): `manifest.json` is the registry manifest as
//! pulled, `version` names the transport version, and every blob is a file named by its hex
//! digest (older skopeo added `.tar` to layers). A manifest list keeps per-instance manifests
//! in `<hex>.manifest.json`. The manifest's bytes are kept, so its digest is the registry's.

use super::files::Files;
use super::SourceFiles;
use super::{parse_json, read_doc, Format, RawLayout, Result, SourceError, OCI_LAYOUT_BYTES};
use crate::digest::Digest;
use crate::oci::{self, Descriptor, DocKind};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// Reads a `dir:` directory (or a tar of one).
pub fn read(files: Files) -> Result<RawLayout> {
    let manifest = read_doc(&files, "manifest.json")?;
    let doc: serde_json::Value = parse_json(&manifest, files.display(), "manifest.json")?;
    let media_type = match oci::kind_of_document(&doc) {
        DocKind::Schema1 => {
            return Err(SourceError::Unsupported {
                path: files.display().to_path_buf(),
                reason: "manifest.json is a Docker schema1 manifest, which imgfs does not read \
                         (convert it: skopeo copy --format v2s2)"
                    .into(),
            })
        }
        DocKind::Index => doc_media_type(&doc, oci::MT_OCI_INDEX),
        DocKind::Manifest => doc_media_type(&doc, guess_manifest_type(&doc)),
        DocKind::Other => {
            return Err(SourceError::NotAnImage {
                path: files.display().to_path_buf(),
                reason: "manifest.json is neither an image manifest nor an index".into(),
            })
        }
    };
    let mut known: BTreeMap<Digest, Arc<dyn crate::blob::ReadAt>> = BTreeMap::new();
    for name in files.list("") {
        let hex = name
            .strip_suffix(".manifest.json")
            .or_else(|| name.strip_suffix(".tar"))
            .unwrap_or(&name);
        if let (Ok(d), Some(blob)) = (Digest::from_parts("sha256", hex), files.open(&name)?) {
            known.insert(d, blob);
        }
    }
    let digest = Digest::sha256_of(&manifest);
    let entry = Descriptor::new(&media_type, digest.clone(), manifest.len() as u64).with_ref_name(Some("latest"));
    known.insert(digest, Arc::new(manifest));
    Ok(RawLayout {
        format: Format::Dir,
        path: files.display().to_path_buf(),
        mtime: SystemTime::UNIX_EPOCH,
        oci_layout: OCI_LAYOUT_BYTES.to_vec(),
        index_json: oci::synthesize_index(&[entry]),
        extras: Vec::new(),
        known_blobs: known,
        files: SourceFiles::Local(files),
        selector: None,
    })
}

fn doc_media_type(doc: &serde_json::Value, fallback: &str) -> String {
    doc.get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(fallback)
        .to_owned()
}

/// A manifest without mediaType is OCI when its config is.
fn guess_manifest_type(doc: &serde_json::Value) -> &'static str {
    let config_mt = doc.pointer("/config/mediaType").and_then(|m| m.as_str()).unwrap_or("");
    if config_mt.starts_with("application/vnd.docker.") {
        oci::MT_DOCKER_MANIFEST
    } else {
        oci::MT_OCI_MANIFEST
    }
}
