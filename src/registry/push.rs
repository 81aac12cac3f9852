//! Writing to a repository: blobs (one monolithic upload each: POST, then PUT with the digest)
//! and manifests by digest or tag, after a token with `pull,push` scope. Used by
//! `imgfs index push` (`crate::published`); mounts never write.
//!
//! Credentials are the ones `Client::connect` was given (flags, creds file, auth files): never
//! logged, and every message goes through the client's redaction.

use super::client::Client;
use super::RegistryError;
use crate::digest::Digest;
use oci_client::RegistryOperation;

impl Client {
    /// Asks for a token that may push to this repository (`repository:NAME:pull,push`), or
    /// checks the basic-auth credentials. Needed once before the writes below.
    pub fn login_push(&self) -> Result<(), RegistryError> {
        let target = self.target(&self.image.selector());
        self.block_on(self.retrying("push access to the repository", || async {
            self.oci
                .auth(&target, &self.auth, RegistryOperation::Push)
                .await
                .map(|_| ())
        }))
    }

    /// Runs a write; a 401 (the push token expired: the client's own re-authentication asks for
    /// a pull token) gets one new push token and one more try.
    fn with_push_token<T>(&self, op: impl Fn() -> Result<T, RegistryError>) -> Result<T, RegistryError> {
        match op() {
            Err(RegistryError::Unauthorized { .. }) => {
                self.login_push()?;
                op()
            }
            r => r,
        }
    }

    /// True when the repository has blob `digest` (HEAD).
    pub fn has_blob(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let target = self.target(&self.image.selector());
        let what = format!("blob {digest}");
        let d = digest.to_string();
        self.block_on(self.retrying(&what, || self.oci.blob_exists(&target, &d)))
    }

    /// Uploads `bytes` as blob `digest` unless the repository has it already.
    pub fn push_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
        if self.has_blob(digest)? {
            log::info!("{}: blob {digest} is already there", self.name());
            return Ok(());
        }
        let target = self.target(&self.image.selector());
        let what = format!("upload of blob {digest}");
        let d = digest.to_string();
        self.with_push_token(|| {
            self.block_on(self.retrying(&what, || self.oci.push_blob(&target, bytes.to_vec(), &d)))
        })?;
        log::info!("{}: uploaded blob {digest} ({} bytes)", self.name(), bytes.len());
        Ok(())
    }

    /// Stores a manifest or index under `selector` (its digest, or a tag).
    pub fn push_manifest(&self, selector: &str, media_type: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let target = self.target(selector);
        let what = format!("upload of manifest {selector}");
        let content_type = http::HeaderValue::from_str(media_type).map_err(|_| RegistryError::Setup {
            reference: self.name().to_owned(),
            reason: format!("media type {media_type:?} is not a valid header value"),
        })?;
        self.with_push_token(|| {
            self.block_on(self.retrying(&what, || {
                self.oci
                    .push_manifest_raw(&target, bytes.to_vec(), content_type.clone())
            }))
        })?;
        Ok(())
    }
}
