//! Docker-typed documents (schema2 manifests, manifest lists) as OCI documents.
//!
//! OCI clients find images in an index by OCI media types only (containers-image matches refs on
//! OCI manifest/index types, umoci wants `application/vnd.oci.image.manifest.v1+json`), so the
//! mount's `index.json` points at converted copies (docs/layout.md). The conversion is the one
//! skopeo does when it copies to `oci:`: the document's and its descriptors' media types are
//! mapped, every other field is kept. Unlike skopeo, the config's bytes are kept as they are
//! (skopeo re-serializes it, which drops Docker-only fields and changes the image ID): the
//! converted manifest names the same config blob with the OCI config media type.
//!
//! The output is a pure function of the input document (and, for an index, of its children's
//! conversions): keys in spec order, then the others sorted, compact JSON. The same source gives
//! the same converted digests on every mount and machine.

use super::{MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_MANIFEST};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// The OCI media type a Docker media type becomes; `None` for types that stay as they are.
pub fn oci_media_type(mt: &str) -> Option<&'static str> {
    Some(match mt {
        MT_DOCKER_MANIFEST => MT_OCI_MANIFEST,
        MT_DOCKER_LIST => MT_OCI_INDEX,
        "application/vnd.docker.container.image.v1+json" => MT_OCI_CONFIG,
        "application/vnd.docker.image.rootfs.diff.tar" => super::MT_OCI_LAYER_TAR,
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => super::MT_OCI_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => super::MT_OCI_LAYER_ZSTD,
        "application/vnd.docker.image.rootfs.foreign.diff.tar" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        _ => return None,
    })
}

/// Maps the `mediaType` of a JSON object in place; true when it changed.
fn map_field(obj: &mut Value) -> bool {
    let Some(mt) = obj.get("mediaType").and_then(Value::as_str) else {
        return false;
    };
    match oci_media_type(mt) {
        Some(new) => {
            obj["mediaType"] = Value::String(new.to_owned());
            true
        }
        None => false,
    }
}

/// The OCI form of an image manifest, or `None` when nothing in it is Docker-typed (its own
/// media type, its config's, its layers').
pub fn manifest(doc: &Value) -> Option<Vec<u8>> {
    let mut out = doc.clone();
    let mut changed = map_field(&mut out);
    if let Some(config) = out.get_mut("config") {
        changed |= map_field(config);
    }
    if let Some(layers) = out.get_mut("layers").and_then(Value::as_array_mut) {
        for l in layers {
            changed |= map_field(l);
        }
    }
    if !changed {
        return None;
    }
    // A schema2 manifest always names its type; keep the converted one explicit too.
    out["mediaType"] = Value::String(MT_OCI_MANIFEST.to_owned());
    Some(to_vec(&out))
}

/// Where a converted document is: (digest, size, media type), as a descriptor must name it.
pub type Target = (String, u64, &'static str);

/// The OCI form of an index, or `None` when it is OCI already and none of its children were
/// converted. `converted(digest)` gives a child's conversion.
pub fn index(doc: &Value, converted: &dyn Fn(&str) -> Option<Target>) -> Option<Vec<u8>> {
    let mut out = doc.clone();
    let mut changed = map_field(&mut out);
    if let Some(children) = out.get_mut("manifests").and_then(Value::as_array_mut) {
        for c in children {
            let target = c.get("digest").and_then(Value::as_str).and_then(converted);
            match target {
                Some((digest, size, mt)) => {
                    c["digest"] = Value::String(digest);
                    c["size"] = Value::from(size);
                    c["mediaType"] = Value::String(mt.to_owned());
                    changed = true;
                }
                None => changed |= map_field(c),
            }
        }
    }
    if !changed {
        return None;
    }
    out["mediaType"] = Value::String(MT_OCI_INDEX.to_owned());
    Some(to_vec(&out))
}

/// Compact JSON with the keys of every object in spec order (the fields image-spec lists, in
/// its order), then the others sorted: readable like skopeo's output, and deterministic.
pub fn to_vec(v: &Value) -> Vec<u8> {
    // Serializing a Value to memory cannot fail (no non-string keys, no I/O).
    serde_json::to_vec(&Ordered(v)).unwrap_or_default()
}

/// Field order of image-spec's manifests, indexes and descriptors.
const KEY_ORDER: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "artifactType",
    "digest",
    "size",
    "config",
    "layers",
    "manifests",
    "urls",
    "platform",
    "subject",
    "annotations",
    "data",
];

struct Ordered<'a>(&'a Value);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let rank = |k: &str| KEY_ORDER.iter().position(|o| *o == k).unwrap_or(KEY_ORDER.len());
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
                let mut m = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    m.serialize_entry(k, &Ordered(&map[k]))?;
                }
                m.end()
            }
            Value::Array(items) => s.collect_seq(items.iter().map(Ordered)),
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA2: &str = r#"{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7,
              "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"},
   "layers": [
      {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 9,
       "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222"},
      {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 3,
       "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
       "urls": ["https://example.com/l"]}
   ]
}"#;

    #[test]
    fn schema2_becomes_an_oci_manifest_with_every_field_kept() {
        let doc: Value = serde_json::from_str(SCHEMA2).unwrap();
        let out = manifest(&doc).expect("converted");
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111"#
            ),
            "{text}"
        );
        let parsed: oci_spec::image::ImageManifest = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed.config().size(), 7);
        let l = &parsed.layers()[1];
        assert_eq!(
            l.media_type().to_string(),
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        );
        assert_eq!(l.urls().as_ref().unwrap()[0], "https://example.com/l");
        // the same input always gives the same bytes; an OCI manifest is left alone
        assert_eq!(manifest(&serde_json::from_str(SCHEMA2).unwrap()), Some(out.clone()));
        assert_eq!(manifest(&serde_json::from_slice(&out).unwrap()), None);
    }

    #[test]
    fn manifest_lists_point_at_converted_children() {
        let list: Value = serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
               "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":5,
                 "digest":"sha256:aaaa","platform":{"os":"linux","architecture":"amd64"}},
                 {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":6,"digest":"sha256:bbbb"}]}"#,
        )
        .unwrap();
        let conv = |d: &str| (d == "sha256:aaaa").then(|| ("sha256:cccc".to_owned(), 42, MT_OCI_MANIFEST));
        let out = String::from_utf8(index(&list, &conv).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cccc","size":42,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bbbb","size":6}]}"#
        );
        let oci: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(index(&oci, &|_| None), None);
    }
}
