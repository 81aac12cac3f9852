//! The image set of a source: walks `index.json` through nested indexes to manifests, configs
//! and layers, verifying every document it loads (size and digest), and records which blobs
//! are reachable. This is what the tree (and `imgfs inspect`) is built from.

use crate::blob::ReadAt;
use crate::digest::Digest;
use crate::oci::{self, platform, Descriptor, DocKind};
use crate::source::{parse_json, read_small, BlobUse, Fetch, Format, RawLayout, Result, SourceError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// Most filesystem views (`rootfs/` and `layers/<n>/` directories) one mount may show. A small
/// index.json can name one big manifest many times (2 MB of JSON: 10k refs to a 1000-layer
/// manifest, 10M views), and each view costs ~250 bytes before it is ever opened (tree node,
/// name, placement: 252k views measured 65 MB), so the count is bounded. 256k is 5000 refs of
/// 50-layer images.
pub const MAX_VIEWS: usize = 1 << 18;

/// What a reachable blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobRole {
    /// An image index / manifest list.
    Index,
    /// An image manifest.
    Manifest,
    /// An image config.
    Config,
    /// A layer.
    Layer,
    /// Anything else a descriptor points to (artifacts).
    Other,
}

/// A reachable blob.
#[derive(Clone)]
pub struct BlobInfo {
    /// Its bytes.
    pub data: Arc<dyn ReadAt>,
    /// What it is.
    pub role: BlobRole,
    /// True when its digest was checked while opening (documents); layers are checked on read.
    pub verified: bool,
}

/// A layer of a manifest.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// Compressed digest.
    pub digest: Digest,
    /// Media type as the manifest says.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The config's diff_id for this layer, if it has one.
    pub diff_id: Option<String>,
    /// False for a foreign/non-distributable layer the source does not hold.
    pub present: bool,
}

/// An image manifest with its config and layers.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestInfo {
    /// Digest of the manifest.
    pub digest: Digest,
    /// Media type of the manifest.
    pub media_type: String,
    /// Digest of the config.
    pub config: Digest,
    /// `os-arch[-variant]` from the config.
    pub platform: Option<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// The OCI conversion `index.json` points at, when this manifest is Docker-typed
    /// (`crate::oci::convert`); the manifest itself stays at `digest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci_digest: Option<Digest>,
}

/// A node of the ref graph: an index with named children, or a manifest.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ImageNode {
    /// An image index; children are named by platform.
    Index {
        /// Digest of the index.
        digest: Digest,
        /// The OCI conversion OCI clients see, when the index is a Docker manifest list or
        /// lists converted children.
        #[serde(skip_serializing_if = "Option::is_none")]
        oci_digest: Option<Digest>,
        /// (directory name, child) pairs.
        children: Vec<(String, Arc<ImageNode>)>,
    },
    /// An image manifest.
    Manifest(ManifestInfo),
}

impl ImageNode {
    /// Digest of the document (index or manifest).
    pub fn digest(&self) -> &Digest {
        match self {
            ImageNode::Index { digest, .. } => digest,
            ImageNode::Manifest(m) => &m.digest,
        }
    }

    /// The node with this digest below this one (itself excluded), depth first.
    pub fn find(&self, digest: &Digest) -> Option<Arc<ImageNode>> {
        let ImageNode::Index { children, .. } = self else {
            return None;
        };
        children.iter().find_map(|(_, c)| {
            if c.digest() == digest {
                Some(c.clone())
            } else {
                c.find(digest)
            }
        })
    }

    /// The digest of its OCI conversion, when it has one.
    pub fn oci_digest(&self) -> Option<&Digest> {
        match self {
            ImageNode::Index { oci_digest, .. } => oci_digest.as_ref(),
            ImageNode::Manifest(m) => m.oci_digest.as_ref(),
        }
    }

    /// The image this host would run: the manifest itself, or in an index the first entry
    /// for this host's platform (any variant).
    pub fn for_host(&self) -> Option<&ManifestInfo> {
        let host = crate::registry::Platform::host();
        let host = format!("{}-{}", host.os, host.architecture);
        match self {
            ImageNode::Manifest(m) => Some(m),
            ImageNode::Index { children, .. } => children.iter().find_map(|(n, c)| match c.as_ref() {
                ImageNode::Manifest(m) if *n == host || n.starts_with(&format!("{host}-")) => Some(m),
                _ => None,
            }),
        }
    }

