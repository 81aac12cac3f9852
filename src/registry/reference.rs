//! Registry references: what follows `docker://`, or a bare `HOST/NAME[:TAG][@DIGEST]`.
//!
//! Parsing and Docker's normalization (no host means `docker.io`, a one-component name on
//! docker.io gets `library/`, no tag and no digest means `:latest`) come from
//! `oci_client::Reference` (oci-spec's port of Docker's own grammar); this module adds what
//! imgfs decides itself: which bare words are references rather than paths, the endpoint
//! Docker Hub is reached at, and the name a reference gets under `images/`.

use crate::digest::Digest;
use std::path::Path;

/// The host Docker Hub's registry API answers on (`docker.io` is only its name).
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
/// How references name Docker Hub after normalization.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalized registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry as named (`docker.io`, `127.0.0.1:5000`, `quay.io`).
    pub registry: String,
    /// Repository inside the registry (`library/busybox`).
    pub repository: String,
    /// The tag, if the reference has one (`latest` when it has neither tag nor digest).
    pub tag: Option<String>,
    /// The digest a reference is pinned to.
    pub digest: Option<Digest>,
}

/// Why a registry reference does not parse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Not in Docker's reference grammar.
    #[error("{0}")]
    Grammar(#[from] oci_client::ParseError),
    /// Upper case in the repository, which Docker refuses.
    #[error("repository names must be lowercase")]
    Uppercase,
    /// A digest imgfs cannot verify.
    #[error("{0}")]
    Digest(#[from] crate::digest::DigestError),
}

impl ImageRef {
    /// Parses a reference without its `docker://` prefix.
    pub fn parse(text: &str) -> Result<ImageRef, ReferenceError> {
        let r = oci_client::Reference::try_from(text)?;
        // The grammar lets a host-like first component without a dot through as part of the
        // repository (`UPPER/x` on docker.io); Docker refuses upper case in repositories.
        if r.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase);
        }
        let digest = match r.digest() {
            Some(d) => Some(d.parse::<Digest>()?),
            None => None,
        };
        Ok(ImageRef {
            registry: r.registry().to_owned(),
            repository: r.repository().to_owned(),
            tag: r.tag().map(str::to_owned),
            digest,
        })
    }

    /// Host (and port) the HTTP requests go to.
    pub fn endpoint(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            &self.registry
        }
    }

    /// The tag or the digest: what the manifest request asks for.
    pub fn selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The ref name of this image in the synthesized index.json: the full reference with its
    /// tag, else its digest (`quay.io/org/img:1`, `docker.io/library/busybox:latest`), which
    /// `images/` shows as `docker images` would (`images/quay.io/org/img:1/`,
    /// `images/busybox:latest/`; `crate::refname`).
    pub fn ref_name(&self) -> String {
        let base = format!("{}/{}", self.registry, self.repository);
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{base}:{t}"),
            (None, Some(d)) => format!("{base}@{d}"),
            (None, None) => format!("{base}:latest"),
        }
    }

    /// The registry's name without a port (for credential lookups of `host` entries).
    pub fn host_without_port(&self) -> &str {
        self.registry.split(':').next().unwrap_or(&self.registry)
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Is a bare source argument (no transport prefix) a registry reference?
///
/// Paths win: anything that exists, starts with `/` or `.`, or whose first component exists
/// as a local file or directory is a path. Otherwise it is a registry reference only when it
/// names its registry explicitly, i.e. its first component looks like a host (`localhost`, or
/// contains `.` or `:`, as in Docker's grammar) and the whole text parses as a reference:
/// `127.0.0.1:5000/app:1`, `docker.io/library/busybox`, `quay.io/org/img@sha256:...`. A bare
/// `busybox` stays a (missing) path; `docker://busybox` means Docker Hub's.
pub fn bare_reference(text: &str) -> Option<ImageRef> {
    if text.starts_with('/') || text.starts_with('.') || Path::new(text).exists() {
        return None;
    }
    let (first, _) = text.split_once('/')?;
    if Path::new(first).exists() {
        return None;
    }
    let host_like = first == "localhost" || first.contains('.') || first.contains(':');
    host_like.then(|| ImageRef::parse(text).ok()).flatten()
}

/// `name` as a Docker tag when it is one (`[host/]repo:tag`, no digest); ref names such as
/// `v2` or `latest` alone are not, and `docker load` refuses those.
pub fn repo_tag(name: &str) -> Option<String> {
    let last = name.rsplit('/').next()?;
    // `sha256:<hex>` names an untagged image by digest (repository "sha256" to Docker).
    let digest_like = ["sha256:", "sha512:"].iter().any(|p| name.starts_with(p));
    if !last.contains(':') || name.contains('@') || digest_like {
        return None;
    }
    let r = ImageRef::parse(name).ok()?;
    r.tag.as_ref()?;
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, bool, &'a str);
        let d = "sha256:".to_owned() + &"ab".repeat(32);
        let cases: &[Case] = &[
            // text, registry, repository, tag, has digest, endpoint
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
                DOCKER_HUB_ENDPOINT,
            ),
            (
                "docker.io/library/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
                DOCKER_HUB_ENDPOINT,
            ),
            (
                "index.docker.io/foo/bar:1",
                "docker.io",
                "foo/bar",
                Some("1"),
                false,
                DOCKER_HUB_ENDPOINT,
            ),
            (
                "127.0.0.1:5000/app:1",
                "127.0.0.1:5000",
                "app",
                Some("1"),
                false,
                "127.0.0.1:5000",
            ),
            ("localhost/a/b/c:x", "localhost", "a/b/c", Some("x"), false, "localhost"),
            (&format!("quay.io/o/i@{d}"), "quay.io", "o/i", None, true, "quay.io"),
            (
                &format!("quay.io/o/i:t@{d}"),
                "quay.io",
                "o/i",
                Some("t"),
                true,
                "quay.io",
            ),
        ];
        for (text, reg, repo, tag, digest, endpoint) in cases {
            let r = ImageRef::parse(text).unwrap();
            assert_eq!(r.registry, *reg, "{text}");
            assert_eq!(r.repository, *repo, "{text}");
            assert_eq!(r.tag.as_deref(), *tag, "{text}");
            assert_eq!(r.digest.is_some(), *digest, "{text}");
            assert_eq!(r.endpoint(), *endpoint, "{text}");
        }
        let pinned = ImageRef::parse(&format!("quay.io/o/i@{d}")).unwrap();
        assert_eq!(pinned.ref_name(), format!("quay.io/o/i@{d}"));
        assert_eq!(pinned.selector(), d);
        for bad in ["", "UPPER/case", "a//b", "x@sha256:12", "x:tag with space"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn bare_references_versus_paths() {
        let cases = [
            ("127.0.0.1:5000/app:1", true),
            ("docker.io/library/busybox", true),
            ("localhost/app", true),
            ("busybox", false),
            ("library/busybox", false),
            ("./x.io/app", false),
            ("/x.io/app", false),
            ("image.tar", false),
            ("src/main.rs", false),
            ("Bad.io/App", false),
        ];
        for (text, want) in cases {
            assert_eq!(bare_reference(text).is_some(), want, "{text}");
        }
    }
}
