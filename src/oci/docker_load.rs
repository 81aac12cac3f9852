//! The `manifest.json` every mount shows so that a tar of the mount loads into Docker.
//!
//! `docker load` of Docker <= 24 reads only `manifest.json` (Docker >= 25 reads it too when it
//! is there): a list of `{Config, RepoTags, Layers}` with paths relative to the archive's root.
//! imgfs writes it in the Docker 25 style, every path into `blobs/sha256/`, so it names files
//! the mount shows whatever the source was (docs/layout.md). Deterministic like the other
//! synthesized documents.

use crate::digest::Digest;
use serde::Serialize;

/// One image `docker load` should create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadEntry {
    /// Its config blob (the image ID Docker gives it).
    pub config: Digest,
    /// Docker tags (`name:tag`); empty for an image loaded by ID only.
    pub repo_tags: Vec<String>,
    /// Its layer blobs, bottom first.
    pub layers: Vec<Digest>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    config: String,
    repo_tags: Option<&'a [String]>,
    layers: Vec<String>,
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

/// `manifest.json` bytes for these images (untagged ones get `"RepoTags":null`, as Docker
/// writes them).
pub fn manifest_json(entries: &[LoadEntry]) -> Vec<u8> {
    let list: Vec<Entry<'_>> = entries
        .iter()
        .map(|e| Entry {
            config: blob_path(&e.config),
            repo_tags: (!e.repo_tags.is_empty()).then_some(e.repo_tags.as_slice()),
            layers: e.layers.iter().map(blob_path).collect(),
        })
        .collect();
    serde_json::to_vec(&list).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_paths() {
        for (name, ok) in [
            ("busybox:latest", true),
            ("docker.io/imgfs/test:v2", true),
            ("127.0.0.1:5000/imgfs/docker:v2", true),
            ("v2", false),
            ("latest", false),
            ("127.0.0.1:5000/imgfs/docker", false),
            (
                "imgfs/test@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                false,
            ),
            ("UPPER/x:1", false),
            ("sha256:abcd", false),
        ] {
            assert_eq!(crate::registry::reference::repo_tag(name).is_some(), ok, "{name}");
        }
        let e = LoadEntry {
            config: Digest::sha256_of(b"c"),
            repo_tags: vec!["a/b:1".into()],
            layers: vec![Digest::sha256_of(b"l")],
        };
        let untagged = LoadEntry {
            repo_tags: vec![],
            ..e.clone()
        };
        let text = String::from_utf8(manifest_json(&[e, untagged])).unwrap();
        let c = Digest::sha256_of(b"c").hex().to_owned();
        let l = Digest::sha256_of(b"l").hex().to_owned();
        assert_eq!(
            text,
            format!(
                r#"[{{"Config":"blobs/sha256/{c}","RepoTags":["a/b:1"],"Layers":["blobs/sha256/{l}"]}},{{"Config":"blobs/sha256/{c}","RepoTags":null,"Layers":["blobs/sha256/{l}"]}}]"#
            )
        );
    }
}