    /// The OCI media type of what OCI clients see for this node.
    fn oci_media_type(&self) -> &'static str {
        match self {
            ImageNode::Index { .. } => oci::MT_OCI_INDEX,
            ImageNode::Manifest(_) => oci::MT_OCI_MANIFEST,
        }
    }
}

/// Everything a mount shows, verified.
pub struct ImageSet {
    /// The detected source format.
    pub format: Format,
    /// The source's path.
    pub path: PathBuf,
    /// Time shown on metadata files.
    pub mtime: SystemTime,
    /// `oci-layout` bytes.
    pub oci_layout: Arc<Vec<u8>>,
    /// `index.json` bytes.
    pub index_json: Arc<Vec<u8>>,
    /// Top-level files from the source (docker's manifest.json, repositories).
    pub extras: Vec<(String, Arc<dyn ReadAt>)>,
    /// Reachable blobs.
    pub blobs: BTreeMap<Digest, BlobInfo>,
    /// Refs shown under `images/`, in index order.
    pub refs: Vec<(String, Arc<ImageNode>)>,
}

struct Walker<'a> {
    raw: &'a RawLayout,
    blobs: BTreeMap<Digest, BlobInfo>,
    done: HashMap<Digest, Arc<ImageNode>>,
    visiting: Vec<Digest>,
}

impl ImageSet {
    /// Walks and verifies a raw layout.
    pub fn load(raw: RawLayout) -> Result<ImageSet> {
        let index: serde_json::Value = parse_json(&raw.index_json, &raw.path, "index.json")?;
        let entries = oci::index_manifests(&index).map_err(|e| SourceError::descriptor(e, &raw.path, "index.json"))?;
        if let Some(remote) = raw.remote() {
            prefetch_below(remote, &entries);
        }
        let mut w = Walker {
            raw: &raw,
            blobs: BTreeMap::new(),
            done: HashMap::new(),
            visiting: Vec::new(),
        };
        let mut refs: Vec<(String, Arc<ImageNode>)> = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut image_names = HashMap::new();
        for d in &entries {
            let Some(node) = w.visit(d, 0)? else { continue };
            let name = d
                .annotation(oci::REF_NAME)
                .map_or_else(|| d.digest.to_string(), str::to_owned);
            if let Some(full) = d.annotation(oci::IMAGE_NAME) {
                image_names.entry(name.clone()).or_insert_with(|| full.to_owned());
            }
            if !names.insert(name.clone()) {
                log::warn!(
                    "{}: ref {name:?} appears twice in index.json; the first wins",
                    raw.path.display()
                );
                continue;
            }
            refs.push((name, node));
        }
        let index_json = match oci_index_json(&index, &w) {
            Some(bytes) => Arc::new(bytes),
            None => Arc::new(raw.index_json.clone()),
        };
        let blobs = w.blobs;
        let refs = select(refs, &raw)?;
        let mut memo = HashMap::new();
        let views = refs
            .iter()
            .map(|(_, node)| view_count(node, &mut memo))
            .fold(0, usize::saturating_add);
        if views > MAX_VIEWS {
            return Err(SourceError::Invalid {
                path: raw.path.clone(),
                file: "index.json".into(),
                reason: format!(
                    "its refs would show {views} rootfs/ and layers/<n>/ directories, more than the limit of {MAX_VIEWS}"
                ),
            });
        }
        // The source's own manifest.json moves aside for the one `docker load` can use.
        let mut extras: Vec<(String, Arc<dyn ReadAt>)> = raw
            .extras
            .iter()
            .map(|(n, data)| match n.as_str() {
                "manifest.json" => (SOURCE_MANIFEST.to_owned(), data.clone()),
                _ => (n.clone(), data.clone()),
            })
            .collect();
        let load = oci::docker_load::manifest_json(&load_entries(&refs, &image_names));
        extras.push(("manifest.json".to_owned(), Arc::new(load)));
        Ok(ImageSet {
            format: raw.format,
            path: raw.path.clone(),
            mtime: raw.mtime,
            oci_layout: Arc::new(raw.oci_layout.clone()),
            index_json,
            extras,
            blobs,
            refs,
        })
    }
}

/// Where the mount shows a source's own `manifest.json` (docker save archives): the top-level
/// `manifest.json` is the one `docker load` reads, synthesized for every source.
pub const SOURCE_MANIFEST: &str = "manifest.source.json";

