//! OCI referrers: the artifacts whose `subject` is a given manifest.
//!
//! Reading uses the distribution spec's referrers API (`GET /v2/<name>/referrers/<digest>`,
//! filtered by artifact type) and, when the registry answers 404 there (Distribution 2.8, most
//! registries before 2023), the *referrers tag schema*: the tag `<alg>-<hex>` of the subject
//! holds an image index listing its referrers. Writing follows the spec's client side: after
//! the artifact manifest is pushed, a registry with the API lists it by itself; otherwise the
//! client adds it to the tag's index by read-modify-write. Two clients writing the same tag at
//! the same moment can lose one entry (the spec's known race; Distribution has no conditional
//! PUT): the write is read back and tried again when its entry is missing.

use super::client::Client;
use super::RegistryError;
use crate::digest::Digest;
use std::collections::BTreeMap;

/// Largest referrers index read (the JSON of many entries, not data).
const MAX_REFERRERS_BYTES: usize = 4 << 20;
/// Read-modify-write rounds of the referrers tag before giving up.
const TAG_ROUNDS: usize = 3;

/// One referrer of a manifest, as the referrers list describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The artifact manifest's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type (an image manifest).
    pub media_type: String,
    /// Its `artifactType` (or config media type), when the list gives one.
    pub artifact_type: Option<String>,
    /// The manifest's annotations, as copied into the list.
    pub annotations: BTreeMap<String, String>,
}

/// The referrers tag of `subject`: `<alg>-<hex>`, each part truncated as the spec says (32 and
/// 64 characters).
pub fn tag_of(subject: &Digest) -> String {
    let alg: String = subject.algorithm().name().chars().take(32).collect();
    let hex: String = subject.hex().chars().take(64).collect();
    format!("{alg}-{hex}")
}

impl Client {
    /// The referrers of manifest `subject` whose artifact type is `artifact_type`: from the
    /// referrers API when the registry has it, else from the referrers tag.
    pub fn referrers(&self, subject: &Digest, artifact_type: &str) -> Result<Vec<Referrer>, RegistryError> {
        let target = self.target(&subject.to_string());
        let what = format!("referrers of {subject}");
        let index = self.block_on(self.retrying(&what, || self.oci.pull_referrers(&target, Some(artifact_type))))?;
        let mut out = Vec::new();
        for e in index.manifests {
            let Ok(digest) = e.digest.parse::<Digest>() else {
                log::warn!(
                    "{}: {what}: an entry has a bad digest {:?}; skipped",
                    self.name(),
                    e.digest
                );
                continue;
            };
            out.push(Referrer {
                digest,
                size: u64::try_from(e.size).unwrap_or(0),
                media_type: e.media_type,
                artifact_type: e.artifact_type,
                annotations: e.annotations.unwrap_or_default(),
            });
        }
        // oci-client's tag fallback names the tag without the spec's truncation, which only
        // differs for digests longer than sha256: read ours too.
        if out.is_empty() && subject.algorithm().name() != "sha256" {
            out = self
                .tag_referrers(subject)?
                .iter()
                .filter_map(referrer_of)
                .filter(|r| r.artifact_type.as_deref() == Some(artifact_type))
                .collect();
        }
        out.retain(|r| r.artifact_type.as_deref() == Some(artifact_type));
        Ok(out)
    }

    /// The entries of the referrers tag of `subject` (none when the tag does not exist).
    fn tag_referrers(&self, subject: &Digest) -> Result<Vec<serde_json::Value>, RegistryError> {
        let tag = tag_of(subject);
        let bytes = match self.block_on(self.manifest(&tag)) {
            Ok(b) => b,
            Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let invalid = |reason: &str| RegistryError::Invalid {
            reference: self.name().to_owned(),
            what: format!("referrers tag {tag}"),
            reason: reason.to_owned(),
        };
        if bytes.len() > MAX_REFERRERS_BYTES {
            return Err(invalid("too large"));
        }
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid("not JSON"))?;
        let is_index = doc.get("mediaType").and_then(|m| m.as_str()) == Some(crate::oci::MT_OCI_INDEX);
        match doc.get("manifests").and_then(|m| m.as_array()) {
            Some(list) if is_index => Ok(list.clone()),
            _ => Err(invalid("not an OCI image index (refusing to replace it)")),
        }
    }

