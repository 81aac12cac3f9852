//! The JSON of `imgfs inspect` (docs/cli.md documents every field; [`VERSION`] changes when a
//! field changes meaning or goes away). Besides the source's structure it shows what
//! `skopeo inspect` shows from each image's config, and where each image is in a mount.

use crate::blob::read_all;
use crate::digest::Digest;
use crate::image::{ImageNode, ImageSet, ManifestInfo};
use crate::tree::escape::escape_component;
use crate::tree::Tree;
use serde_json::{json, Map, Value};

/// Version of the JSON layout, the `"version"` field.
pub const VERSION: u32 = 1;

/// The whole document for `tree` (built with `crate::tree::build`). `only`: the refs to show,
/// by index into the image set's refs (all when `None`).
pub fn inspect(tree: &Tree, only: Option<&[usize]>) -> Value {
    let set = tree.image_set();
    let blobs: Vec<Value> = set
        .blobs
        .iter()
        .map(|(d, b)| json!({ "digest": d, "size": b.data.len(), "role": b.role }))
        .collect();
    let refs: Vec<Value> = set
        .refs
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_none_or(|o| o.contains(i)))
        .map(|(i, (name, node))| {
            let path = tree.ref_paths().get(i).cloned().unwrap_or_default();
            json!({ "name": name, "path": path, "image": image(set, node, &path) })
        })
        .collect();
    json!({
        "version": VERSION,
        "source": set.path,
        "format": set.format,
        "refs": refs,
        "blobs": blobs,
    })
}

/// The document for the one image `choice` names (`imgfs inspect --image REF [--platform P]`):
/// `refs` holds that image alone, with the path of its directory in a full mount.
pub fn inspect_one(tree: &Tree, choice: &crate::one_image::Choice) -> Result<Value, crate::source::SourceError> {
    let set = tree.image_set();
    let sel = choice.image.clone().unwrap_or_default();
    let (name, node) = if choice.platform.is_some() || sel.is_empty() {
        let chosen = crate::one_image::choose(set, choice)?;
        let node = set
            .refs
            .iter()
            .find(|(n, _)| *n == chosen.name)
            .and_then(|(_, top)| find(top, &chosen.manifest.digest))
            .unwrap_or_else(|| std::sync::Arc::new(ImageNode::Manifest(chosen.manifest.clone())));
        (chosen.name, node)
    } else {
        crate::image::select_ref(&set.refs, &crate::refname::Selector::parse(&sel)).ok_or_else(|| {
            crate::source::SourceError::NoSuchImage {
                path: set.path.clone(),
                selector: sel.clone(),
                available: set.refs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
            }
        })?
    };
    let i = set.refs.iter().position(|(n, _)| *n == name).unwrap_or(0);
    let top = tree.ref_paths().get(i).cloned().unwrap_or_default();
    let path = set
        .refs
        .get(i)
        .and_then(|(_, t)| path_of(t, node.digest(), &top))
        .unwrap_or(top);
    let mut doc = inspect(tree, Some(&[]));
    doc["refs"] = json!([{ "name": name, "path": path, "image": image(set, &node, &path) }]);
    Ok(doc)
}

/// `node` itself or the node below it with this digest.
fn find(node: &std::sync::Arc<ImageNode>, digest: &Digest) -> Option<std::sync::Arc<ImageNode>> {
    if node.digest() == digest {
        return Some(node.clone());
    }
    node.find(digest)
}

/// The path of the node with this digest, `node` being shown at `path`.
fn path_of(node: &ImageNode, digest: &Digest, path: &str) -> Option<String> {
    if node.digest() == digest {
        return Some(path.to_owned());
    }
    let ImageNode::Index { children, .. } = node else {
        return None;
    };
    children
        .iter()
        .find_map(|(name, c)| path_of(c, digest, &format!("{path}/{}", escape_component(name))))
}

