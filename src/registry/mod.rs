//! Talking to registries: references, credentials, HTTP, remote blobs, platforms, and the errors
//! of all of them. Opening a registry image as a source (walking its documents into the same
//! `RawLayout` the local formats give) is `source/registry.rs`; this module knows nothing of
//! sources, so data flows one way (docs/architecture.md).
//!
//! - `reference`: parsing, normalization, bare references versus paths;
//! - `auth`: credentials from flags, auth files and credential helpers;
//! - `client`: HTTP through oci-client, with budgets, retries, redaction;
//! - `blob`: a remote blob as a `ReadAt`;
//! - `push`: blob and manifest uploads (`imgfs index push`);
//! - `referrers`: OCI referrers, by the API or the referrers tag schema.

pub mod auth;
pub mod blob;
pub mod client;
pub mod push;
pub mod reference;
pub mod referrers;

use crate::digest::Digest;
pub use client::{parse_timeout, RegistryOptions};
pub use reference::ImageRef;

/// Why a registry image cannot be opened or read. One line, naming the reference
/// (`docker://...`); never a credential, token or URL query.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Credentials could not be read.
    #[error("{reference}: reading credentials")]
    Auth { reference: String, source: auth::AuthError },
    /// Local setup failed (runtime, certificates, options).
    #[error("{reference}: {reason}")]
    Setup { reference: String, reason: String },
    /// The network or the registry failed for good (or for longer than the budget).
    #[error("{reference}: {what}: {reason}")]
    Transport {
        reference: String,
        what: String,
        reason: String,
    },
    /// A transient failure (connection reset, 5xx, 429, a cut stream) lasted longer than the
    /// time budget.
    #[error("{reference}: {what}: {reason}")]
    Unavailable {
        reference: String,
        what: String,
        reason: String,
    },
    /// Connection refused, or the host name does not resolve: not retried within an operation.
    #[error("{reference}: cannot reach the registry: {reason}")]
    Unreachable { reference: String, reason: String },
    /// The TLS handshake failed.
    #[error("{reference}: TLS with the registry failed: {reason}")]
    Tls { reference: String, reason: String },
    /// Nothing came back within the time budget.
    #[error("{reference}: {what}: no answer from the registry within {secs}s")]
    Timeout { reference: String, what: String, secs: f64 },
    /// The registry does not have it.
    #[error("{reference}: {what} not found in the registry")]
    NotFound { reference: String, what: String },
    /// Authentication failed or is needed.
    #[error("{reference}: {what}: {}", unauthorized_text(*with_credentials, reason))]
    Unauthorized {
        reference: String,
        what: String,
        with_credentials: bool,
        reason: String,
    },
    /// A local failure while receiving (a full disk).
    #[error("{reference}: {what}: {reason}")]
    Local {
        reference: String,
        what: String,
        reason: String,
    },
    /// Fetched bytes do not hash to the digest that names them.
    #[error("{reference}: {what} {digest}: the registry sent bytes that hash to {actual}")]
    DigestMismatch {
        reference: String,
        what: String,
        digest: Digest,
        actual: Digest,
    },
    /// A document is not what its descriptor or the format says.
    #[error("{reference}: {what}: {reason}")]
    Invalid {
        reference: String,
        what: String,
        reason: String,
    },
    /// Only a schema1 manifest exists.
    #[error(
        "{reference}: the registry answered with a Docker schema1 manifest, which imgfs does not read \
         (convert the image: skopeo copy --format v2s2)"
    )]
    Schema1 { reference: String },
    /// `--platform` matches nothing in the index.
    #[error("{reference}: no image for platform {wanted} (the index has: {available})")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
}

impl RegistryError {
    /// True when the same request may succeed later without anything changing on this side:
    /// the registry was down, unreachable, slow or overloaded, or the local disk was full.
    /// Wrong bytes, missing objects, refused credentials and bad documents are permanent.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Unavailable { .. }
                | RegistryError::Unreachable { .. }
                | RegistryError::Timeout { .. }
                | RegistryError::Local { .. }
        )
    }
}

fn unauthorized_text(with_credentials: bool, reason: &str) -> String {
    if with_credentials {
        format!("the registry refused the credentials ({reason})")
    } else {
        format!(
            "the registry requires credentials ({reason}); give --creds or --authfile, or log in \
             with docker, podman or skopeo login"
        )
    }
}

/// An image platform as `--platform` spells it: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`...
    pub architecture: String,
    /// `v7`, `v8`..., when given.
    pub variant: Option<String>,
}

/// A `--platform` that is not `OS/ARCH[/VARIANT]`.
#[derive(Debug, thiserror::Error)]
#[error("--platform {0:?}: expected OS/ARCH[/VARIANT]")]
pub struct BadPlatform(pub String);

/// An image that has nothing for the platform asked for (`--image` with `--platform`, or this
/// host's). Text from the image (platform names) is kept on one line by whoever builds it.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// `--platform` is not `OS/ARCH[/VARIANT]`.
    #[error(transparent)]
    Bad(#[from] BadPlatform),
    /// A single-platform image of another platform.
    #[error("image {name:?} is {is}, not {wanted} (--platform picks an image of a multi-platform index)")]
    Other {
        /// The ref.
        name: String,
        /// Its platform, `os/arch[/variant]` or "of no platform".
        is: String,
        /// The platform asked for.
        wanted: String,
    },
    /// An index with no image for the platform.
    #[error(
        "image {name:?} has no image for platform {wanted}{} (it has: {})",
        if *host { ", this host's" } else { "" },
        have.join(", ")
    )]
    Missing {
        /// The ref.
        name: String,
        /// The platform asked for.
        wanted: String,
        /// True when nobody asked: the host's platform was the default.
        host: bool,
        /// The platforms the index has.
        have: Vec<String>,
    },
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Platform, BadPlatform> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: parts.get(2).filter(|v| !v.is_empty()).map(|v| (*v).to_owned()),
            }),
            _ => Err(BadPlatform(text.to_owned())),
        }
    }

    /// The platform this program runs on, in OCI's names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Does an index entry's `platform` object match? Without a variant here, any variant
    /// does; arm64's `v8` is its only variant, so it matches none too.
    pub fn matches(&self, p: &serde_json::Value) -> bool {
        let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let norm = |v: &str| {
            if self.architecture == "arm64" && v == "v8" {
                String::new()
            } else {
                v.to_owned()
            }
        };
        field("os") == self.os
            && field("architecture") == self.architecture
            && self
                .variant
                .as_deref()
                .is_none_or(|v| norm(v) == norm(field("variant")))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = |t: &str| Platform::parse(t).unwrap();
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        let cases = [
            ("linux/amd64", r#"{"os":"linux","architecture":"amd64"}"#, true),
            ("linux/amd64", r#"{"os":"linux","architecture":"arm64"}"#, false),
            (
                "linux/arm",
                r#"{"os":"linux","architecture":"arm","variant":"v7"}"#,
                true,
            ),
            (
                "linux/arm/v6",
                r#"{"os":"linux","architecture":"arm","variant":"v7"}"#,
                false,
            ),
            ("linux/arm64/v8", r#"{"os":"linux","architecture":"arm64"}"#, true),
            (
                "linux/arm64",
                r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#,
                true,
            ),
            ("windows/amd64", r#"{"os":"linux","architecture":"amd64"}"#, false),
        ];
        for (want, platform, ok) in cases {
            assert_eq!(p(want).matches(&v(platform)), ok, "{want} vs {platform}");
        }
        for bad in ["linux", "", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
    }
}
