//! A containers/storage image store over the mounted images (`--containers-storage`): the
//! overlay driver's layout, which podman, buildah and CRI-O read as an additional image store
//! (`additionalimagestores` in storage.conf, `--storage-opt additionalimagestore=PATH`).
//! docs/podman.md says how to use it; docs/layout.md what it holds.
//!
//! Everything is generated from the image set alone, with the ids containers/image gives the
//! same image when it pulls it (image ID = the config digest's hex, layer ID = the chain of
//! diff_ids), so a store is the same on every mount and `podman image inspect` shows what a
//! `podman pull` of the same image shows. A layer shared by several images is one entry of
//! `layers.json` and one `overlay/<id>/` directory. Nothing here reads a layer's content, except
//! the 4-byte gzip trailer that gives a gzip layer's uncompressed size when the cache has no
//! index of the layer (an index gives it exactly, for every compression).

use crate::digest::Digest;
use crate::image::{ImageSet, ManifestInfo};
pub mod tarsplit;

use base64::Engine;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where the store is shown, under the mount's root.
pub const DIR: &str = "containers-storage";

/// Size of containers/storage's short layer names (`overlay/l/<name>`).
const LINK_LEN: usize = 26;

/// Largest config read to find its creation time (configs are verified, small documents).
const MAX_CONFIG: u64 = 16 << 20;

/// One thing the store shows, at a path relative to [`DIR`].
#[derive(Clone)]
pub enum StoreNode {
    /// A generated file.
    Bytes(Arc<Vec<u8>>),
    /// A blob of the image set (manifests and configs as big-data files).
    Blob(Digest, u64),
    /// A symbolic link (`overlay/l/<short>` -> `../<id>/diff`).
    Symlink(String),
    /// A layer's file tree (`overlay/<id>/diff`): layer `n` of the manifest.
    LayerDiff(Arc<ManifestInfo>, usize),
    /// A layer's tar-split data (`overlay-layers/<id>.tar-split.gz`), made on first read
    /// ([`tarsplit`]): the layer's digest and diff_id.
    TarSplit(Digest, Option<String>),
}

/// containers/storage's compression codes (`pkg/archive` `Compression`).
fn compression_code(media_type: &str) -> Option<u8> {
    if media_type.ends_with("gzip") {
        Some(2)
    } else if media_type.ends_with("zstd") {
        Some(4)
    } else if media_type.ends_with(".tar") || media_type.ends_with("tar") {
        Some(0)
    } else {
        None
    }
}

/// An entry of `overlay-images/images.json`, fields in containers/storage's order.
#[derive(Serialize)]
struct ImageRecord {
    id: String,
    digest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    names: Vec<String>,
    layer: String,
    #[serde(rename = "big-data-names")]
    big_data_names: Vec<String>,
    #[serde(rename = "big-data-sizes")]
    big_data_sizes: BTreeMap<String, u64>,
    #[serde(rename = "big-data-digests")]
    big_data_digests: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
}

/// An entry of `overlay-layers/layers.json`.
#[derive(Serialize)]
struct LayerRecord {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(rename = "compressed-diff-digest")]
    compressed_digest: String,
    #[serde(rename = "compressed-size")]
    compressed_size: u64,
    #[serde(rename = "diff-digest")]
    diff_digest: String,
    /// -1 when unknown without reading the layer (containers/storage's own convention).
    #[serde(rename = "diff-size")]
    diff_size: i64,
    compression: u8,
}

/// A layer of the store and where its tree comes from.
struct StoreLayer {
    record: LayerRecord,
    manifest: Arc<ManifestInfo>,
    index: usize,
}

