//! Sources: where an image's bytes come from, and the one OCI view every format is turned into.
//!
//! `open` parses a reference (skopeo's transport syntax or a bare path), finds the files (a
//! directory, or a tar that may itself be gzip/zstd-compressed), detects the format by content
//! and hands a [`RawLayout`] to `crate::image`, which walks and verifies it.

mod dir_transport;
mod docker_archive;
pub mod files;
mod oci_layout;
mod outer;
mod registry;

use crate::blob::ReadAt;
use crate::cache::Cache;
use crate::digest::{Digest, DigestError};
use crate::oci::Descriptor;
use crate::registry::ImageRef;
use files::Files;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Largest JSON document (index, manifest, config, manifest.json) read into memory.
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// Most values one JSON document may hold. Documents parsed as `serde_json::Value` cost up to
/// ~35 bytes of memory per byte of input when made of tiny values (`[0,0,0,...]`: 60 MB took
/// 1 GB), so the size limit alone does not bound memory; 1M values is ~50x what the largest
/// real documents seen hold (an index.json of 10k images, a config with 1k history entries).
pub const MAX_JSON_VALUES: usize = 1 << 20;

/// Why a source cannot be opened. Display is one line that names the file and the problem.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The path does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    /// An I/O error while reading the source.
    #[error("{}: {}", path.display(), one_line(what))]
    Io {
        path: PathBuf,
        what: String,
        source: io::Error,
    },
    /// The tar structure is broken.
    #[error("{}: not a readable tar archive", path.display())]
    Tar {
        path: PathBuf,
        source: crate::tarindex::TarError,
    },
    /// None of the known formats matches.
    #[error("{}: not a container image: {}", path.display(), one_line(reason))]
    NotAnImage { path: PathBuf, reason: String },
    /// A JSON document does not parse.
    #[error("{}: {}: invalid JSON", path.display(), one_line(file))]
    Json {
        path: PathBuf,
        file: String,
        source: serde_json::Error,
    },
    /// A document is valid JSON but not what the format requires.
    #[error("{}: {}: {}", path.display(), one_line(file), one_line(reason))]
    Invalid {
        path: PathBuf,
        file: String,
        reason: String,
    },
    /// A digest field is malformed or uses an algorithm we cannot verify.
    #[error("{}: {}: bad digest", path.display(), one_line(file))]
    BadDigest {
        path: PathBuf,
        file: String,
        source: DigestError,
    },
    /// A blob's bytes do not hash to its name.
    #[error("{}: blob {digest} ({}) does not match its digest: its bytes hash to {actual}", path.display(), one_line(what))]
    DigestMismatch {
        path: PathBuf,
        digest: Digest,
        what: String,
        actual: Digest,
    },
    /// A blob's size differs from its descriptor.
    #[error("{}: blob {digest} ({}) is {actual} bytes, its descriptor says {expected}", path.display(), one_line(what))]
    SizeMismatch {
        path: PathBuf,
        digest: Digest,
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A descriptor names a blob the source does not hold.
    #[error("{}: {} {digest} is missing from the image", path.display(), one_line(what))]
    MissingBlob {
        path: PathBuf,
        digest: Digest,
        what: String,
    },
    /// The image uses something imgfs does not read.
    #[error("{}: {}", path.display(), one_line(reason))]
    Unsupported { path: PathBuf, reason: String },
    /// The reference selects an image the source does not have.
    #[error("{}: no image {selector:?} in this source (it has: {})", path.display(), one_line(available))]
    NoSuchImage {
        path: PathBuf,
        selector: String,
        available: String,
    },
    /// The image has nothing for the platform `--image` (with `--platform`) asks for.
    #[error("{}", path.display())]
    Platform {
        path: PathBuf,
        source: crate::registry::PlatformError,
    },
    /// The reference itself is malformed.
    #[error("invalid image reference {reference:?}: {}", one_line(reason))]
    BadReference { reference: String, reason: String },
    /// A registry image cannot be opened.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, SourceError>;

/// Text that may come from the image (member names, media types, refs) as one line: control
/// characters escaped, so a hostile name can neither split an error nor forge a log line.
pub(crate) fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let escaped = s.chars().map(|c| match c.is_control() {
        true => c.escape_default().to_string(),
        false => c.to_string(),
    });
    std::borrow::Cow::Owned(escaped.collect())
}

