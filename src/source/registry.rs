//! A registry image as a source: `docker://REGISTRY/REPO[:TAG][@DIGEST]` (and bare `HOST/REPO...`)
//! turned into the same [`RawLayout`] the local formats give, so the rest of imgfs cannot tell.
//!
//! Opening a reference fetches, verifies and keeps in memory the small documents: the manifest or
//! index the reference names, every manifest an index lists (every platform), and their configs.
//! Layers are not fetched: each is a [`RemoteReader`] that reads ranges on demand or downloads
//! once into the cache when a view indexes it. The synthesized `index.json` names the chosen
//! image by its full reference (`quay.io/org/img:1`; the host platform, or `--platform`, out of a
//! multi-platform index) and, for an index, the whole index `<reference>@index`. docs/registry.md
//! has the details and the reasons.

use super::{Format, RawLayout, SourceFiles, MAX_JSON_BYTES, OCI_LAYOUT_BYTES};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::oci::{self, Descriptor, DescriptorError, DocKind};
use crate::registry::blob::{BlockCache, RemoteBlob, RemoteReader};
use crate::registry::client::Client;
use crate::registry::{auth, ImageRef, Platform, RegistryError, RegistryOptions};
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// What the walk found.
#[derive(Default)]
struct Found {
    docs: BTreeMap<Digest, Arc<Vec<u8>>>,
    layers: BTreeMap<Digest, u64>,
}