/// The files of the store, as (path under [`DIR`], node), directories implied by the paths.
/// `shared` gives the one `ManifestInfo` per manifest digest the rest of the tree uses.
pub fn build(
    set: &ImageSet,
    shared: &mut HashMap<Digest, Arc<ManifestInfo>>,
    cache: &crate::cache::Cache,
) -> Vec<(String, StoreNode)> {
    let mut images: Vec<(ImageRecord, Arc<ManifestInfo>)> = Vec::new();
    let mut layers: BTreeMap<String, StoreLayer> = BTreeMap::new();
    for (ref_name, node) in &set.refs {
        let Some(m) = node.for_host() else {
            log::debug!("{DIR}: ref {ref_name:?} has no image for this platform");
            continue;
        };
        let Some(ids) = layer_ids(m) else {
            log::info!(
                "{DIR}: image {} left out (a layer without a sha256 diff_id, or not in the source)",
                m.digest
            );
            continue;
        };
        let name = store_name(ref_name);
        let id = m.config.hex().to_owned();
        if let Some((rec, _)) = images.iter_mut().find(|(r, _)| r.id == id) {
            // Another ref of the same image (or a manifest with the same config): one image, more names.
            if let Some(n) = name {
                if !rec.names.contains(&n) {
                    rec.names.push(n);
                }
            }
            continue;
        }
        if m.config.algorithm().name() != "sha256" {
            log::info!("{DIR}: image {} left out (config digest is not sha256)", m.digest);
            continue;
        }
        let manifest = shared
            .entry(m.digest.clone())
            .or_insert_with(|| Arc::new(m.clone()))
            .clone();
        for (i, id) in ids.iter().enumerate() {
            if layers.contains_key(id) {
                continue;
            }
            let l = &m.layers[i];
            let record = LayerRecord {
                id: id.clone(),
                parent: i.checked_sub(1).map(|p| ids[p].clone()),
                compressed_digest: l.digest.to_string(),
                compressed_size: l.size,
                diff_digest: l.diff_id.clone().unwrap_or_default(),
                diff_size: uncompressed_size(set, l, cache),
                compression: compression_code(&l.media_type).unwrap_or(0),
            };
            layers.insert(
                id.clone(),
                StoreLayer {
                    record,
                    manifest: manifest.clone(),
                    index: i,
                },
            );
        }
        let blob_size = |d: &Digest| set.blobs.get(d).map_or(0, |b| b.data.len());
        let manifest_key = format!("manifest-{}", m.digest);
        let config_key = m.config.to_string();
        let big = [
            (config_key, &m.config),
            (manifest_key, &m.digest),
            ("manifest".to_owned(), &m.digest),
        ];
        let record = ImageRecord {
            id,
            digest: m.digest.to_string(),
            names: name.into_iter().collect(),
            layer: ids.last().cloned().unwrap_or_default(),
            big_data_names: big.iter().map(|(k, _)| k.clone()).collect(),
            big_data_sizes: big.iter().map(|(k, d)| (k.clone(), blob_size(d))).collect(),
            big_data_digests: big.iter().map(|(k, d)| (k.clone(), d.to_string())).collect(),
            created: created(set, &m.config),
        };
        images.push((record, manifest));
    }

    let mut out = Vec::new();
    let lock = Arc::new(vec![0u8; 64]);
    for (rec, m) in &images {
        for key in &rec.big_data_names {
            let d = if key == &m.config.to_string() {
                &m.config
            } else {
                &m.digest
            };
            let size = rec.big_data_sizes.get(key).copied().unwrap_or(0);
            let path = format!("overlay-images/{}/{}", rec.id, big_data_file_name(key));
            out.push((path, StoreNode::Blob(d.clone(), size)));
        }
    }
    let records: Vec<&ImageRecord> = images.iter().map(|(r, _)| r).collect();
    out.push((
        "overlay-images/images.json".into(),
        StoreNode::Bytes(Arc::new(to_json(&records))),
    ));
    out.push(("overlay-images/images.lock".into(), StoreNode::Bytes(lock.clone())));
    let records: Vec<&LayerRecord> = layers.values().map(|l| &l.record).collect();
    out.push((
        "overlay-layers/layers.json".into(),
        StoreNode::Bytes(Arc::new(to_json(&records))),
    ));
    out.push(("overlay-layers/layers.lock".into(), StoreNode::Bytes(lock)));
    for (id, l) in &layers {
        let link = short_link(id);
        out.push((
            format!("overlay/{id}/link"),
            StoreNode::Bytes(Arc::new(link.clone().into_bytes())),
        ));
        // The lower layers, nearest first, as the overlay driver writes them: a container's
        // layer on top of this one stacks `l/<this>` then these.
        let mut lowers = Vec::new();
        let mut parent = l.record.parent.as_deref();
        while let Some(p) = parent {
            lowers.push(format!("l/{}", short_link(p)));
            parent = layers.get(p).and_then(|pl| pl.record.parent.as_deref());
        }
        if !lowers.is_empty() {
            out.push((
                format!("overlay/{id}/lower"),
                StoreNode::Bytes(Arc::new(lowers.join(":").into_bytes())),
            ));
        }
        out.push((
            format!("overlay/{id}/diff"),
            StoreNode::LayerDiff(l.manifest.clone(), l.index),
        ));
        if let Some(layer) = l.manifest.layers.get(l.index) {
            let node = StoreNode::TarSplit(layer.digest.clone(), layer.diff_id.clone());
            out.push((format!("overlay-layers/{id}.tar-split.gz"), node));
        }
        out.push((format!("overlay/l/{link}"), StoreNode::Symlink(format!("../{id}/diff"))));
    }
    out
}