impl SourceError {
    /// A bad descriptor in document `file` of the source at `path`.
    pub(crate) fn descriptor(e: crate::oci::DescriptorError, path: &Path, file: &str) -> SourceError {
        match e {
            crate::oci::DescriptorError::BadDigest(source) => SourceError::BadDigest {
                path: path.to_path_buf(),
                file: file.to_owned(),
                source,
            },
            e => SourceError::Invalid {
                path: path.to_path_buf(),
                file: file.to_owned(),
                reason: e.to_string(),
            },
        }
    }

    pub(crate) fn io(path: &Path, what: &str, source: io::Error) -> SourceError {
        SourceError::Io {
            path: path.to_path_buf(),
            what: what.to_owned(),
            source,
        }
    }
}

/// The input formats imgfs reads (reported by `inspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// OCI image layout (directory or tar), image-spec 1.0/1.1.
    OciLayout,
    /// OCI layout from before image-spec 1.0, refs in `refs/`.
    OciLayoutPre1,
    /// `docker save` of Docker >= 25 / `ctr export`: an OCI layout plus manifest.json.
    DockerOciArchive,
    /// `docker save` of Docker <= 24 (manifest.json + `<id>/layer.tar`).
    DockerArchive,
    /// The legacy v1 format: `repositories` + per-layer `json`, `layer.tar`.
    DockerV1,
    /// containers-image `dir:` (manifest.json, version, blobs named by hex).
    Dir,
    /// A registry (`docker://`): documents fetched at open, layers read on demand.
    Registry,
}

/// The transport a reference names, as skopeo spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A bare path: detect everything.
    Auto,
    /// `oci:`
    Oci,
    /// `oci-archive:`
    OciArchive,
    /// `docker-archive:`
    DockerArchive,
    /// `dir:`
    Dir,
    /// `docker://`, or a bare reference that names its registry: the reference, parsed once
    /// here (`path` holds its text without the prefix, for messages).
    Docker(ImageRef),
}

impl Transport {
    /// Whether the source is a registry (no local path).
    pub fn is_registry(&self) -> bool {
        matches!(self, Transport::Docker(_))
    }
}

/// A parsed source reference: transport, path and an optional image selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// How to read the path.
    pub transport: Transport,
    /// The file or directory.
    pub path: PathBuf,
    /// `REF`, `NAME:TAG` or `@N`: shows only that image under `images/`.
    pub selector: Option<String>,
}