/// Opens a registry image (the reference `SourceRef::parse` read) as a raw layout.
pub fn open(image: &ImageRef, opts: &RegistryOptions, cache: &Cache) -> Result<RawLayout, RegistryError> {
    let name = format!("docker://{image}");
    let platform = match &opts.platform {
        Some(p) => Some(Platform::parse(p).map_err(|e| RegistryError::Setup {
            reference: name.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let found =
        auth::find(image, opts.creds.as_ref(), opts.authfile.as_deref()).map_err(|source| RegistryError::Auth {
            reference: name.clone(),
            source,
        })?;
    match &found {
        Some(f) => log::info!("{name}: credentials from {}", f.origin),
        None => log::info!("{name}: no credentials found; anonymous"),
    }
    let started = std::time::Instant::now();
    let client = Arc::new(Client::connect(image, found.as_ref().map(|f| &f.creds), opts)?);
    let walker = Walker {
        client: &client,
        cache,
        name: &name,
    };
    let (top, top_bytes) = walker.top(image)?;
    let mut found = Found::default();
    found.docs.insert(top.digest.clone(), Arc::new(top_bytes));
    walker.walk(vec![top.clone()], &mut found)?;
    let entries = index_entries(image, &top, &found, platform.as_ref(), &name)?;
    log::info!(
        "{name}: {} documents fetched and verified in {:.0} ms",
        found.docs.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let blocks = BlockCache::new();
    let mut known: BTreeMap<Digest, Arc<dyn crate::blob::ReadAt>> = BTreeMap::new();
    for (d, size) in &found.layers {
        let blob = RemoteBlob::new(client.clone(), d.clone(), *size, cache.dir(), blocks.clone());
        known.insert(d.clone(), Arc::new(RemoteReader(blob)));
    }
    for (d, bytes) in found.docs {
        known.insert(d, Arc::new(bytes.as_ref().clone()));
    }
    let path = PathBuf::from(&name);
    Ok(RawLayout {
        format: Format::Registry,
        files: SourceFiles::None,
        path,
        mtime: SystemTime::UNIX_EPOCH,
        oci_layout: OCI_LAYOUT_BYTES.to_vec(),
        index_json: oci::synthesize_index(&entries),
        extras: Vec::new(),
        known_blobs: known,
        selector: None,
    })
}

/// The synthesized index.json entries: the chosen image as its reference, plus the whole index as
/// `<reference>@index` when a platform was picked out of one.
fn index_entries(
    image: &ImageRef,
    top: &Descriptor,
    found: &Found,
    platform: Option<&Platform>,
    name: &str,
) -> Result<Vec<Descriptor>, RegistryError> {
    let ref_name = image.ref_name();
    let top_entry =
        |ref_name: &str| Descriptor::new(&top.media_type, top.digest.clone(), top.size).with_ref_name(Some(ref_name));
    if oci::kind_of_media_type(&top.media_type) != Some(DocKind::Index) {
        return Ok(vec![top_entry(&ref_name)]);
    }
    let children = found
        .docs
        .get(&top.digest)
        .map(|b| children_of(b, name, &top.digest))
        .transpose()?
        .unwrap_or_default();
    let images: Vec<&Descriptor> = children
        .iter()
        .filter(|c| oci::kind_of_media_type(&c.media_type) == Some(DocKind::Manifest))
        .collect();
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let pick = images
        .iter()
        .find(|c| c.platform.as_ref().is_some_and(|p| wanted.matches(p)));
    match pick {
        Some(c) => {
            log::info!("{name}: platform {wanted}: manifest {}", c.digest);
            let mut chosen = Descriptor::new(&c.media_type, c.digest.clone(), c.size).with_ref_name(Some(&ref_name));
            chosen.platform = c.platform.clone();
            Ok(vec![chosen, top_entry(&format!("{ref_name}@index"))])
        }
        None if platform.is_none() => {
            log::warn!("{name}: no image for this host's platform {wanted}; showing the whole index");
            Ok(vec![top_entry(&ref_name)])
        }
        None => {
            let available: Vec<String> = images
                .iter()
                .filter_map(|c| c.platform.as_ref().and_then(crate::oci::platform::dir_name))
                .map(|n| n.replace('-', "/"))
                .collect();
            Err(RegistryError::NoPlatform {
                reference: name.to_owned(),
                wanted: wanted.to_string(),
                available: available.join(", "),
            })
        }
    }
}

/// Fetches documents, concurrently per level of the graph.
struct Walker<'a> {
    client: &'a Client,
    cache: &'a Cache,
    name: &'a str,
}

impl Walker<'_> {
    /// The manifest or index the reference names: by tag (whatever the registry answers), or
    /// by digest (pinned: the bytes must hash to it).
    fn top(&self, image: &ImageRef) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        let selector = image.selector();
        let what = format!("manifest {selector}");
        // Always asked for, even when pinned and cached: the repository must have it (and
        // may require credentials for it).
        let bytes = self.client.block_on(self.client.manifest(&selector))?;
        let digest = match &image.digest {
            Some(d) => {
                self.check_digest(&what, d, &bytes)?;
                d.clone()
            }
            None => Digest::sha256_of(&bytes),
        };
        if image.digest.is_none() {
            log::info!("{}: {selector} is {digest}", self.name);
        }
        let doc = self.parse(&what, &bytes)?;
        let media_type = media_type_of(&doc, self.name, &what)?;
        self.store_doc(&digest, &bytes);
        Ok((Descriptor::new(&media_type, digest, bytes.len() as u64), bytes))
    }

    /// Fetches everything below `level`: manifests of indexes, then configs of manifests.
    fn walk(&self, mut level: Vec<Descriptor>, found: &mut Found) -> Result<(), RegistryError> {
        for _ in 0..=oci::MAX_INDEX_DEPTH {
            let mut next = Vec::new();
            let mut configs = Vec::new();
            for d in &level {
                let bytes = found.docs.get(&d.digest).cloned().unwrap_or_default();
                match oci::kind_of_media_type(&d.media_type) {
                    Some(DocKind::Index) => next.extend(children_of(&bytes, self.name, &d.digest)?),
                    Some(DocKind::Manifest) => {
                        let (config, layers) = parts_of(&bytes, self.name, &d.digest)?;
                        configs.push(config);
                        for l in layers {
                            // Foreign layers live elsewhere (their `urls`): left out, as for
                            // local sources that lack them.
                            if !oci::is_foreign_layer(&l.media_type) {
                                found.layers.insert(l.digest, l.size);
                            }
                        }
                    }
                    _ => {}
                }
            }
            next.retain(|d| !found.docs.contains_key(&d.digest));
            configs.retain(|d| !found.docs.contains_key(&d.digest));
            self.fetch_all(&configs, true, found)?;
            if next.is_empty() {
                return Ok(());
            }
            self.fetch_all(&next, false, found)?;
            // Media types of children come from their documents, not only their descriptors.
            level = next
                .into_iter()
                .map(|mut d| {
                    if let Some(b) = found.docs.get(&d.digest) {
                        if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(b) {
                            if let Ok(mt) = media_type_of(&doc, self.name, "") {
                                d.media_type = mt;
                            }
                        }
                    }
                    d
                })
                .collect();
        }
        Err(RegistryError::Invalid {
            reference: self.name.to_owned(),
            what: "image index".into(),
            reason: "indexes nest too deep".into(),
        })
    }

    /// Fetches documents concurrently (configs through the blob endpoint, manifests through
    /// the manifest endpoint), checking size and digest of each.
    fn fetch_all(&self, descs: &[Descriptor], as_blobs: bool, found: &mut Found) -> Result<(), RegistryError> {
        let mut unique: BTreeMap<Digest, &Descriptor> = BTreeMap::new();
        for d in descs {
            unique.entry(d.digest.clone()).or_insert(d);
        }
        let what = if as_blobs { "config" } else { "manifest" };
        let fetches = unique.values().map(|d| async move {
            if d.size > MAX_JSON_BYTES {
                return Err(self.invalid(
                    what,
                    &d.digest,
                    format!("{} bytes is too large for a JSON document", d.size),
                ));
            }
            if let Some(b) = self.cached_doc(&d.digest) {
                return Ok((d.digest.clone(), b));
            }
            let bytes = if as_blobs {
                self.client.small_blob(&d.digest, d.size).await?
            } else {
                self.client.manifest(&d.digest.to_string()).await?
            };
            Ok((d.digest.clone(), bytes))
        });
        for r in self.client.block_on(join_all(fetches)) {
            let (digest, bytes) = r?;
            let desc = unique.get(&digest).copied();
            let label = format!("{what} {digest}");
            self.check_digest(&label, &digest, &bytes)?;
            if let Some(d) = desc {
                if d.size != bytes.len() as u64 {
                    return Err(self.invalid(
                        what,
                        &digest,
                        format!("is {} bytes, its descriptor says {}", bytes.len(), d.size),
                    ));
                }
            }
            self.store_doc(&digest, &bytes);
            found.docs.insert(digest, Arc::new(bytes));
        }
        Ok(())
    }

    fn check_digest(&self, what: &str, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
        let actual = digest.same_alg_of(bytes);
        if &actual == digest {
            return Ok(());
        }
        Err(RegistryError::DigestMismatch {
            reference: self.name.to_owned(),
            what: what.split(' ').next().unwrap_or(what).to_owned(),
            digest: digest.clone(),
            actual,
        })
    }

    fn parse(&self, what: &str, bytes: &[u8]) -> Result<serde_json::Value, RegistryError> {
        serde_json::from_slice(bytes).map_err(|e| RegistryError::Invalid {
            reference: self.name.to_owned(),
            what: what.to_owned(),
            reason: format!("not valid JSON ({e})"),
        })
    }

    fn invalid(&self, what: &str, digest: &Digest, reason: String) -> RegistryError {
        RegistryError::Invalid {
            reference: self.name.to_owned(),
            what: format!("{what} {digest}"),
            reason,
        }
    }

    /// Documents below the top one are kept in the cache by digest (and hashed again whenever
    /// loaded), so a remount fetches only the manifest the reference names.
    fn cached_doc(&self, digest: &Digest) -> Option<Vec<u8>> {
        let bytes = self.cache.load("doc", &cache_key(digest))?;
        (digest.same_alg_of(&bytes) == *digest).then_some(bytes)
    }

    fn store_doc(&self, digest: &Digest, bytes: &[u8]) {
        if self.cache.load("doc", &cache_key(digest)).is_none() {
            self.cache.store("doc", &cache_key(digest), bytes);
        }
    }
}

fn cache_key(d: &Digest) -> String {
    format!("{}-{}", d.algorithm().name(), d.hex())
}

/// The media type of a fetched document, from its own `mediaType` or its shape. The registry
/// may answer with another type than the one asked for; what the bytes say counts.
fn media_type_of(doc: &serde_json::Value, name: &str, what: &str) -> Result<String, RegistryError> {
    let own = doc.get("mediaType").and_then(|m| m.as_str()).filter(|m| !m.is_empty());
    match oci::kind_of_document(doc) {
        DocKind::Schema1 => Err(RegistryError::Schema1 {
            reference: name.to_owned(),
        }),
        DocKind::Index => Ok(own.unwrap_or(oci::MT_OCI_INDEX).to_owned()),
        DocKind::Manifest => {
            let config_mt = doc.pointer("/config/mediaType").and_then(|m| m.as_str()).unwrap_or("");
            let guess = if config_mt.starts_with("application/vnd.docker.") {
                oci::MT_DOCKER_MANIFEST
            } else {
                oci::MT_OCI_MANIFEST
            };
            Ok(own.unwrap_or(guess).to_owned())
        }
        DocKind::Other => Err(RegistryError::Invalid {
            reference: name.to_owned(),
            what: what.to_owned(),
            reason: "neither an image manifest nor an image index".into(),
        }),
    }
}

/// A bad descriptor in document `parent` as a registry error.
fn descriptor_error(e: DescriptorError, name: &str, parent: &Digest) -> RegistryError {
    let reason = match &e {
        DescriptorError::BadDigest(d) => format!("a descriptor has a bad digest ({d})"),
        e => e.to_string(),
    };
    RegistryError::Invalid {
        reference: name.to_owned(),
        what: format!("document {parent}"),
        reason,
    }
}

/// The manifests an index lists (none when the document is not an index).
fn children_of(bytes: &[u8], name: &str, digest: &Digest) -> Result<Vec<Descriptor>, RegistryError> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    match oci::index_manifests(&doc) {
        Err(DescriptorError::NoManifests) => Ok(Vec::new()),
        r => r.map_err(|e| descriptor_error(e, name, digest)),
    }
}

/// A manifest's config and layers.
fn parts_of(bytes: &[u8], name: &str, digest: &Digest) -> Result<(Descriptor, Vec<Descriptor>), RegistryError> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    oci::manifest_parts(&doc)
        .ok_or_else(|| RegistryError::Invalid {
            reference: name.to_owned(),
            what: format!("manifest {digest}"),
            reason: "no config".into(),
        })?
        .map_err(|e| descriptor_error(e, name, digest))
}
