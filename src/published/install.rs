//! `--published-index` (`-o published_index`): at mount, after the registry image's documents
//! are fetched and verified, find the imgfs index artifact among the referrers of its manifest,
//! fetch the index blobs of the layers the cache does not have, check each as a cache file is
//! checked, and install it as the cache file the index pass would have written. The layer store
//! then finds every layer indexed: the rootfs is listed without a layer byte, and file reads are
//! registry Range reads checked against the index's chunk digests (`blob/verified.rs`).
//!
//! Nothing here fails a mount: no referrer, a registry without referrers, another artifact type,
//! a blob that does not hash to its digest, or an index that fails any check, is one log line,
//! and the layer is indexed from its blob as without the option.

use super::push::connect;
use super::{format_version, parse_artifact, subjects, validate, IndexBlob, Refused, ANN_FORMAT, ARTIFACT_TYPE};
use super::{MAX_ARTIFACT_MANIFEST, MAX_INDEX_BLOB};
use crate::cache::Cache;
use crate::image::{ImageSet, LayerInfo, ManifestInfo};
use crate::registry::client::Client;
use crate::registry::referrers::Referrer;
use crate::registry::{ImageRef, RegistryOptions};
use futures_util::future::join_all;

/// What a layer without a usable published index gets.
const FALLBACK: &str = "indexing from the layer blob";

/// Installs the published indexes of the images of `set` (a registry source opened from
/// `image`) into `cache`. Returns how many layer indexes were installed.
pub fn install(image: &ImageRef, set: &ImageSet, cache: &Cache, opts: &RegistryOptions) -> usize {
    let name = format!("docker://{image}");
    if cache.dir().is_none() {
        log::warn!("{name}: --published-index needs the index cache (not --no-cache); {FALLBACK}");
        return 0;
    }
    let mut client: Option<Client> = None;
    let mut installed = 0;
    for m in subjects(set) {
        let wanted: Vec<&LayerInfo> = m
            .layers
            .iter()
            .filter(|l| l.present && !crate::layer::has_cached_index(cache, &l.digest, l.size))
            .collect();
        if wanted.is_empty() {
            log::info!("{name}: every layer of {} is indexed in the cache", m.digest);
            continue;
        }
        if client.is_none() {
            match connect(image, opts) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    log::warn!("{e}; published index not used; {FALLBACK}");
                    return installed;
                }
            }
        }
        if let Some(c) = &client {
            installed += install_image(c, m, &wanted, cache, &name);
        }
    }
    installed
}

/// The published index of image `m`, installed for the layers in `wanted`.
fn install_image(client: &Client, m: &ManifestInfo, wanted: &[&LayerInfo], cache: &Cache, name: &str) -> usize {
    let referrers = match client.referrers(&m.digest, ARTIFACT_TYPE) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("{name}: cannot list the referrers of {} ({e}); {FALLBACK}", m.digest);
            return 0;
        }
    };
    let chosen = match choose(&referrers) {
        Ok(r) => r,
        Err(reason) => {
            log::info!("{name}: no published index for {}: {reason}; {FALLBACK}", m.digest);
            return 0;
        }
    };
    let blobs = match artifact(client, chosen, m) {
        Ok(b) => b,
        Err(reason) => {
            log::warn!(
                "{name}: published index {} of {} refused: {reason}; {FALLBACK}",
                chosen.digest,
                m.digest
            );
            return 0;
        }
    };
    let mut jobs: Vec<(&LayerInfo, &IndexBlob)> = Vec::new();
    for l in wanted {
        match blobs.get(&l.digest) {
            Some(b) if b.size <= MAX_INDEX_BLOB => jobs.push((l, b)),
            Some(b) => log::warn!(
                "{name}: layer {}: published index {} refused: {} bytes is more than the {} MiB allowed; {FALLBACK}",
                l.digest,
                b.digest,
                b.size,
                MAX_INDEX_BLOB >> 20
            ),
            None => log::warn!(
                "{name}: layer {}: the published index {} has no index of it; {FALLBACK}",
                l.digest,
                chosen.digest
            ),
        }
    }
    let fetches = jobs.iter().map(|(_, b)| client.small_blob(&b.digest, b.size));
    let results = client.block_on(join_all(fetches));
    let mut installed = 0;
    for ((l, b), fetched) in jobs.iter().zip(results) {
        let checked = fetched.map_err(Refused::from).and_then(|bytes| {
            let actual = b.digest.same_alg_of(&bytes);
            if actual != b.digest || bytes.len() as u64 != b.size {
                return Err(Refused::WrongBytes {
                    len: bytes.len(),
                    actual,
                });
            }
            let payload = validate(&bytes, l)?;
            crate::layer::store_index(cache, &l.digest, payload);
            Ok(())
        });
        match checked {
            Ok(()) => {
                installed += 1;
                log::info!(
                    "{name}: layer {}: index installed from the published index {} ({} bytes)",
                    l.digest,
                    b.digest,
                    b.size
                );
            }
            Err(reason) => log::warn!(
                "{name}: layer {}: published index {} refused: {reason}; {FALLBACK}",
                l.digest,
                b.digest
            ),
        }
    }
    installed
}

/// The referrer to use: the last listed (the newest in a referrers tag) of this imgfs's index
/// format.
fn choose(list: &[Referrer]) -> Result<&Referrer, Refused> {
    let ours = format_version();
    if list.is_empty() {
        return Err(Refused::NoReferrer);
    }
    list.iter()
        .rev()
        .find(|r| r.annotations.get(ANN_FORMAT).is_none_or(|v| *v == ours))
        .ok_or_else(|| {
            let theirs: Vec<&str> = list
                .iter()
                .filter_map(|r| r.annotations.get(ANN_FORMAT).map(String::as_str))
                .collect();
            Refused::OtherFormat {
                theirs: theirs.join(", "),
                ours: ours.clone(),
            }
        })
}

/// The artifact manifest of `r`, fetched and checked (digest, size, type, subject).
fn artifact(
    client: &Client,
    r: &Referrer,
    m: &ManifestInfo,
) -> Result<std::collections::BTreeMap<crate::digest::Digest, IndexBlob>, Refused> {
    if r.size > MAX_ARTIFACT_MANIFEST {
        return Err(Refused::ManifestTooLarge(r.size));
    }
    let bytes = client.block_on(client.manifest(&r.digest.to_string()))?;
    let actual = r.digest.same_alg_of(&bytes);
    if actual != r.digest {
        return Err(Refused::WrongManifest(actual));
    }
    parse_artifact(&bytes, &m.digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn referrer(n: u8, format: Option<&str>) -> Referrer {
        Referrer {
            digest: Digest::sha256_of(&[n]),
            size: 1,
            media_type: crate::oci::MT_OCI_MANIFEST.into(),
            artifact_type: Some(ARTIFACT_TYPE.into()),
            annotations: format
                .map(|f| [(ANN_FORMAT.to_owned(), f.to_owned())].into())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn the_newest_index_of_our_format_is_chosen() {
        let ours = format_version();
        let list = [
            referrer(1, Some(&ours)),
            referrer(2, Some("1")),
            referrer(3, Some(&ours)),
        ];
        assert_eq!(choose(&list).unwrap().digest, list[2].digest);
        let old = [referrer(1, Some("1")), referrer(2, Some("3"))];
        assert!(choose(&old).unwrap_err().to_string().contains("format 1, 3"));
        assert!(choose(&[]).is_err());
        assert_eq!(choose(&[referrer(4, None)]).unwrap().digest, Digest::sha256_of(&[4]));
    }
}