impl SourceRef {
    /// Parses `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`, `docker-archive:FILE[:NAME:TAG|@N]`,
    /// `dir:DIR`, `docker://REFERENCE`, or a bare path or registry reference (a path that
    /// exists always wins: see [`crate::registry::reference::bare_reference`]).
    pub fn parse(text: &str) -> Result<SourceRef> {
        let bad = |reason: &str| SourceError::BadReference {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        let transports = [
            ("oci:", Transport::Oci),
            ("oci-archive:", Transport::OciArchive),
            ("docker-archive:", Transport::DockerArchive),
            ("dir:", Transport::Dir),
        ];
        for (prefix, transport) in transports {
            if let Some(rest) = text.strip_prefix(prefix) {
                // Like containers-image, the path ends at the first ':'.
                let (path, selector) = match rest.split_once(':') {
                    Some((p, s)) if transport != Transport::Dir => (p, Some(s.to_owned())),
                    _ => (rest, None),
                };
                if path.is_empty() {
                    return Err(bad("no path after the transport"));
                }
                let selector = selector.filter(|s| !s.is_empty());
                return Ok(SourceRef {
                    transport,
                    path: path.into(),
                    selector,
                });
            }
        }
        if let Some(rest) = text.strip_prefix("docker://") {
            let image = ImageRef::parse(rest).map_err(|e| bad(&e.to_string()))?;
            return Ok(SourceRef {
                transport: Transport::Docker(image),
                path: rest.into(),
                selector: None,
            });
        }
        if text.starts_with("containers-storage:") {
            return Err(bad("containers-storage references are not supported"));
        }
        if let Some(image) = crate::registry::reference::bare_reference(text) {
            return Ok(SourceRef {
                transport: Transport::Docker(image),
                path: text.into(),
                selector: None,
            });
        }
        Ok(SourceRef {
            transport: Transport::Auto,
            path: text.into(),
            selector: None,
        })
    }
}

/// The OCI view of a source, before `crate::image` walks and verifies it.
pub struct RawLayout {
    /// The detected format.
    pub format: Format,
    /// The source's path, for messages.
    pub path: PathBuf,
    /// Modification time of the source, shown as the time of the metadata files.
    pub mtime: SystemTime,
    /// `oci-layout` bytes.
    pub oci_layout: Vec<u8>,
    /// `index.json` bytes: the source's own, or synthesized.
    pub index_json: Vec<u8>,
    /// Top-level files shown as they are in the source (docker's manifest.json, repositories).
    pub extras: Vec<(String, Arc<dyn ReadAt>)>,
    /// Blobs that are not at `blobs/<alg>/<hex>` in `files`: synthesized documents, docker layers.
    pub known_blobs: BTreeMap<Digest, Arc<dyn ReadAt>>,
    /// The source's files (other blobs are looked up at `blobs/<alg>/<hex>`), or its fetcher.
    pub files: SourceFiles,
    /// The reference's image selector (`REF`, `NAME:TAG`, `@N`), applied by `crate::image`.
    pub selector: Option<String>,
}

impl RawLayout {
    /// The blob a descriptor names, as `used` (known blobs first, then the source's files or
    /// fetcher); `Ok(None)` when the source does not hold it.
    pub fn blob(&self, d: &Descriptor, used: BlobUse) -> Result<Option<Arc<dyn ReadAt>>> {
        if let Some(b) = self.known_blobs.get(&d.digest) {
            return Ok(Some(b.clone()));
        }
        self.files.fetcher().open(d, used)
    }

    /// The fetcher of a source with no local files (a registry), which documents are worth
    /// asking for ahead of the walk ([`Fetch::prefetch`]); `None` for local sources.
    pub fn remote(&self) -> Option<&dyn Fetch> {
        match &self.files {
            SourceFiles::Local(_) => None,
            SourceFiles::Remote(f) => Some(f.as_ref()),
        }
    }
}

/// What the walk wants a blob for: a remote source fetches documents and layers differently
/// (the registry's manifest endpoint, its blob endpoint, Range reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobUse {
    /// An image index or manifest.
    Manifest,
    /// An image config.
    Config,
    /// A layer: read lazily, never whole here.
    Layer,
    /// Anything else an index names (artifacts).
    Other,
}

/// Where a source's blobs come from, asked by descriptor: the one walk (`crate::image`) reads
/// every source through this. Local sources open `blobs/<alg>/<hex>` in their files; a registry
/// fetches documents (and verifies them) when asked, or ahead of time on a prefetch hint.
pub trait Fetch: Send + Sync {
    /// The blob `d` names, as `used`; `Ok(None)` when the source does not hold it.
    fn open(&self, d: &Descriptor, used: BlobUse) -> Result<Option<Arc<dyn ReadAt>>>;

    /// A document already at hand, without asking anyone (a fetched one, for a remote source).
    fn held(&self, _digest: &Digest) -> Option<Arc<dyn ReadAt>> {
        None
    }

    /// A hint: the walk will open these documents soon. A remote source fetches the ones it
    /// does not hold now, together (one round trip for a whole level of the image graph);
    /// a failure is kept for the [`Fetch::open`] that follows, which reports it.
    fn prefetch(&self, _docs: &[(Descriptor, BlobUse)]) {}
}

