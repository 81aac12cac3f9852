//! OCI and Docker documents: media types, the few fields imgfs needs, and the deterministic
//! synthesis of index and manifest JSON for sources that have none (docker save, dir:).
//!
//! Documents are read as `serde_json::Value` for the few fields imgfs needs (oci-spec's typed
//! documents are only used by the tests, to check that what imgfs writes parses); the original
//! bytes are always kept, because digests are over bytes, never over a re-serialization.

pub mod convert;
pub mod docker_load;
pub mod platform;

use crate::digest::Digest;
use serde::Serialize;
use std::collections::BTreeMap;

/// Nested indexes deeper than this are refused (a hostile image could nest forever).
pub const MAX_INDEX_DEPTH: usize = 8;

/// The annotation naming a ref in an OCI layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd (and Docker >= 25) give an index.json entry: the image's full name.
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// OCI image index.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker manifest list.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema2 manifest.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema1 manifests (signed and unsigned): refused with a clear message.
pub const MT_DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// What a descriptor points to, from its media type (or, lacking one, the document's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// An image index or manifest list.
    Index,
    /// An image manifest.
    Manifest,
    /// Docker schema1: not supported.
    Schema1,
    /// Something else (an artifact, a signature...): shown as a blob, not walked.
    Other,
}

/// Classifies a media type; `None` when the type says nothing (umoci writes no mediaType).
pub fn kind_of_media_type(mt: &str) -> Option<DocKind> {
    match mt {
        MT_OCI_INDEX | MT_DOCKER_LIST => Some(DocKind::Index),
        MT_OCI_MANIFEST | MT_DOCKER_MANIFEST => Some(DocKind::Manifest),
        m if MT_DOCKER_SCHEMA1.contains(&m) => Some(DocKind::Schema1),
        "" => None,
        _ => Some(DocKind::Other),
    }
}

/// Classifies a JSON document by shape, for descriptors without a useful media type.
pub fn kind_of_document(doc: &serde_json::Value) -> DocKind {
    if let Some(mt) = doc
        .get("mediaType")
        .and_then(|v| v.as_str())
        .and_then(kind_of_media_type)
    {
        return mt;
    }
    if doc.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        DocKind::Schema1
    } else if doc.get("manifests").is_some() {
        DocKind::Index
    } else if doc.get("config").is_some() && doc.get("layers").is_some() {
        DocKind::Manifest
    } else {
        DocKind::Other
    }
}

/// True for layers a registry may legitimately not distribute (so a source may lack them).
pub fn is_foreign_layer(mt: &str) -> bool {
    mt.contains(".nondistributable.") || mt.contains(".foreign.")
}

/// A descriptor as imgfs writes it into synthesized documents (fields in spec order).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Content address of the target.
    pub digest: Digest,
    /// Size in bytes of the target.
    pub size: u64,
    /// Platform, for index entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    /// Annotations (a BTreeMap, so their order is fixed).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One entry of a synthesized index.json.
pub type IndexEntry = Descriptor;

impl Descriptor {
    /// A plain descriptor.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Reads a descriptor out of a document (index entries, a manifest's config and layers):
    /// digest and size must be valid, the media type may be missing (umoci writes none),
    /// annotations that are not strings are left out.
    pub fn from_json(v: &serde_json::Value) -> Result<Descriptor, DescriptorError> {
        let digest = v
            .get("digest")
            .and_then(|d| d.as_str())
            .ok_or(DescriptorError::NoDigest)?
            .parse::<Digest>()
            .map_err(DescriptorError::BadDigest)?;
        let size = v
            .get("size")
            .and_then(|s| s.as_u64())
            .ok_or_else(|| DescriptorError::NoSize(digest.clone()))?;
        let annotations = v
            .get("annotations")
            .and_then(|a| a.as_object())
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Descriptor {
            media_type: v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("").to_owned(),
            digest,
            size,
            platform: v.get("platform").cloned(),
            annotations,
        })
    }

    /// An annotation's value, when it is there and not empty.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// Adds the ref-name annotation.
    pub fn with_ref_name(mut self, name: Option<&str>) -> Descriptor {
        if let Some(name) = name {
            self.annotations.insert(REF_NAME.to_owned(), name.to_owned());
        }
        self
    }
}