/// The images `docker load` of a tar of the mount creates: one per image manifest a ref names
/// (for a multi-platform ref, this host's platform), tagged with the ref's full image name
/// (`io.containerd.image.name`) or the ref name when either is a Docker tag. An image with a
/// layer the source lacks (foreign layers) cannot be loaded and is left out.
fn load_entries(
    refs: &[(String, Arc<ImageNode>)],
    image_names: &HashMap<String, String>,
) -> Vec<oci::docker_load::LoadEntry> {
    let mut out: Vec<(Digest, oci::docker_load::LoadEntry)> = Vec::new();
    for (name, node) in refs {
        let Some(manifest) = node.for_host() else { continue };
        if manifest.layers.iter().any(|l| !l.present) {
            continue;
        }
        let tag = image_names
            .get(name)
            .and_then(|n| crate::registry::reference::repo_tag(n))
            .or_else(|| crate::registry::reference::repo_tag(name));
        let at = match out.iter().position(|(d, _)| *d == manifest.digest) {
            Some(i) => i,
            None => {
                out.push((
                    manifest.digest.clone(),
                    oci::docker_load::LoadEntry {
                        config: manifest.config.clone(),
                        repo_tags: Vec::new(),
                        layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
                    },
                ));
                out.len() - 1
            }
        };
        if let Some(t) = tag {
            if !out[at].1.repo_tags.contains(&t) {
                out[at].1.repo_tags.push(t);
            }
        }
    }
    out.into_iter().map(|(_, e)| e).collect()
}

/// `index.json` with its Docker-typed entries pointing at their OCI conversions, or `None` when
/// none was converted (the source's bytes are shown). A converted entry without a ref name gets
/// the original's digest as its ref name, so it keeps the name `images/` shows it under and a
/// reference pinned to the original digest still finds it.
fn oci_index_json(index: &serde_json::Value, w: &Walker<'_>) -> Option<Vec<u8>> {
    let mut out = index.clone();
    let mut changed = false;
    for entry in out.get_mut("manifests")?.as_array_mut()? {
        let original = entry
            .get("digest")
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_owned();
        let Some(target) = original.parse().ok().and_then(|d: Digest| w.converted(&d)) else {
            continue;
        };
        (entry["digest"], entry["size"], entry["mediaType"]) = (target.0.into(), target.1.into(), target.2.into());
        let named = entry
            .get("annotations")
            .and_then(|a| a.get(oci::REF_NAME))
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty());
        if !named {
            if !entry.get("annotations").is_some_and(|a| a.is_object()) {
                entry["annotations"] = serde_json::json!({});
            }
            entry["annotations"][oci::REF_NAME] = original.into();
        }
        changed = true;
    }
    changed.then(|| oci::convert::to_vec(&out))
}

/// How many views (`rootfs/` plus one `layers/<n>/` per present layer) an image node shows,
/// saturating. Nodes are shared (an index may name one child under many platform names, level
/// after level), so counts are memoized by digest: the walk is linear in distinct documents.
fn view_count(node: &ImageNode, memo: &mut HashMap<Digest, usize>) -> usize {
    match node {
        ImageNode::Manifest(m) => 1 + m.layers.iter().filter(|l| l.present).count(),
        ImageNode::Index { digest, children, .. } => {
            if let Some(&n) = memo.get(digest) {
                return n;
            }
            let n = children
                .iter()
                .map(|(_, c)| view_count(c, memo))
                .fold(0, usize::saturating_add);
            memo.insert(digest.clone(), n);
            n
        }
    }
}

/// Applies the reference's selector to the refs: `@N` (the N-th image, docker-archive style) or
/// any spelling of an image's name or digest (`crate::refname`). The best match wins; among
/// equals, the first in index order. A digest that names a platform's manifest inside an index
/// selects that manifest.
fn select(refs: Vec<(String, Arc<ImageNode>)>, raw: &RawLayout) -> Result<Vec<(String, Arc<ImageNode>)>> {
    let Some(sel) = raw.selector.as_deref() else {
        return Ok(refs);
    };
    let available = || refs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(Ok(i)) = sel.strip_prefix('@').map(str::parse::<usize>) {
        return match refs.get(i) {
            Some(r) => Ok(vec![r.clone()]),
            None => Err(SourceError::NoSuchImage {
                path: raw.path.clone(),
                selector: sel.to_owned(),
                available: available(),
            }),
        };
    }
    match select_ref(&refs, &crate::refname::Selector::parse(sel)) {
        Some(r) => Ok(vec![r]),
        None => Err(SourceError::NoSuchImage {
            path: raw.path.clone(),
            selector: sel.to_owned(),
            available: available(),
        }),
    }
}

