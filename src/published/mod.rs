//! Published layer indexes: imgfs's index of each layer of an image, pushed next to the image as
//! an OCI referrer artifact, so that a host that has never seen the image mounts it by fetching
//! the small indexes instead of the layers (a gzip layer has no table of contents: without an
//! index, the whole blob must be downloaded and inflated once before its first file is listed).
//!
//! The artifact (docs/registry.md, "Published indexes"): an OCI image manifest with
//! `artifactType` [`ARTIFACT_TYPE`], the empty config, one blob of type [`MT_LAYER_INDEX`] per
//! layer (annotated with the layer digest [`ANN_LAYER`] and the index format [`ANN_FORMAT`]),
//! and `subject` = the image manifest. Each blob is the layer's cache file byte for byte (the
//! envelope of `crate::cache`: magic, version, CRC-32; then `layer::format`), so a consumer
//! validates it exactly as it validates a cache file and installs it as one.
//!
//! - `push`: the producer, `imgfs index push`;
//! - `install`: the consumer, `--published-index` at mount.
//!
//! Trust (docs/security.md): a published index is trusted as far as whoever may push to the
//! repository; reads are then checked against its chunk digests, not against the layer digest,
//! until the whole layer is read. That is why consuming one is opt-in.

pub mod install;
pub mod push;

use crate::digest::Digest;
use crate::image::{ImageSet, LayerInfo, ManifestInfo};
use std::collections::BTreeMap;

/// `artifactType` of the artifact manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.imgfs.index.v1";
/// Media type of one layer's index blob: an imgfs cache file (`crate::cache` envelope around
/// `layer::format`).
pub const MT_LAYER_INDEX: &str = "application/vnd.imgfs.layer-index.v1";
/// Annotation of an index blob: the digest of the layer it indexes.
pub const ANN_LAYER: &str = "vnd.imgfs.layer.digest";
/// Annotation of the artifact and of each index blob: `layer::format::FORMAT_VERSION`.
pub const ANN_FORMAT: &str = "vnd.imgfs.index.format";
/// The OCI empty descriptor's media type, data and digest (the artifact's config).
pub const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The bytes of the empty config.
pub const EMPTY: &[u8] = b"{}";
/// Largest index blob fetched (an index is about 1% of the uncompressed layer: this is a
/// 20 GiB layer's).
pub const MAX_INDEX_BLOB: u64 = 256 << 20;
/// Largest artifact manifest read.
pub const MAX_ARTIFACT_MANIFEST: u64 = 4 << 20;

/// Why a published index (the artifact, or one layer's index blob) is not used. Logged in one
/// line with the layer or image it concerns; the layer is then indexed from its blob.
// Variant fields are named for what they hold; each variant's message says the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// No referrer of our artifact type.
    #[error("no referrer of type {ARTIFACT_TYPE}")]
    NoReferrer,
    /// Only referrers of other index formats.
    #[error("the published indexes are of format {theirs}; this imgfs reads {ours}")]
    OtherFormat { theirs: String, ours: String },
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The artifact manifest is larger than [`MAX_ARTIFACT_MANIFEST`].
    #[error("its manifest is {0} bytes")]
    ManifestTooLarge(u64),
    /// The artifact manifest's bytes do not hash to its digest.
    #[error("the registry sent a manifest that hashes to {0}")]
    WrongManifest(Digest),
    /// The artifact manifest is not JSON.
    #[error("not JSON ({0})")]
    NotJson(String),
    /// Another artifact type.
    #[error("artifactType is not {ARTIFACT_TYPE}")]
    NotOurType,
    /// Another subject.
    #[error("its subject is not {0}")]
    OtherSubject(Digest),
    /// A descriptor of the artifact is missing a field or has a bad one.
    #[error("{0}")]
    BadDescriptor(&'static str),
    /// An index blob's bytes do not hash to its digest (or are not its size).
    #[error("the registry sent {len} bytes that hash to {actual}")]
    WrongBytes { len: usize, actual: Digest },
    /// Not a cache file of this imgfs's cache version.
    #[error("not an imgfs index file of this version (cache envelope)")]
    Envelope,
    /// The cache file's CRC-32 fails.
    #[error("its checksum (CRC-32) does not match")]
    Checksum,
    /// The index does not decode (format version, structure, chunk digests and their seal).
    #[error(transparent)]
    Format(#[from] crate::layer::format::FormatError),
    /// The index is of another layer.
    #[error("it indexes layer {0}")]
    OtherLayer(Digest),
    /// The index's diff_id is not the config's.
    #[error("its diff_id is {actual}, the config's is {expected}")]
    DiffId { actual: Digest, expected: String },
}

/// The format version written into annotations.
pub fn format_version() -> String {
    crate::layer::format::FORMAT_VERSION.to_string()
}

/// The images of a set that a mount runs: each ref's image (the manifest itself, or the host's
/// in an index), once each; the `@index` refs of registry sources are left out (their image is
/// the ref's own).
pub fn subjects(set: &ImageSet) -> Vec<&ManifestInfo> {
    let mut out: Vec<&ManifestInfo> = Vec::new();
    for (name, node) in &set.refs {
        if name.ends_with("@index") {
            continue;
        }
        if let Some(m) = node.for_host() {
            if !out.iter().any(|o| o.digest == m.digest) {
                out.push(m);
            }
        }
    }
    out
}

/// One index blob of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexBlob {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// The index blobs of an artifact manifest by the layer they index, after checking that it is
/// an imgfs index artifact whose subject is `subject`.
pub fn parse_artifact(bytes: &[u8], subject: &Digest) -> Result<BTreeMap<Digest, IndexBlob>, Refused> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Refused::NotJson(e.to_string()))?;
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    if text(&doc, "artifactType").as_deref() != Some(ARTIFACT_TYPE) {
        return Err(Refused::NotOurType);
    }
    let subject_of = doc.get("subject").and_then(|s| text(s, "digest"));
    if subject_of.as_deref() != Some(subject.to_string().as_str()) {
        return Err(Refused::OtherSubject(subject.clone()));
    }
    let layers = doc
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or(Refused::BadDescriptor("no layers list"))?;
    let mut out = BTreeMap::new();
    for l in layers {
        if text(l, "mediaType").as_deref() != Some(MT_LAYER_INDEX) {
            continue;
        }
        let layer = l
            .get("annotations")
            .and_then(|a| text(a, ANN_LAYER))
            .and_then(|d| d.parse::<Digest>().ok())
            .ok_or(Refused::BadDescriptor(
                "an index blob has no valid vnd.imgfs.layer.digest annotation",
            ))?;
        let digest = text(l, "digest")
            .and_then(|d| d.parse::<Digest>().ok())
            .ok_or(Refused::BadDescriptor("an index blob has a bad digest"))?;
        let size = l
            .get("size")
            .and_then(|s| s.as_u64())
            .ok_or(Refused::BadDescriptor("an index blob has no size"))?;
        out.insert(layer, IndexBlob { digest, size });
    }
    Ok(out)
}