/// The layer IDs containers/image gives a manifest's layers: the first layer's diff_id hex, then
/// `sha256(parent ID + "+" + diff_id hex)`. None when a layer is absent or has no sha256 diff_id.
fn layer_ids(m: &ManifestInfo) -> Option<Vec<String>> {
    let mut ids: Vec<String> = Vec::with_capacity(m.layers.len());
    for l in &m.layers {
        let diff: Digest = l.diff_id.as_deref()?.parse().ok()?;
        if !l.present || diff.algorithm().name() != "sha256" {
            return None;
        }
        let id = match ids.last() {
            None => diff.hex().to_owned(),
            Some(parent) => Digest::sha256_of(format!("{parent}+{}", diff.hex()).as_bytes())
                .hex()
                .to_owned(),
        };
        ids.push(id);
    }
    (!ids.is_empty()).then_some(ids)
}

/// The name podman shows for a ref: a Docker tag normalized the way containers/image stores it
/// (`busybox:1` -> `docker.io/library/busybox:1`), a bare OCI ref name as podman names local
/// images (`v2` -> `localhost/v2:latest`), nothing for a digest.
fn store_name(ref_name: &str) -> Option<String> {
    use crate::registry::reference::{repo_tag, ImageRef};
    if let Some(tag) = repo_tag(ref_name) {
        return ImageRef::parse(&tag).ok().map(|r| r.ref_name());
    }
    let bare = !ref_name.is_empty()
        && ref_name.len() <= 128
        && ref_name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && ref_name.as_bytes()[0].is_ascii_alphanumeric();
    bare.then(|| format!("localhost/{ref_name}:latest"))
}

/// containers/storage's file name for a big-data key: the key itself when it is only lower-case
/// letters, digits and dots, else `=` and its standard base64.
fn big_data_file_name(key: &str) -> String {
    if key
        .bytes()
        .all(|b| b == b'.' || b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        key.to_owned()
    } else {
        format!("={}", base64::engine::general_purpose::STANDARD.encode(key))
    }
}