/// The ref a selector names (see [`select`]).
pub fn select_ref(
    refs: &[(String, Arc<ImageNode>)],
    sel: &crate::refname::Selector,
) -> Option<(String, Arc<ImageNode>)> {
    let mut best: Option<(crate::refname::Match, usize)> = None;
    for (i, (name, node)) in refs.iter().enumerate() {
        if let Some(m) = sel.matches(name, node.digest()) {
            if best.is_none_or(|(b, _)| m > b) {
                best = Some((m, i));
            }
        }
    }
    if let Some((_, i)) = best {
        return refs.get(i).cloned();
    }
    let digest = sel.digest()?;
    refs.iter()
        .find_map(|(name, node)| node.find(digest).map(|child| (name.clone(), child)))
}

/// Asks a remote source ahead of the walk for the documents the walk will load below the
/// index.json entries, a whole level per request ([`Fetch::prefetch`]): an index by tag with N
/// platforms costs two round trips (the N manifests together, then the N configs), not 2N, and
/// the walk then finds every document at hand. Documents already held are looked through at
/// once, so the chosen platform's manifest and its siblings are one level. Nothing is verified
/// or reported here (the fetcher verifies what it keeps): the walk opens each document again
/// and reports any failure in its own order, as for local sources.
fn prefetch_below(remote: &dyn Fetch, entries: &[Descriptor]) {
    let mut seen = HashSet::new();
    let mut wanted: Vec<(Descriptor, BlobUse)> = entries.iter().map(|d| (d.clone(), BlobUse::Manifest)).collect();
    // Each round is one level below the last: the walk refuses deeper graphs anyway.
    for _ in 0..oci::MAX_INDEX_DEPTH + 3 {
        let mut fetch = Vec::new();
        while let Some((d, used)) = wanted.pop() {
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            match remote.held(&d.digest) {
                Some(bytes) => wanted.extend(documents_below(&d, used, bytes.as_ref())),
                None => fetch.push((d, used)),
            }
        }
        if fetch.is_empty() {
            return;
        }
        remote.prefetch(&fetch);
        for (d, used) in &fetch {
            if let Some(bytes) = remote.held(&d.digest) {
                wanted.extend(documents_below(d, *used, bytes.as_ref()));
            }
        }
    }
}