/// The artifact manifest for image `subject` (its manifest's media type, digest and size) and
/// the index blobs of its layers, in layer order.
pub fn artifact_manifest(subject: (&str, &Digest, u64), blobs: &[(Digest, IndexBlob)]) -> Vec<u8> {
    let (media_type, digest, size) = subject;
    let layers: Vec<serde_json::Value> = blobs
        .iter()
        .map(|(layer, b)| {
            serde_json::json!({
                "mediaType": MT_LAYER_INDEX,
                "digest": b.digest.to_string(),
                "size": b.size,
                "annotations": { ANN_LAYER: layer.to_string(), ANN_FORMAT: format_version() },
            })
        })
        .collect();
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::MT_OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": MT_EMPTY,
            "digest": Digest::sha256_of(EMPTY).to_string(),
            "size": EMPTY.len(),
            "data": "e30=",
        },
        "layers": layers,
        "subject": { "mediaType": media_type, "digest": digest.to_string(), "size": size },
        "annotations": { ANN_FORMAT: format_version() },
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Checks a fetched index blob of `layer` exactly as a cache file is checked (envelope, version,
/// CRC, then the whole index decoded: format version, structure, chunk digests against their
/// seal), and that it describes this layer (digest, size, the config's diff_id). Returns the
/// payload to install.
pub fn validate<'a>(bytes: &'a [u8], layer: &LayerInfo) -> Result<&'a [u8], Refused> {
    if !crate::cache::is_current(bytes) {
        return Err(Refused::Envelope);
    }
    let payload = crate::cache::open_envelope(bytes).ok_or(Refused::Checksum)?;
    let index = crate::layer::format::decode(payload, layer.size)?;
    if index.digest != layer.digest {
        return Err(Refused::OtherLayer(index.digest));
    }
    if let Some(id) = &layer.diff_id {
        if index.diff_id.to_string() != *id {
            return Err(Refused::DiffId {
                actual: index.diff_id,
                expected: id.clone(),
            });
        }
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_round_trip_and_name_their_subject() {
        let subject = Digest::sha256_of(b"manifest");
        let layer = Digest::sha256_of(b"layer");
        let blob = IndexBlob {
            digest: Digest::sha256_of(b"index"),
            size: 7,
        };
        let bytes = artifact_manifest(
            (crate::oci::MT_OCI_MANIFEST, &subject, 100),
            &[(layer.clone(), blob.clone())],
        );
        let parsed = parse_artifact(&bytes, &subject).unwrap();
        assert_eq!(parsed.into_iter().collect::<Vec<_>>(), [(layer, blob)]);
        let other = Digest::sha256_of(b"other");
        assert!(matches!(parse_artifact(&bytes, &other), Err(Refused::OtherSubject(_))));
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["config"]["digest"], Digest::sha256_of(b"{}").to_string());
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
    }
}
