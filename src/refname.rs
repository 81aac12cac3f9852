//! Image names the way users write them: the name an image is shown under in `images/`
//! (`docker images` style, docs/layout.md) and the spellings that select it (`--image`,
//! `oci:DIR:REF`, `docker-archive:FILE:REF`), which accept whatever skopeo and docker accept for
//! the same image: `busybox`, `busybox:latest`, `docker.io/library/busybox:latest`,
//! `busybox@sha256:...`, a plain OCI ref name (`v1`), or the path shown under `images/`.

use crate::digest::Digest;
use crate::registry::reference::ImageRef;

/// The name as `docker images` / `podman images` display it: the implicit `docker.io/` and
/// `docker.io/library/` left out (`docker.io/library/busybox:1` -> `busybox:1`,
/// `docker.io/myorg/app:2` -> `myorg/app:2`). Any other name is returned as it is.
pub fn familiar(name: &str) -> &str {
    let Some(rest) = ["docker.io/", "index.docker.io/"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .filter(|r| !r.is_empty())
    else {
        return name;
    };
    match rest.strip_prefix("library/") {
        Some(short) if !short.is_empty() && !short.contains('/') => short,
        _ => rest,
    }
}

/// How well a selector names a ref: the best match wins, the first ref in index order among
/// equals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// A digest-only selector, or `NAME@DIGEST` whose name differs: the digest decides.
    Digest,
    /// The same image reference after Docker's normalization (`busybox` = `docker.io/library/busybox:latest`).
    Normalized,
    /// The ref's name or the name shown under `images/`, exactly.
    Exact,
}

/// A parsed selector.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    /// The digest of `NAME@DIGEST`, `@DIGEST` or a bare `sha256:...`.
    digest: Option<Digest>,
    /// The name part, normalized (`None` for digest-only selectors or unparseable names).
    name: Option<ImageRef>,
}

impl Selector {
    /// Parses what the user typed.
    pub fn parse(text: &str) -> Selector {
        let bare_digest = text.strip_prefix('@').unwrap_or(text).parse::<Digest>().ok();
        let (name, digest) = match bare_digest {
            Some(d) => (None, Some(d)),
            None => {
                let digest = text.rsplit_once('@').and_then(|(_, d)| d.parse::<Digest>().ok());
                (ImageRef::parse(text).ok(), digest)
            }
        };
        Selector {
            text: text.to_owned(),
            digest,
            name,
        }
    }

    /// The digest it names, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The text as typed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How this selector names a ref called `ref_name` whose document has digest `digest`.
    pub fn matches(&self, ref_name: &str, digest: &Digest) -> Option<Match> {
        if self.text == ref_name || self.text == familiar(ref_name) {
            return Some(Match::Exact);
        }
        if let Some(d) = &self.digest {
            if d != digest {
                return None;
            }
        }
        let same_repo = |r: &ImageRef, s: &ImageRef| r.registry == s.registry && r.repository == s.repository;
        match (&self.name, ImageRef::parse(ref_name)) {
            // `NAME[:TAG]`: same repository and tag (no tag means `latest`).
            (Some(s), Ok(r)) if self.digest.is_none() => (same_repo(&r, s)
                && r.tag.as_deref().unwrap_or("latest") == s.tag.as_deref().unwrap_or("latest"))
            .then_some(Match::Normalized),
            // `NAME@DIGEST`: the digest matched; a matching name ranks higher.
            (Some(s), Ok(r)) if same_repo(&r, s) => Some(Match::Normalized),
            _ => self.digest.as_ref().map(|_| Match::Digest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names() {
        for (name, want) in [
            ("docker.io/library/busybox:latest", "busybox:latest"),
            ("docker.io/myorg/myapp:2.0", "myorg/myapp:2.0"),
            ("index.docker.io/library/a/b:1", "library/a/b:1"),
            ("quay.io/org/img:1", "quay.io/org/img:1"),
            ("busybox:latest", "busybox:latest"),
            ("v1", "v1"),
            ("docker.io/", "docker.io/"),
            ("docker.io/library/", "library/"),
        ] {
            assert_eq!(familiar(name), want, "{name}");
        }
    }

    #[test]
    fn spellings_select_the_same_image() {
        let d1: Digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        let d2: Digest = format!("sha256:{}", "2".repeat(64)).parse().unwrap();
        let cases: &[(&str, &str, &Digest, Option<Match>)] = &[
            ("docker.io/myorg/myapp:2.0", "myorg/myapp:2.0", &d1, Some(Match::Exact)),
            (
                "docker.io/myorg/myapp:2.0",
                "docker.io/myorg/myapp:2.0",
                &d1,
                Some(Match::Exact),
            ),
            (
                "myorg/myapp:2.0",
                "docker.io/myorg/myapp:2.0",
                &d1,
                Some(Match::Normalized),
            ),
            ("myapp:latest", "myapp", &d1, Some(Match::Normalized)),
            ("docker.io/library/myapp:latest", "myapp", &d1, Some(Match::Normalized)),
            ("myapp:1", "myapp", &d1, None),
            ("v1", "v1", &d1, Some(Match::Exact)),
            ("v1", "v2", &d1, None),
            ("busybox:latest", &format!("busybox@{d1}"), &d1, Some(Match::Normalized)),
            ("busybox:latest", &format!("busybox@{d2}"), &d1, None),
            ("v1", &format!("other@{d1}"), &d1, Some(Match::Digest)),
            ("v1", &d1.to_string(), &d1, Some(Match::Digest)),
            ("v1", &format!("@{d1}"), &d1, Some(Match::Digest)),
            ("quay.io/org/img:1", "quay.io/org/img:1", &d1, Some(Match::Exact)),
            ("quay.io/org/img:1", "org/img:1", &d1, None),
        ];
        for (ref_name, sel, digest, want) in cases {
            assert_eq!(
                Selector::parse(sel).matches(ref_name, digest),
                *want,
                "{sel} vs {ref_name}"
            );
        }
    }
}