/// Why a descriptor in a document cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// No `digest` string.
    #[error("a descriptor has no digest")]
    NoDigest,
    /// A `digest` that is not one.
    #[error("bad digest")]
    BadDigest(#[source] crate::digest::DigestError),
    /// No `size` (or not a whole number).
    #[error("descriptor {0} has no valid size")]
    NoSize(Digest),
    /// An index without a `manifests` array.
    #[error("no \"manifests\" array")]
    NoManifests,
}

/// The `manifests` of an index (or index.json), as descriptors.
pub fn index_manifests(doc: &serde_json::Value) -> Result<Vec<Descriptor>, DescriptorError> {
    doc.get("manifests")
        .and_then(|m| m.as_array())
        .ok_or(DescriptorError::NoManifests)?
        .iter()
        .map(Descriptor::from_json)
        .collect()
}

/// A manifest's `config` and `layers` (none when it lists no layers), as descriptors; `None`
/// when it has no config.
pub fn manifest_parts(doc: &serde_json::Value) -> Option<Result<(Descriptor, Vec<Descriptor>), DescriptorError>> {
    let config = doc.get("config")?;
    let parts = || {
        let layers = match doc.get("layers").and_then(|l| l.as_array()) {
            Some(list) => list.iter().map(Descriptor::from_json).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok((Descriptor::from_json(config)?, layers))
    };
    Some(parts())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: &'a [Descriptor],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

/// index.json bytes for `manifests`: compact JSON, fields in spec order, so the same input
/// always gives the same bytes.
pub fn synthesize_index(manifests: &[Descriptor]) -> Vec<u8> {
    let index = Index {
        schema_version: 2,
        media_type: MT_OCI_INDEX,
        manifests,
    };
    serde_json::to_vec(&index).unwrap_or_default()
}

/// An OCI image manifest's bytes for a config and layers (deterministic like the index).
pub fn synthesize_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let m = Manifest {
        schema_version: 2,
        media_type: MT_OCI_MANIFEST,
        config,
        layers,
    };
    serde_json::to_vec(&m).unwrap_or_default()
}

/// The fields of an image config imgfs uses. Lenient on purpose: configs from old Docker
/// versions lack fields that oci-spec's `ImageConfiguration` requires.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ConfigSummary {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Architecture variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// Layer diff_ids.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `rootfs` of a config.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RootFs {
    /// Uncompressed digests of the layers, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesized_documents_are_deterministic_and_parse_as_oci() {
        let layer = Descriptor::new(MT_OCI_LAYER_TAR, Digest::sha256_of(b"l"), 1);
        let config = Descriptor::new(MT_OCI_CONFIG, Digest::sha256_of(b"c"), 1);
        let m = synthesize_manifest(&config, std::slice::from_ref(&layer));
        assert_eq!(m, synthesize_manifest(&config, std::slice::from_ref(&layer)));
        let parsed: oci_spec::image::ImageManifest = serde_json::from_slice(&m).unwrap();
        assert_eq!(parsed.layers().len(), 1);
        let entry = Descriptor::new(MT_OCI_MANIFEST, Digest::sha256_of(&m), m.len() as u64)
            .with_ref_name(Some("busybox:latest"));
        let idx = synthesize_index(&[entry]);
        let parsed: oci_spec::image::ImageIndex = serde_json::from_slice(&idx).unwrap();
        let ann = parsed.manifests()[0].annotations().clone().unwrap();
        assert_eq!(ann[REF_NAME], "busybox:latest");
    }

    #[test]
    fn kinds_by_shape() {
        let cases = [
            (r#"{"schemaVersion":1,"fsLayers":[]}"#, DocKind::Schema1),
            (r#"{"schemaVersion":2,"manifests":[]}"#, DocKind::Index),
            (r#"{"schemaVersion":2,"config":{},"layers":[]}"#, DocKind::Manifest),
            (
                r#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#,
                DocKind::Index,
            ),
            (r#"{"foo":1}"#, DocKind::Other),
        ];
        for (doc, kind) in cases {
            let v: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert_eq!(kind_of_document(&v), kind, "{doc}");
        }
    }
}