/// The documents the walk loads right below a held document: an index's entries, a manifest's
/// config (the walk's own choices: the descriptor's media type first, then the document's shape).
fn documents_below(d: &Descriptor, used: BlobUse, data: &dyn ReadAt) -> Vec<(Descriptor, BlobUse)> {
    if used != BlobUse::Manifest {
        return Vec::new();
    }
    let Ok(bytes) = crate::blob::read_all(data) else {
        return Vec::new();
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    match oci::kind_of_media_type(&d.media_type).unwrap_or_else(|| oci::kind_of_document(&doc)) {
        DocKind::Index => oci::index_manifests(&doc)
            .unwrap_or_default()
            .into_iter()
            .map(|c| match oci::kind_of_media_type(&c.media_type) {
                Some(DocKind::Other) => (c, BlobUse::Other),
                _ => (c, BlobUse::Manifest),
            })
            .collect(),
        DocKind::Manifest => match oci::manifest_parts(&doc) {
            Some(Ok((config, _))) => vec![(config, BlobUse::Config)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

impl Walker<'_> {
    /// Visits an index or manifest; `None` for descriptors that are neither (artifacts).
    fn visit(&mut self, d: &Descriptor, depth: usize) -> Result<Option<Arc<ImageNode>>> {
        if let Some(node) = self.done.get(&d.digest) {
            return Ok(Some(node.clone()));
        }
        if depth > oci::MAX_INDEX_DEPTH || self.visiting.contains(&d.digest) {
            return Err(self.invalid(&d.digest, "indexes nest too deep or refer to themselves"));
        }
        let hinted = oci::kind_of_media_type(&d.media_type);
        if hinted == Some(DocKind::Other) {
            self.add_blob_unverified(d, BlobRole::Other)?;
            return Ok(None);
        }
        let bytes = self.load_doc(d, BlobUse::Manifest)?;
        let doc: serde_json::Value = parse_json(&bytes, &self.raw.path, &blob_name(&d.digest))?;
        let node = match hinted.unwrap_or_else(|| oci::kind_of_document(&doc)) {
            DocKind::Index => {
                self.visiting.push(d.digest.clone());
                let node = self.visit_index(d, &doc, depth);
                self.visiting.pop();
                self.set_role(&d.digest, BlobRole::Index);
                node?
            }
            DocKind::Manifest => self.visit_manifest(d, &doc)?,
            DocKind::Schema1 => {
                return Err(SourceError::Unsupported {
                    path: self.raw.path.clone(),
                    reason: format!("{} is a Docker schema1 manifest, which imgfs does not read", d.digest),
                })
            }
            DocKind::Other => return Ok(None),
        };
        let node = Arc::new(node);
        self.done.insert(d.digest.clone(), node.clone());
        Ok(Some(node))
    }

    fn visit_index(&mut self, d: &Descriptor, doc: &serde_json::Value, depth: usize) -> Result<ImageNode> {
        let file = blob_name(&d.digest);
        let mut children: Vec<(String, Arc<ImageNode>)> = Vec::new();
        let mut names = std::collections::HashSet::new();
        let children_descs =
            oci::index_manifests(doc).map_err(|e| SourceError::descriptor(e, &self.raw.path, &file))?;
        for child in children_descs {
            let Some(node) = self.visit(&child, depth + 1)? else {
                continue;
            };
            let by_platform = child.platform.as_ref().and_then(platform::dir_name);
            let name = match by_platform {
                Some(n) if !names.contains(&n) => n,
                _ => child.digest.to_string(),
            };
            if names.insert(name.clone()) {
                children.push((name, node));
            }
        }
        let converted = oci::convert::index(doc, &|child| self.converted(&child.parse().ok()?));
        let oci_digest = converted.map(|bytes| self.add_converted(bytes, BlobRole::Index));
        Ok(ImageNode::Index {
            digest: d.digest.clone(),
            oci_digest,
            children,
        })
    }

    fn visit_manifest(&mut self, d: &Descriptor, doc: &serde_json::Value) -> Result<ImageNode> {
        let file = blob_name(&d.digest);
        let (config, layer_list) = oci::manifest_parts(doc)
            .ok_or_else(|| self.invalid(&d.digest, "manifest has no config"))?
            .map_err(|e| SourceError::descriptor(e, &self.raw.path, &file))?;
        let config_bytes = self.load_doc(&config, BlobUse::Config)?;
        self.set_role(&config.digest, BlobRole::Config);
        let summary: oci::ConfigSummary = parse_json(&config_bytes, &self.raw.path, &blob_name(&config.digest))?;
        let platform = platform::dir_name(&serde_json::json!({
            "os": summary.os, "architecture": summary.architecture, "variant": summary.variant,
        }));
        let diff_ids = summary.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        let mut layers = Vec::new();
        for (i, l) in layer_list.into_iter().enumerate() {
            let present = self.add_layer(&l)?;
            layers.push(LayerInfo {
                digest: l.digest,
                media_type: l.media_type,
                size: l.size,
                diff_id: diff_ids.get(i).cloned(),
                present,
            });
        }
        let media_type = if d.media_type.is_empty() {
            oci::MT_OCI_MANIFEST.to_owned()
        } else {
            d.media_type.clone()
        };
        self.set_role(&d.digest, BlobRole::Manifest);
        let oci_digest = oci::convert::manifest(doc).map(|bytes| self.add_converted(bytes, BlobRole::Manifest));
        Ok(ImageNode::Manifest(ManifestInfo {
            digest: d.digest.clone(),
            media_type,
            config: config.digest,
            platform,
            layers,
            oci_digest,
        }))
    }

    /// Records a layer; a missing foreign/non-distributable layer is allowed (and not shown).
    fn add_layer(&mut self, l: &Descriptor) -> Result<bool> {
        match self.raw.blob(l, BlobUse::Layer)? {
            Some(data) => {
                self.check_size(l, data.len(), "layer")?;
                self.blobs.entry(l.digest.clone()).or_insert(BlobInfo {
                    data,
                    role: BlobRole::Layer,
                    verified: false,
                });
                Ok(true)
            }
            None if oci::is_foreign_layer(&l.media_type) => {
                log::info!(
                    "{}: foreign layer {} is not in the source; not shown",
                    self.raw.path.display(),
                    l.digest
                );
                Ok(false)
            }
            None => Err(self.missing(&l.digest, "layer")),
        }
    }

    fn add_blob_unverified(&mut self, d: &Descriptor, role: BlobRole) -> Result<()> {
        if let Some(data) = self.raw.blob(d, BlobUse::Other)? {
            self.check_size(d, data.len(), "blob")?;
            self.blobs.entry(d.digest.clone()).or_insert(BlobInfo {
                data,
                role,
                verified: false,
            });
        }
        Ok(())
    }

    /// Loads a small document, checking size and digest before anything parses it.
    fn load_doc(&mut self, d: &Descriptor, used: BlobUse) -> Result<Vec<u8>> {
        let what = match used {
            BlobUse::Config => "config",
            _ => "manifest",
        };
        let data = self.raw.blob(d, used)?.ok_or_else(|| self.missing(&d.digest, what))?;
        self.check_size(d, data.len(), what)?;
        let bytes = read_small(data.as_ref(), &self.raw.path, &blob_name(&d.digest))?;
        let actual = d.digest.same_alg_of(&bytes);
        if actual != d.digest {
            return Err(SourceError::DigestMismatch {
                path: self.raw.path.clone(),
                digest: d.digest.clone(),
                what: what.to_owned(),
                actual,
            });
        }
        self.blobs.insert(
            d.digest.clone(),
            BlobInfo {
                data,
                role: BlobRole::Other,
                verified: true,
            },
        );
        Ok(bytes)
    }

    /// Adds a converted document to the blobs and returns its digest.
    fn add_converted(&mut self, bytes: Vec<u8>, role: BlobRole) -> Digest {
        let digest = Digest::sha256_of(&bytes);
        self.blobs.entry(digest.clone()).or_insert(BlobInfo {
            data: Arc::new(bytes),
            role,
            verified: true,
        });
        digest
    }

    /// For a visited document with an OCI conversion: the conversion's (digest, size, media
    /// type), as an index entry pointing at it must say.
    fn converted(&self, original: &Digest) -> Option<oci::convert::Target> {
        let node = self.done.get(original)?;
        let digest = node.oci_digest()?;
        let size = self.blobs.get(digest)?.data.len();
        Some((digest.to_string(), size, node.oci_media_type()))
    }

    fn set_role(&mut self, digest: &Digest, role: BlobRole) {
        if let Some(b) = self.blobs.get_mut(digest) {
            b.role = role;
        }
    }

    fn check_size(&self, d: &Descriptor, actual: u64, what: &str) -> Result<()> {
        if actual == d.size {
            return Ok(());
        }
        Err(SourceError::SizeMismatch {
            path: self.raw.path.clone(),
            digest: d.digest.clone(),
            what: what.to_owned(),
            expected: d.size,
            actual,
        })
    }

    fn missing(&self, digest: &Digest, what: &str) -> SourceError {
        SourceError::MissingBlob {
            path: self.raw.path.clone(),
            digest: digest.clone(),
            what: what.to_owned(),
        }
    }

    fn invalid(&self, digest: &Digest, reason: &str) -> SourceError {
        SourceError::Invalid {
            path: self.raw.path.clone(),
            file: blob_name(digest),
            reason: reason.to_owned(),
        }
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFiles;
    use std::sync::Mutex;

    /// A remote source that holds only the top index at first and records what it is asked.
    struct FakeRemote {
        blobs: BTreeMap<Digest, Vec<u8>>,
        held: Mutex<HashSet<Digest>>,
        asked: Arc<Asked>,
    }

    #[derive(Default)]
    struct Asked {
        prefetches: Mutex<Vec<Vec<(Digest, BlobUse)>>>,
        fetched_one_by_one: Mutex<Vec<Digest>>,
    }

    impl Fetch for FakeRemote {
        fn open(&self, d: &Descriptor, used: BlobUse) -> Result<Option<Arc<dyn ReadAt>>> {
            if used != BlobUse::Layer && !self.held.lock().unwrap().contains(&d.digest) {
                self.asked.fetched_one_by_one.lock().unwrap().push(d.digest.clone());
            }
            Ok(self
                .blobs
                .get(&d.digest)
                .map(|b| Arc::new(b.clone()) as Arc<dyn ReadAt>))
        }
        fn held(&self, digest: &Digest) -> Option<Arc<dyn ReadAt>> {
            let held = self.held.lock().unwrap().contains(digest);
            held.then(|| Arc::new(self.blobs[digest].clone()) as Arc<dyn ReadAt>)
        }
        fn prefetch(&self, docs: &[(Descriptor, BlobUse)]) {
            let mut batch: Vec<_> = docs.iter().map(|(d, u)| (d.digest.clone(), *u)).collect();
            batch.sort_by(|a, b| a.0.cmp(&b.0));
            self.held.lock().unwrap().extend(batch.iter().map(|(d, _)| d.clone()));
            self.asked.prefetches.lock().unwrap().push(batch);
        }
    }

    fn add(blobs: &mut BTreeMap<Digest, Vec<u8>>, doc: serde_json::Value) -> (Digest, u64) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        let d = Digest::sha256_of(&bytes);
        let size = bytes.len() as u64;
        blobs.insert(d.clone(), bytes);
        (d, size)
    }

    /// An index by tag with two platforms, as the registry source gives it (index.json names the
    /// host's manifest and the whole index): the walk asks for the two manifests in one request,
    /// then the two configs in one, and opens nothing one by one.
    #[test]
    fn a_remote_source_is_asked_for_one_level_at_a_time() {
        let mut blobs = BTreeMap::new();
        let mut manifests = Vec::new();
        let mut configs = Vec::new();
        for arch in ["amd64", "arm64"] {
            let (layer, layer_size) = add(&mut blobs, serde_json::json!(format!("not a tar: {arch}")));
            let (config, config_size) = add(
                &mut blobs,
                serde_json::json!({"os": "linux", "architecture": arch, "rootfs": {"type": "layers", "diff_ids": []}}),
            );
            let (m, m_size) = add(
                &mut blobs,
                serde_json::json!({
                    "schemaVersion": 2, "mediaType": oci::MT_OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": layer_size}],
                }),
            );
            configs.push(config);
            manifests.push((m, m_size, arch));
        }
        let entries: Vec<serde_json::Value> = manifests
            .iter()
            .map(|(d, size, arch)| {
                serde_json::json!({"mediaType": oci::MT_OCI_MANIFEST, "digest": d.to_string(), "size": size,
                    "platform": {"os": "linux", "architecture": arch}})
            })
            .collect();
        let (index, index_size) = add(
            &mut blobs,
            serde_json::json!({"schemaVersion": 2, "mediaType": oci::MT_OCI_INDEX, "manifests": entries}),
        );
        let (chosen, chosen_size, _) = &manifests[1];
        let index_json = oci::synthesize_index(&[
            Descriptor::new(oci::MT_OCI_MANIFEST, chosen.clone(), *chosen_size).with_ref_name(Some("img:1")),
            Descriptor::new(oci::MT_OCI_INDEX, index.clone(), index_size).with_ref_name(Some("img:1@index")),
        ]);
        let asked = Arc::new(Asked::default());
        let remote = FakeRemote {
            blobs,
            held: Mutex::new([index.clone()].into()),
            asked: asked.clone(),
        };
        let raw = RawLayout {
            format: Format::Registry,
            path: PathBuf::from("docker://example/img:1"),
            mtime: SystemTime::UNIX_EPOCH,
            oci_layout: crate::source::OCI_LAYOUT_BYTES.to_vec(),
            index_json,
            extras: Vec::new(),
            known_blobs: BTreeMap::new(),
            files: SourceFiles::Remote(Box::new(remote)),
            selector: None,
        };
        let set = ImageSet::load(raw).unwrap();
        assert_eq!(set.refs.len(), 2);
        let mut want_manifests: Vec<_> = manifests.iter().map(|(d, ..)| (d.clone(), BlobUse::Manifest)).collect();
        want_manifests.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want_configs: Vec<_> = configs.iter().map(|d| (d.clone(), BlobUse::Config)).collect();
        want_configs.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(*asked.prefetches.lock().unwrap(), [want_manifests, want_configs]);
        assert!(asked.fetched_one_by_one.lock().unwrap().is_empty());
        assert_eq!(set.blobs.values().filter(|b| b.role == BlobRole::Layer).count(), 2);
    }
}