    /// Makes the artifact `entry` (its descriptor, with `artifactType` and annotations) a listed
    /// referrer of `subject`. Returns how it is listed: by the registry's referrers API, or in
    /// the referrers tag (added now, or already there).
    pub fn add_referrer(
        &self,
        subject: &Digest,
        artifact_type: &str,
        entry: &Referrer,
    ) -> Result<Listed, RegistryError> {
        // A registry with the referrers API lists the artifact as soon as its manifest is in;
        // without it, this reads the tag, which lists it only if an earlier push added it.
        let listed = self
            .referrers(subject, artifact_type)?
            .iter()
            .any(|r| r.digest == entry.digest);
        let in_tag = || -> Result<bool, RegistryError> {
            let d = entry.digest.to_string();
            Ok(self
                .tag_referrers(subject)?
                .iter()
                .any(|e| e.get("digest").and_then(|v| v.as_str()) == Some(&d)))
        };
        if listed {
            return Ok(if in_tag()? { Listed::Tag } else { Listed::Api });
        }
        let tag = tag_of(subject);
        for _ in 0..TAG_ROUNDS {
            let mut entries = self.tag_referrers(subject)?;
            let d = entry.digest.to_string();
            if !entries
                .iter()
                .any(|e| e.get("digest").and_then(|v| v.as_str()) == Some(&d))
            {
                entries.push(descriptor_json(entry));
            }
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": crate::oci::MT_OCI_INDEX,
                "manifests": entries,
            });
            let bytes = serde_json::to_vec(&index).unwrap_or_default();
            self.push_manifest(&tag, crate::oci::MT_OCI_INDEX, &bytes)?;
            if in_tag()? {
                return Ok(Listed::Tag);
            }
            log::warn!(
                "{}: referrers tag {tag} was changed meanwhile; writing it again",
                self.name()
            );
        }
        Err(RegistryError::Invalid {
            reference: self.name().to_owned(),
            what: format!("referrers tag {tag}"),
            reason: format!("another client kept replacing it; {} is not listed", entry.digest),
        })
    }
}

/// How an artifact is listed as a referrer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// The registry's referrers API lists it.
    Api,
    /// The referrers tag lists it.
    Tag,
}

/// An entry of a referrers index (the spec's descriptor with `artifactType` and annotations).
fn descriptor_json(r: &Referrer) -> serde_json::Value {
    let mut v = serde_json::json!({
        "mediaType": r.media_type,
        "digest": r.digest.to_string(),
        "size": r.size,
    });
    if let Some(t) = &r.artifact_type {
        v["artifactType"] = t.clone().into();
    }
    if !r.annotations.is_empty() {
        v["annotations"] = serde_json::to_value(&r.annotations).unwrap_or_default();
    }
    v
}

/// A referrers index entry read back (`None` when it is not a descriptor).
fn referrer_of(v: &serde_json::Value) -> Option<Referrer> {
    let annotations = v
        .get("annotations")
        .and_then(|a| serde_json::from_value::<BTreeMap<String, String>>(a.clone()).ok())
        .unwrap_or_default();
    Some(Referrer {
        digest: v.get("digest")?.as_str()?.parse().ok()?,
        size: v.get("size")?.as_u64()?,
        media_type: v.get("mediaType")?.as_str()?.to_owned(),
        artifact_type: v.get("artifactType").and_then(|t| t.as_str()).map(str::to_owned),
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrers_tags_follow_the_spec() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(tag_of(&d), format!("sha256-{}", d.hex()));
        let long: Digest = format!("sha512:{}", "a".repeat(128)).parse().unwrap();
        assert_eq!(tag_of(&long), format!("sha512-{}", "a".repeat(64)));
    }

    #[test]
    fn entries_round_trip() {
        let r = Referrer {
            digest: Digest::sha256_of(b"m"),
            size: 42,
            media_type: crate::oci::MT_OCI_MANIFEST.into(),
            artifact_type: Some("application/x".into()),
            annotations: [("k".to_owned(), "v".to_owned())].into(),
        };
        assert_eq!(referrer_of(&descriptor_json(&r)), Some(r));
        assert_eq!(referrer_of(&serde_json::json!({"digest": "nope"})), None);
    }
}
