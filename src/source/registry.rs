//! A registry image as a source: `docker://REGISTRY/REPO[:TAG][@DIGEST]` (and bare `HOST/REPO...`)
//! turned into the same [`RawLayout`] the local formats give, so the rest of imgfs cannot tell.
//!
//! Opening a reference fetches the manifest or index the reference names. Everything below it is
//! fetched when `crate::image`'s walk (the one every source goes through) asks, through
//! [`Fetch`]: the walk's prefetch hints ask for a whole level at once (every manifest an index
//! lists, then their configs), fetched concurrently, verified, and kept in memory and in the
//! cache. Layers are not fetched: each is a [`RemoteReader`] that reads ranges on demand or
//! downloads once into the cache when a view indexes it. The synthesized `index.json` names the chosen
//! image by its full reference (`quay.io/org/img:1`; the host platform, or `--platform`, out of a
//! multi-platform index) and, for an index, the whole index `<reference>@index`. docs/registry.md
//! has the details and the reasons.

use super::{BlobUse, Fetch, Format, RawLayout, SourceFiles, MAX_JSON_BYTES, OCI_LAYOUT_BYTES};
use crate::blob::ReadAt;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::oci::{self, Descriptor, DescriptorError, DocKind};
use crate::registry::blob::{BlockCache, RemoteBlob, RemoteReader};
use crate::registry::client::Client;
use crate::registry::{ImageRef, Platform, RegistryError, RegistryOptions};
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Opens a registry image (the reference `SourceRef::parse` read) as a raw layout: fetches the
/// manifest or index the reference names and synthesizes index.json from it; everything below
/// is fetched when `crate::image`'s walk asks ([`RegistryBlobs`]).
pub fn open(image: &ImageRef, opts: &RegistryOptions, cache: &Cache) -> Result<RawLayout, RegistryError> {
    let name = format!("docker://{image}");
    let platform = match &opts.platform {
        Some(p) => Some(Platform::parse(p).map_err(|e| RegistryError::Setup {
            reference: name.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let found = crate::registry::client::find_credentials(image, opts)?;
    match &found {
        Some(f) => log::info!("{name}: credentials from {}", f.origin),
        None => log::info!("{name}: no credentials found; anonymous"),
    }
    let client = Arc::new(Client::connect(image, found.as_ref().map(|f| &f.creds), opts)?);
    let blobs = RegistryBlobs {
        client,
        cache: cache.clone(),
        name: name.clone(),
        docs: Mutex::new(BTreeMap::new()),
        layers: Mutex::new(BTreeMap::new()),
        blocks: BlockCache::new(),
    };
    let (top, top_bytes) = blobs.top(image)?;
    let entries = index_entries(image, &top, &top_bytes, platform.as_ref(), &name)?;
    blobs.keep(top.digest.clone(), Ok(Arc::new(top_bytes)));
    Ok(RawLayout {
        format: Format::Registry,
        files: SourceFiles::Remote(Box::new(blobs)),
        path: PathBuf::from(&name),
        mtime: SystemTime::UNIX_EPOCH,
        oci_layout: OCI_LAYOUT_BYTES.to_vec(),
        index_json: oci::synthesize_index(&entries),
        extras: Vec::new(),
        known_blobs: BTreeMap::new(),
        selector: None,
    })
}

/// The synthesized index.json entries: the chosen image as its reference, plus the whole index as
/// `<reference>@index` when a platform was picked out of one.
fn index_entries(
    image: &ImageRef,
    top: &Descriptor,
    top_bytes: &[u8],
    platform: Option<&Platform>,
    name: &str,
) -> Result<Vec<Descriptor>, RegistryError> {
    let ref_name = image.ref_name();
    let top_entry =
        |ref_name: &str| Descriptor::new(&top.media_type, top.digest.clone(), top.size).with_ref_name(Some(ref_name));
    if oci::kind_of_media_type(&top.media_type) != Some(DocKind::Index) {
        return Ok(vec![top_entry(&ref_name)]);
    }
    let children = children_of(top_bytes, name, &top.digest)?;
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

/// A document fetched, or why fetching it failed.
type Fetched = Result<Arc<Vec<u8>>, RegistryError>;

/// The blobs of a registry image, for the walk: documents fetched (concurrently on a
/// [`Fetch::prefetch`] hint), verified and kept in memory and in the cache; layers as
/// [`RemoteReader`]s, one per digest, that read on demand.
struct RegistryBlobs {
    client: Arc<Client>,
    cache: Cache,
    /// `docker://...` for messages.
    name: String,
    /// Documents fetched, or why fetching one failed (taken by the `open` that reports it).
    docs: Mutex<BTreeMap<Digest, Fetched>>,
    layers: Mutex<BTreeMap<Digest, Arc<dyn ReadAt>>>,
    blocks: Arc<BlockCache>,
}

impl Fetch for RegistryBlobs {
    fn open(&self, d: &Descriptor, used: BlobUse) -> super::Result<Option<Arc<dyn ReadAt>>> {
        if used == BlobUse::Layer {
            // Foreign layers live elsewhere (their `urls`): left out, as for local sources
            // that lack them.
            if oci::is_foreign_layer(&d.media_type) {
                return Ok(None);
            }
            let mut layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
            let reader = layers.entry(d.digest.clone()).or_insert_with(|| {
                let blob = RemoteBlob::new(
                    self.client.clone(),
                    d.digest.clone(),
                    d.size,
                    self.cache.dir(),
                    self.blocks.clone(),
                );
                Arc::new(RemoteReader(blob))
            });
            return Ok(Some(reader.clone()));
        }
        if self.held(&d.digest).is_none() {
            self.prefetch(&[(d.clone(), used)]);
        }
        let mut docs = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
        match docs.remove(&d.digest) {
            Some(Ok(bytes)) => {
                docs.insert(d.digest.clone(), Ok(bytes.clone()));
                Ok(Some(bytes))
            }
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    fn held(&self, digest: &Digest) -> Option<Arc<dyn ReadAt>> {
        let docs = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
        match docs.get(digest) {
            Some(Ok(bytes)) => Some(bytes.clone()),
            _ => None,
        }
    }

    /// Fetches the documents not held yet concurrently (configs through the blob endpoint,
    /// manifests and anything else an index names through the manifest endpoint), checking
    /// size and digest of each before keeping it.
    fn prefetch(&self, docs: &[(Descriptor, BlobUse)]) {
        let mut unique: BTreeMap<Digest, (&Descriptor, BlobUse)> = BTreeMap::new();
        {
            let held = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
            for (d, used) in docs {
                if *used != BlobUse::Layer && !held.contains_key(&d.digest) {
                    unique.entry(d.digest.clone()).or_insert((d, *used));
                }
            }
        }
        if unique.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let fetches = unique.values().map(|&(d, used)| async move {
            let r = self.fetch(d, used).await;
            (d.digest.clone(), r)
        });
        let results = self.client.block_on(join_all(fetches));
        log::info!(
            "{}: {} documents fetched and verified in {:.0} ms",
            self.name,
            results.iter().filter(|(_, r)| r.is_ok()).count(),
            started.elapsed().as_secs_f64() * 1e3
        );
        for (digest, r) in results {
            self.keep(digest, r.map(Arc::new));
        }
    }
}

impl RegistryBlobs {
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
        let media_type = media_type_of(&doc, &self.name, &what)?;
        self.store_doc(&digest, &bytes);
        Ok((Descriptor::new(&media_type, digest, bytes.len() as u64), bytes))
    }

    fn keep(&self, digest: Digest, r: Fetched) {
        let mut docs = self.docs.lock().unwrap_or_else(PoisonError::into_inner);
        docs.insert(digest, r);
    }

    /// One document, from the cache or the registry, verified.
    async fn fetch(&self, d: &Descriptor, used: BlobUse) -> Result<Vec<u8>, RegistryError> {
        let what = if used == BlobUse::Config { "config" } else { "manifest" };
        if d.size > MAX_JSON_BYTES {
            return Err(self.invalid(
                what,
                &d.digest,
                format!("{} bytes is too large for a JSON document", d.size),
            ));
        }
        let bytes = match self.cached_doc(&d.digest) {
            Some(b) => b,
            None if used == BlobUse::Config => self.client.small_blob(&d.digest, d.size).await?,
            None => self.client.manifest(&d.digest.to_string()).await?,
        };
        self.check_digest(&format!("{what} {}", d.digest), &d.digest, &bytes)?;
        if d.size != bytes.len() as u64 {
            return Err(self.invalid(
                what,
                &d.digest,
                format!("is {} bytes, its descriptor says {}", bytes.len(), d.size),
            ));
        }
        self.store_doc(&d.digest, &bytes);
        Ok(bytes)
    }

    fn check_digest(&self, what: &str, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
        let actual = digest.same_alg_of(bytes);
        if &actual == digest {
            return Ok(());
        }
        Err(RegistryError::DigestMismatch {
            reference: self.name.clone(),
            what: what.split(' ').next().unwrap_or(what).to_owned(),
            digest: digest.clone(),
            actual,
        })
    }

    fn parse(&self, what: &str, bytes: &[u8]) -> Result<serde_json::Value, RegistryError> {
        serde_json::from_slice(bytes).map_err(|e| RegistryError::Invalid {
            reference: self.name.clone(),
            what: what.to_owned(),
            reason: format!("not valid JSON ({e})"),
        })
    }

    fn invalid(&self, what: &str, digest: &Digest, reason: String) -> RegistryError {
        RegistryError::Invalid {
            reference: self.name.clone(),
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