impl Fetch for Files {
    fn open(&self, d: &Descriptor, _used: BlobUse) -> Result<Option<Arc<dyn ReadAt>>> {
        Files::open(
            self,
            &format!("blobs/{}/{}", d.digest.algorithm().name(), d.digest.hex()),
        )
    }
}

/// Whether a source has files of its own.
pub enum SourceFiles {
    /// A directory or a tar (maybe compressed as a whole) on this machine.
    Local(Files),
    /// None: blobs other than [`RawLayout::known_blobs`] are fetched (a registry image, whose
    /// documents are fetched and verified when the walk asks for them and whose layers are read
    /// remotely).
    Remote(Box<dyn Fetch>),
}

impl SourceFiles {
    fn fetcher(&self) -> &dyn Fetch {
        match self {
            SourceFiles::Local(files) => files,
            SourceFiles::Remote(f) => f.as_ref(),
        }
    }
}

/// The content of `oci-layout` for synthesized layouts.
pub const OCI_LAYOUT_BYTES: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Opens a source: finds its files, detects the format and produces its OCI view.
pub fn open(r: &SourceRef, cache: &Cache) -> Result<RawLayout> {
    open_with(r, cache, &crate::registry::RegistryOptions::default())
}

/// [`open`] with the options registry references use (platform, credentials, TLS).
pub fn open_with(r: &SourceRef, cache: &Cache, options: &crate::registry::RegistryOptions) -> Result<RawLayout> {
    if let Transport::Docker(image) = &r.transport {
        return Ok(registry::open(image, options, cache)?);
    }
    let meta = std::fs::metadata(&r.path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SourceError::NotFound { path: r.path.clone() },
        _ => SourceError::io(&r.path, "cannot open", e),
    })?;
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let files = if meta.is_dir() {
        Files::dir(&r.path)?
    } else {
        let data = outer::open_file(&r.path, &meta, cache)?;
        Files::archive(data, &r.path)?
    };
    let mut raw = detect(files, r, cache)?;
    raw.mtime = mtime;
    raw.selector = r.selector.clone();
    Ok(raw)
}

fn detect(files: Files, r: &SourceRef, cache: &Cache) -> Result<RawLayout> {
    let has = |p: &str| files.is_file(p);
    let path = r.path.clone();
    let not_image = |reason: &str| SourceError::NotAnImage {
        path: path.clone(),
        reason: reason.into(),
    };
    match r.transport {
        Transport::Dir => return dir_transport::read(files),
        Transport::DockerArchive if !has("manifest.json") && !has("repositories") => {
            return Err(not_image("no manifest.json or repositories (not a docker-archive)"))
        }
        Transport::DockerArchive if !has("index.json") => return docker_archive::read(files, cache),
        Transport::Oci | Transport::OciArchive if !has("index.json") && !has("oci-layout") => {
            return Err(not_image("no index.json (not an OCI image layout)"))
        }
        _ => {}
    }
    if has("index.json") {
        oci_layout::read(files, cache)
    } else if has("oci-layout") && !files.list("refs").is_empty() {
        oci_layout::read_pre1(files)
    } else if has("manifest.json") && has("version") {
        dir_transport::read(files)
    } else if has("manifest.json") || has("repositories") {
        docker_archive::read(files, cache)
    } else {
        Err(not_image(
            "found neither index.json (OCI layout), manifest.json (docker save, dir:) nor repositories (docker v1)",
        ))
    }
}

/// Reads a whole small document from the source, refusing anything over [`MAX_JSON_BYTES`].
pub(crate) fn read_doc(files: &Files, name: &str) -> Result<Vec<u8>> {
    let Some(blob) = files.open(name)? else {
        return Err(SourceError::Invalid {
            path: files.display().to_path_buf(),
            file: name.to_owned(),
            reason: "missing".into(),
        });
    };
    read_small(blob.as_ref(), files.display(), name)
}