/// The short name of a layer under `overlay/l/`: containers/storage makes a random one; this is
/// the base32 of the id's hash, so it is the same on every mount.
fn short_link(id: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let d = Digest::sha256_of(format!("imgfs-link:{id}").as_bytes());
    let bytes: Vec<u8> = (0..d.hex().len() / 2)
        .filter_map(|i| u8::from_str_radix(&d.hex()[2 * i..2 * i + 2], 16).ok())
        .collect();
    let mut out = String::with_capacity(LINK_LEN);
    let (mut acc, mut bits) = (0u32, 0);
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 && out.len() < LINK_LEN {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// The uncompressed size of a layer without reading it: from its index when the cache has one
/// (a published index installed it, or an earlier mount built it), else the blob's size when
/// uncompressed, the gzip trailer's ISIZE for gzip (exact for the single-member streams image
/// tools write, below 4 GiB), else -1 ("unknown", which containers/storage computes itself when
/// it needs it).
fn uncompressed_size(set: &ImageSet, l: &crate::image::LayerInfo, cache: &crate::cache::Cache) -> i64 {
    let Some(blob) = set.blobs.get(&l.digest) else {
        return -1;
    };
    if let Some(n) = crate::layer::cached_stream_len(cache, &l.digest, blob.data.len()) {
        return i64::try_from(n).unwrap_or(-1);
    }
    match compression_code(&l.media_type) {
        Some(0) => i64::try_from(blob.data.len()).unwrap_or(-1),
        Some(2) if blob.data.len() >= 18 => {
            let mut trailer = [0u8; 4];
            match crate::blob::read_exact_at(blob.data.as_ref(), &mut trailer, blob.data.len() - 4) {
                Ok(()) => i64::from(u32::from_le_bytes(trailer)),
                Err(e) => {
                    log::warn!(
                        "{DIR}: layer {}: cannot read its gzip trailer ({e}); size unknown",
                        l.digest
                    );
                    -1
                }
            }
        }
        _ => -1,
    }
}

/// The config's `created` time when it has a valid RFC 3339 one (containers/storage refuses a
/// whole images.json with an unparsable time).
fn created(set: &ImageSet, config: &Digest) -> Option<String> {
    let blob = set.blobs.get(config)?;
    if blob.data.len() > MAX_CONFIG {
        return None;
    }
    let bytes = crate::blob::read_all(blob.data.as_ref()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let t = v.get("created")?.as_str()?;
    rfc3339(t).then(|| t.to_owned())
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, what Go's time.Time unmarshals.
fn rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':'
            && rest[1..3].bytes().chain(rest[4..].bytes()).all(|c| c.is_ascii_digit()))
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_data_names_are_containers_storage_names() {
        // Seen in a store `podman pull` wrote (podman 4.3.1).
        assert_eq!(big_data_file_name("manifest"), "manifest");
        assert_eq!(
            big_data_file_name("sha256:ddc69c8add3139879af032d81540ea0529130d14df8d0c8b2c084b3ecd16ef78"),
            "=c2hhMjU2OmRkYzY5YzhhZGQzMTM5ODc5YWYwMzJkODE1NDBlYTA1MjkxMzBkMTRkZjhkMGM4YjJjMDg0YjNlY2QxNmVmNzg="
        );
    }

    #[test]
    fn layer_ids_chain_like_containers_image() {
        let layer = |diff: &str| crate::image::LayerInfo {
            digest: Digest::sha256_of(diff.as_bytes()),
            media_type: crate::oci::MT_OCI_LAYER_GZIP.into(),
            size: 1,
            diff_id: Some(format!("sha256:{diff}")),
            present: true,
        };
        let m = ManifestInfo {
            digest: Digest::sha256_of(b"m"),
            media_type: crate::oci::MT_OCI_MANIFEST.into(),
            config: Digest::sha256_of(b"c"),
            platform: None,
            layers: vec![
                layer("7be2b2a2e7d78bbf5f499430e9d118dc7105b2d3982bcb9c3ffc36b364b1263b"),
                layer("088937bcf5538920b078df5438bd5f509d21cb7afc87191f23f29f5e0fddcf6a"),
            ],
            oci_digest: None,
        };
        // The ids `podman pull` gave these layers.
        assert_eq!(
            layer_ids(&m).unwrap(),
            [
                "7be2b2a2e7d78bbf5f499430e9d118dc7105b2d3982bcb9c3ffc36b364b1263b",
                "d011cfd7d57fab84b38704b4795be410d3fab80a764b673f392b7bd2f6de95cb"
            ]
        );
    }

    #[test]
    fn names_and_links() {
        assert_eq!(store_name("busybox:1").as_deref(), Some("docker.io/library/busybox:1"));
        assert_eq!(store_name("imgfs/test:v2").as_deref(), Some("docker.io/imgfs/test:v2"));
        assert_eq!(
            store_name("127.0.0.1:5000/app:1").as_deref(),
            Some("127.0.0.1:5000/app:1")
        );
        assert_eq!(store_name("v2").as_deref(), Some("localhost/v2:latest"));
        assert_eq!(store_name(&format!("sha256:{}", "a".repeat(64))), None);
        let l = short_link("x");
        assert_eq!(l.len(), LINK_LEN);
        assert!(l.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert_eq!(l, short_link("x"));
        assert_ne!(l, short_link("y"));
    }

    #[test]
    fn rfc3339_times() {
        for ok in [
            "2020-01-01T00:00:00Z",
            "2024-05-06T07:08:09.123456789Z",
            "2020-01-01T00:00:00+02:00",
        ] {
            assert!(rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2020-01-01",
            "2020-01-01 00:00:00Z",
            "2020-01-01T00:00:00",
            "2020-01-01T00:00:00.Z",
        ] {
            assert!(!rfc3339(bad), "{bad}");
        }
    }
}
