//! `imgfs index push SOURCE [REGISTRY-REF]`: index every layer of an image (or take the index
//! from the cache) and publish the indexes as a referrer artifact of the image's manifest in its
//! registry repository (`crate::published` describes the artifact).
//!
//! The image is the one REGISTRY-REF names (the host's platform, or `--platform`, in a
//! multi-platform index): the artifact's subject must be the manifest the registry serves. Its
//! layers are read from SOURCE, which may be a local copy of the image (an OCI layout that
//! `skopeo copy` pushed, say: no download) or the registry reference itself (each layer is then
//! downloaded once into the cache and indexed as it arrives). With `--zstd-checkpoints` the
//! indexes of single-frame zstd layers carry checkpoints and their sparse windows, so that a
//! consumer reads a small file by fetching the compressed bytes from the checkpoint before it.

use super::{artifact_manifest, subjects, IndexBlob, ARTIFACT_TYPE, EMPTY};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::image::ImageSet;
use crate::layer::{LayerError, LayerStore};
use crate::registry::client::Client;
use crate::registry::referrers::{Listed, Referrer};
use crate::registry::{ImageRef, RegistryError, RegistryOptions};
use crate::source::{SourceError, SourceRef, Transport};
use std::sync::Arc;

/// Why an index could not be published.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// Opening SOURCE or the registry image failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The destination is not a registry reference.
    #[error("{reference}: not a registry reference (docker://HOST/REPO[:TAG][@DIGEST])")]
    NotRegistry { reference: String },
    /// The registry reference has no image this host (or `--platform`) would run.
    #[error("{reference}: no image manifest to index (an index without this platform)")]
    NoImage { reference: String },
    /// SOURCE lacks a layer of the registry's image.
    #[error("{source_ref}: has no layer {layer} of {reference} (is it a copy of that image?)")]
    LayerMissing {
        source_ref: String,
        reference: String,
        layer: Digest,
    },
    /// Indexing a layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// What was published for one image.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The image manifest (the artifact's subject).
    pub subject: Digest,
    /// The artifact manifest.
    pub artifact: Digest,
    /// Layers indexed.
    pub layers: usize,
    /// Bytes of all index blobs.
    pub bytes: u64,
    /// How the registry lists the artifact.
    pub listed: Listed,
}

/// Publishes the layer indexes of the image `dest` names (default: `source`, which must then be
/// a registry reference), reading its layers from `source`; with `zstd_checkpoints`, zstd layers
/// are indexed with checkpoints inside their large frames (a cached index without them is built
/// again).
pub fn push(
    source: &str,
    dest: Option<&str>,
    cache: &Cache,
    opts: &RegistryOptions,
    zstd_checkpoints: bool,
) -> Result<Vec<Pushed>, PushError> {
    let dest_text = dest.unwrap_or(source);
    let dest_ref = SourceRef::parse(dest_text)?;
    let Transport::Docker(image) = &dest_ref.transport else {
        return Err(PushError::NotRegistry {
            reference: dest_text.to_owned(),
        });
    };
    let name = format!("docker://{image}");
    let dest_set = Arc::new(ImageSet::load(crate::source::open_with(&dest_ref, cache, opts)?)?);
    let layer_set = match dest {
        Some(_) => Arc::new(ImageSet::load(crate::source::open_with(
            &SourceRef::parse(source)?,
            cache,
            opts,
        )?)?),
        None => dest_set.clone(),
    };
    let images = subjects(&dest_set);
    if images.is_empty() {
        return Err(PushError::NoImage { reference: name });
    }
    let store = LayerStore::new(layer_set.clone(), cache.clone(), Box::new(|_| {}));
    store.set_zstd_checkpoints(zstd_checkpoints);
    let client = connect(image, opts)?;
    client.login_push()?;
    client.push_blob(&Digest::sha256_of(EMPTY), EMPTY)?;
    let mut out = Vec::new();
    for m in images {
        let mut pairs = Vec::new();
        for l in &m.layers {
            if !layer_set.blobs.contains_key(&l.digest) {
                return Err(PushError::LayerMissing {
                    source_ref: source.to_owned(),
                    reference: name.clone(),
                    layer: l.digest.clone(),
                });
            }
            pairs.push((l.digest.clone(), l.diff_id.clone()));
        }
        let layers = store.get_all(&pairs)?;
        let mut blobs = Vec::new();
        let mut bytes = 0;
        for (l, layer) in m.layers.iter().zip(&layers) {
            if let crate::layer::SeekIndex::Zstd(z) = &layer.index.seek {
                log::info!(
                    "{name}: layer {}: {} zstd frames, {} checkpoints",
                    l.digest,
                    z.frames().len(),
                    z.checkpoints().len()
                );
            }
            // The checkpoints' sparse windows may be ranges of the mapped cache file: encoding
            // copies them into the blob like every other field.
            let blob = crate::cache::envelope(&crate::layer::format::encode(&layer.index, l.size));
            if blob.len() as u64 > super::MAX_INDEX_BLOB {
                // Published anyway (a later imgfs may accept more), but said now.
                log::warn!(
                    "{name}: layer {}: its index is {} bytes, more than the {} MiB a consumer fetches; \
                     it will be indexed from its blob there",
                    l.digest,
                    blob.len(),
                    super::MAX_INDEX_BLOB >> 20
                );
            }
            let digest = Digest::sha256_of(&blob);
            client.push_blob(&digest, &blob)?;
            bytes += blob.len() as u64;
            blobs.push((
                l.digest.clone(),
                IndexBlob {
                    digest,
                    size: blob.len() as u64,
                },
            ));
        }
        let size = dest_set.blobs.get(&m.digest).map_or(0, |b| b.data.len());
        let manifest = artifact_manifest((&m.media_type, &m.digest, size), &blobs);
        let artifact = Digest::sha256_of(&manifest);
        client.push_manifest(&artifact.to_string(), crate::oci::MT_OCI_MANIFEST, &manifest)?;
        let entry = Referrer {
            digest: artifact.clone(),
            size: manifest.len() as u64,
            media_type: crate::oci::MT_OCI_MANIFEST.to_owned(),
            artifact_type: Some(ARTIFACT_TYPE.to_owned()),
            annotations: [(super::ANN_FORMAT.to_owned(), super::format_version())].into(),
        };
        let listed = client.add_referrer(&m.digest, ARTIFACT_TYPE, &entry)?;
        log::info!(
            "{name}: index of {} layers published as {artifact} for {} ({listed:?})",
            blobs.len(),
            m.digest
        );
        out.push(Pushed {
            subject: m.digest.clone(),
            artifact,
            layers: blobs.len(),
            bytes,
            listed,
        });
    }
    Ok(out)
}

/// A client of the image's repository with the credentials imgfs finds for it (flags, creds
/// file, auth files, helpers; never logged).
pub(super) fn connect(image: &ImageRef, opts: &RegistryOptions) -> Result<Client, RegistryError> {
    let found = crate::registry::client::find_credentials(image, opts)?;
    Client::connect(image, found.as_ref().map(|f| &f.creds), opts)
}