/// Reads a small blob fully, bounded by [`MAX_JSON_BYTES`].
pub(crate) fn read_small(blob: &dyn ReadAt, path: &Path, name: &str) -> Result<Vec<u8>> {
    if blob.len() > MAX_JSON_BYTES {
        return Err(SourceError::Invalid {
            path: path.to_path_buf(),
            file: name.to_owned(),
            reason: format!("{} bytes is too large for a JSON document", blob.len()),
        });
    }
    let bytes = crate::blob::read_all(blob).map_err(|e| SourceError::io(path, &format!("reading {name}"), e))?;
    let values = count_json_values(&bytes);
    if values > MAX_JSON_VALUES {
        return Err(SourceError::Invalid {
            path: path.to_path_buf(),
            file: name.to_owned(),
            reason: format!("about {values} JSON values is too many for a document (limit {MAX_JSON_VALUES})"),
        });
    }
    Ok(bytes)
}

/// Roughly how many values a JSON text holds: arrays, objects and separators outside strings.
/// A linear scan with no allocation, run before a document is parsed.
fn count_json_values(bytes: &[u8]) -> usize {
    let (mut count, mut in_string, mut escaped) = (1, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' | b',' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// Parses JSON with an error naming the file.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], path: &Path, file: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| SourceError::Json {
        path: path.to_path_buf(),
        file: file.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_naming_image_text_stay_on_one_line() {
        // Found by the `source` fuzz target: a docker-archive manifest naming its config
        // "<hex>.js\n" gave a two-line error.
        let e = SourceError::Invalid {
            path: PathBuf::from("/x.tar"),
            file: "abc.js\n\u{1b}[31m".into(),
            reason: "missing\r".into(),
        };
        assert_eq!(e.to_string(), "/x.tar: abc.js\\n\\u{1b}[31m: missing\\r");
        assert_eq!(one_line("plain name"), "plain name");
    }
    #[test]
    fn parse_references() {
        let cases: &[(&str, Transport, &str, Option<&str>)] = &[
            ("img.tar", Transport::Auto, "img.tar", None),
            ("oci:/x/y", Transport::Oci, "/x/y", None),
            ("oci:/x/y:latest", Transport::Oci, "/x/y", Some("latest")),
            ("oci-archive:a.tar:v1", Transport::OciArchive, "a.tar", Some("v1")),
            (
                "docker-archive:a.tar:busybox:1",
                Transport::DockerArchive,
                "a.tar",
                Some("busybox:1"),
            ),
            ("docker-archive:a.tar:@1", Transport::DockerArchive, "a.tar", Some("@1")),
            ("dir:/d", Transport::Dir, "/d", None),
        ];
        for (text, transport, path, sel) in cases {
            let r = SourceRef::parse(text).unwrap();
            assert_eq!(&r.transport, transport, "{text}");
            assert_eq!(r.path, PathBuf::from(path), "{text}");
            assert_eq!(r.selector.as_deref(), *sel, "{text}");
        }
        let hub = SourceRef::parse("docker://busybox").unwrap();
        let busybox = ImageRef::parse("busybox").unwrap();
        assert_eq!(
            (hub.transport, hub.path),
            (Transport::Docker(busybox), PathBuf::from("busybox"))
        );
        let bare = SourceRef::parse("127.0.0.1:5000/app:1").unwrap();
        assert_eq!(
            bare.transport,
            Transport::Docker(ImageRef::parse("127.0.0.1:5000/app:1").unwrap())
        );
        assert!(SourceRef::parse("docker://UPPER").is_err());
        assert!(SourceRef::parse("oci:").is_err());
    }

    #[test]
    fn json_values_are_counted_outside_strings() {
        let cases: &[(&str, usize)] = &[
            ("{}", 2),
            ("[0,0,0]", 4),
            (r#"{"a":[1,2],"b":{}}"#, 6),
            (r#"["a,b,[{", "\\\",[", 1]"#, 4),
        ];
        for (text, want) in cases {
            assert_eq!(count_json_values(text.as_bytes()), *want, "{text}");
        }
        let big = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
        let err = read_small(&big.into_bytes(), Path::new("src"), "index.json").unwrap_err();
        assert!(err.to_string().contains("too many"), "{err}");
    }
}