/// An index or a manifest shown at `path`.
pub fn image(set: &ImageSet, node: &ImageNode, path: &str) -> Value {
    match node {
        ImageNode::Index {
            digest,
            children,
            oci_digest,
        } => {
            let children: Vec<Value> = children
                .iter()
                .map(|(name, child)| {
                    let path = format!("{path}/{}", escape_component(name));
                    json!({ "name": name, "path": path, "image": image(set, child, &path) })
                })
                .collect();
            let mut v = json!({ "type": "index", "digest": digest, "children": children });
            if let Some(d) = oci_digest {
                v["ociDigest"] = json!(d);
            }
            v
        }
        ImageNode::Manifest(m) => manifest(set, m, path),
    }
}

fn manifest(set: &ImageSet, m: &ManifestInfo, path: &str) -> Value {
    let config = config_of(set, &m.config);
    let field = |k: &str| config.get(k).cloned().unwrap_or(Value::Null);
    let run = config.get("config").cloned().unwrap_or(Value::Null);
    let run_field = |k: &str| run.get(k).cloned().unwrap_or(Value::Null);
    let sorted_keys = |v: Value| match v {
        Value::Object(o) => Value::Array(o.keys().map(|k| Value::String(k.clone())).collect()),
        _ => Value::Null,
    };
    let layers: Vec<Value> = m
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "index": i,
                "digest": l.digest,
                "mediaType": l.media_type,
                "size": l.size,
                "diffId": l.diff_id,
                "present": l.present,
                "path": l.present.then(|| format!("{path}/layers/{i}")),
            })
        })
        .collect();
    let history: Vec<Value> = config
        .get("history")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .map(|e| {
                    let f = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
                    json!({
                        "created": f("created"),
                        "createdBy": f("created_by"),
                        "author": f("author"),
                        "comment": f("comment"),
                        "emptyLayer": e.get("empty_layer").and_then(Value::as_bool).unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let platform = m.platform.as_deref().map(platform_object);
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    put("type", json!("manifest"));
    put("digest", json!(m.digest));
    if let Some(d) = &m.oci_digest {
        put("ociDigest", json!(d));
    }
    put("mediaType", json!(m.media_type));
    put(
        "config",
        json!({ "digest": m.config, "size": set.blobs.get(&m.config).map(|b| b.data.len()) }),
    );
    put("platform", platform.unwrap_or(Value::Null));
    put("rootfs", json!(format!("{path}/rootfs")));
    put("created", field("created"));
    put("author", field("author"));
    put("architecture", field("architecture"));
    put("os", field("os"));
    put("variant", field("variant"));
    put("env", run_field("Env"));
    put("cmd", run_field("Cmd"));
    put("entrypoint", run_field("Entrypoint"));
    put("workingDir", run_field("WorkingDir"));
    put("user", run_field("User"));
    put("labels", run_field("Labels"));
    put("exposedPorts", sorted_keys(run_field("ExposedPorts")));
    put("volumes", sorted_keys(run_field("Volumes")));
    put("stopSignal", run_field("StopSignal"));
    put("layers", Value::Array(layers));
    put("history", Value::Array(history));
    Value::Object(out)
}

/// The config document (verified when the source was opened); `{}` if it cannot be read.
fn config_of(set: &ImageSet, digest: &Digest) -> Value {
    set.blobs
        .get(digest)
        .and_then(|b| read_all(b.data.as_ref()).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| json!({}))
}

/// `linux-arm-v7` as `{"os":"linux","architecture":"arm","variant":"v7"}`.
fn platform_object(name: &str) -> Value {
    let mut parts = name.splitn(3, '-');
    let mut o = Map::new();
    o.insert("os".into(), json!(parts.next().unwrap_or("")));
    o.insert("architecture".into(), json!(parts.next().unwrap_or("")));
    if let Some(v) = parts.next() {
        o.insert("variant".into(), json!(v));
    }
    Value::Object(o)
}
