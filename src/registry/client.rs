//! HTTP to one registry repository: manifests, small blobs, byte ranges and resumable
//! streams, with bounded time, retries and re-authentication.
//!
//! The protocol work (the `/v2/` challenge, bearer tokens and their expiry, basic auth,
//! redirects to blob storage, Range requests, TLS) is `oci_client`'s; this module owns the
//! tokio runtime it needs (callers are plain threads: FUSE workers, the layer indexer) and the
//! policy around it:
//! - every operation has a time budget ([`RegistryOptions::timeout`]); a registry that stops
//!   answering fails the operation when the budget is spent, never later;
//! - connection loss, timeouts, 5xx, 408 and 429 are retried with exponential backoff within
//!   the budget; a stream resumes where it broke with a Range request, and every byte that
//!   arrives renews the budget;
//! - a 401 gets one fresh token (tokens expire, registries revoke them) before it counts;
//! - messages never contain credentials, tokens, or the query part of a URL (presigned
//!   storage URLs carry tokens there).

use super::auth::Credentials;
use super::reference::ImageRef;
use super::RegistryError;
use crate::digest::Digest;
use crate::error_chain;
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Every manifest type imgfs reads, in the Accept header of manifest requests. Distribution
/// answers MANIFEST_UNKNOWN for an OCI manifest asked for without the OCI types, and converts a
/// Docker manifest asked for without any Accept to schema1 (another digest): ask for all.
pub const ACCEPT_MANIFESTS: &[&str] = &[
    crate::oci::MT_OCI_INDEX,
    crate::oci::MT_OCI_MANIFEST,
    crate::oci::MT_DOCKER_LIST,
    crate::oci::MT_DOCKER_MANIFEST,
];

/// First wait before a retry; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Runtime threads: HTTP is I/O-bound and the callers block on it, so two are plenty.
const RUNTIME_THREADS: usize = 2;
/// The User-Agent header.
const USER_AGENT: &str = concat!("imgfs/", env!("CARGO_PKG_VERSION"));

/// How to reach a registry and what to trust (the CLI's registry flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// `os/arch[/variant]` to pick from a multi-platform image (default: this host).
    pub platform: Option<String>,
    /// `--creds USER:PASSWORD`.
    pub creds: Option<Credentials>,
    /// `--authfile FILE`: the only auth file read.
    pub authfile: Option<PathBuf>,
    /// False: accept any certificate, and plain HTTP when the registry does not speak TLS.
    pub tls_verify: bool,
    /// Directories whose `*.crt` files are trusted CA certificates (`--cert-dir`).
    pub cert_dirs: Vec<PathBuf>,
    /// How long one operation may go without progress before it fails.
    pub timeout: Duration,
    /// `--published-index`: use the layer indexes published as referrers of the image
    /// (`crate::published`), instead of downloading each layer to index it.
    pub published_index: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            platform: None,
            creds: None,
            authfile: None,
            tls_verify: true,
            cert_dirs: Vec::new(),
            timeout: Duration::from_secs(30),
            published_index: false,
        }
    }
}

/// A timeout that is not a positive, finite number of seconds.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected a positive number of seconds")]
pub struct BadTimeout(String);

/// Reads `--registry-timeout` / `registry_timeout=`: positive, finite seconds (fractions allowed).
pub fn parse_timeout(text: &str) -> Result<Duration, BadTimeout> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Duration::try_from_secs_f64(s).map_err(|_| BadTimeout(text.into())),
        _ => Err(BadTimeout(text.into())),
    }
}

/// What went wrong with one request, for the retry policy.
enum Failure {
    /// Worth another try (connection, timeout, 5xx, 408, 429).
    Transient(String),
    /// 401 or a refused token request.
    Unauthorized(String),
    /// 404-like answers.
    NotFound,
    /// The TLS handshake failed (a certificate not trusted, or no TLS at all): retrying
    /// cannot help.
    Tls(String),
    /// Anything else: permanent.
    Fatal(String),
    /// Nobody listens at the address, or the host name does not resolve: said at once, since
    /// retrying within one operation only makes the user wait (a later operation tries again).
    Unreachable(String),
}

/// How one streaming request ended badly.
enum Attempt {
    /// The network or the registry failed.
    Net(OciDistributionError),
    /// Nothing arrived within the budget.
    Stalled,
    /// The consumer failed (e.g. a full disk): not worth a retry.
    Sink(std::io::Error),
}

/// The reason text of a request that ran out of time.
const TIMED_OUT: &str = "timed out";

/// A client for one repository of one registry.
pub struct Client {
    rt: Arc<tokio::runtime::Runtime>,
    /// The protocol client (`push.rs` and `referrers.rs` use it too).
    pub(super) oci: oci_client::Client,
    /// Endpoint and repository; tag or digest are set per request.
    pub(super) image: ImageRef,
    pub(super) auth: RegistryAuth,
    /// Strings never to print (the password).
    secrets: Vec<String>,
    /// `docker://...` for messages.
    name: String,
    timeout: Duration,
}

/// The credentials imgfs finds for `image` (flags, creds file, auth files, helpers:
/// [`auth::find`](super::auth::find)), as a registry error naming the image when they cannot be
/// read. Callers hand them to [`Client::connect`]; the secret is never logged.
pub fn find_credentials(image: &ImageRef, opts: &RegistryOptions) -> Result<Option<super::auth::Found>, RegistryError> {
    super::auth::find(image, opts.creds.as_ref(), opts.authfile.as_deref()).map_err(|source| RegistryError::Auth {
        reference: format!("docker://{image}"),
        source,
    })
}

impl Client {
    /// Connects to the registry of `image` (one `/v2/` round trip, which also authenticates).
    /// Without TLS verification, a registry that does not speak TLS is tried over plain HTTP.
    pub fn connect(
        image: &ImageRef,
        creds: Option<&Credentials>,
        opts: &RegistryOptions,
    ) -> Result<Client, RegistryError> {
        let name = format!("docker://{image}");
        // Several TLS backends may be linked in; rustls needs one chosen per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("imgfs-http")
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Setup {
                reference: name.clone(),
                reason: format!("cannot start the HTTP runtime: {e}"),
            })?;
        let (auth, secrets) = match creds {
            Some(c) => (
                RegistryAuth::Basic(c.username.clone(), c.password.clone()),
                vec![c.password.clone()],
            ),
            None => (RegistryAuth::Anonymous, Vec::new()),
        };
        let certs = read_cert_dirs(image, &opts.cert_dirs, &name)?;
        let rt = Arc::new(rt);
        let make = |protocol: ClientProtocol| Client {
            rt: rt.clone(),
            oci: oci_client::Client::new(ClientConfig {
                protocol,
                accept_invalid_certificates: !opts.tls_verify,
                extra_root_certificates: certs.clone(),
                platform_resolver: None,
                read_timeout: Some(opts.timeout),
                connect_timeout: Some(opts.timeout.min(Duration::from_secs(10))),
                user_agent: USER_AGENT,
                // Pushes (`imgfs index push`) are small blobs: one POST and one PUT each.
                use_monolithic_push: true,
                ..ClientConfig::default()
            }),
            image: image.clone(),
            auth: auth.clone(),
            secrets: secrets.clone(),
            name: name.clone(),
            timeout: opts.timeout,
        };
        let client = make(ClientProtocol::Https);
        match client.login() {
            Err(RegistryError::Tls { .. }) if !opts.tls_verify => {
                log::info!("{name}: no TLS answer; trying plain HTTP (--tls-verify=false)");
                let plain = make(ClientProtocol::Http);
                plain.login()?;
                Ok(plain)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(client),
        }
    }

    /// `docker://...`, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time budget of one operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs a future on the client's runtime (callers are not runtime threads).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The `/v2/` challenge, and a token when the registry wants one.
    fn login(&self) -> Result<(), RegistryError> {
        let target = self.target(&self.image.selector());
        self.block_on(self.retrying("the registry's /v2/ endpoint", || async {
            self.oci
                .auth(&target, &self.auth, RegistryOperation::Pull)
                .await
                .map(|_| ())
        }))
    }

    /// The repository of this client at `selector` (a tag, or a digest).
    pub(super) fn target(&self, selector: &str) -> oci_client::Reference {
        let (registry, repo) = (self.image.endpoint().to_owned(), self.image.repository.clone());
        if selector.contains(':') {
            oci_client::Reference::with_digest(registry, repo, selector.to_owned())
        } else {
            oci_client::Reference::with_tag(registry, repo, selector.to_owned())
        }
    }

    /// A manifest or index by tag or digest, as the registry sends it.
    pub async fn manifest(&self, selector: &str) -> Result<Vec<u8>, RegistryError> {
        let target = self.target(selector);
        let what = format!("manifest {selector}");
        self.retrying(&what, || async {
            let (bytes, _digest) = self
                .oci
                .pull_manifest_raw(&target, &self.auth, ACCEPT_MANIFESTS)
                .await?;
            Ok(bytes.to_vec())
        })
        .await
    }

    /// A whole small blob (a config), refusing more than `size` bytes.
    pub async fn small_blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, RegistryError> {
        let mut out = Vec::new();
        self.stream(digest, size, 0, &mut |chunk: &[u8]| {
            out.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// `len` bytes of a blob at `offset` (one Range request, retried).
    pub fn range(&self, digest: &Digest, size: u64, offset: u64, len: u64) -> Result<Vec<u8>, RegistryError> {
        let end = offset.saturating_add(len).min(size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        self.block_on(self.stream_range(digest, offset, end, &mut |chunk: &[u8]| {
            out.extend_from_slice(chunk);
            Ok(())
        }))?;
        Ok(out)
    }

    /// Streams `[from, size)` of a blob into `sink`, resuming after failures.
    pub async fn stream(
        &self,
        digest: &Digest,
        size: u64,
        from: u64,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<(), RegistryError> {
        self.stream_range(digest, from, size, sink).await
    }

    /// Streams `[from, end)` of a blob into `sink`. Each attempt asks for what is still missing;
    /// every chunk that arrives renews the time budget.
    async fn stream_range(
        &self,
        digest: &Digest,
        from: u64,
        end: u64,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<(), RegistryError> {
        let what = format!("blob {digest}");
        let target = self.target(&self.image.selector());
        let mut pos = from;
        let mut deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut reauthed = false;
        while pos < end {
            let before = pos;
            let failure = match self.attempt(digest, &target, &mut pos, end, &mut deadline, sink).await {
                Ok(()) if pos >= end => return Ok(()),
                // The stream ended early: ask for the rest.
                Ok(()) => Failure::Transient(format!("connection closed at byte {pos}")),
                Err(Attempt::Net(e)) => self.classify(&e),
                Err(Attempt::Stalled) => Failure::Transient(TIMED_OUT.into()),
                Err(Attempt::Sink(e)) => {
                    return Err(RegistryError::Local {
                        reference: self.name.clone(),
                        what,
                        reason: e.to_string(),
                    })
                }
            };
            if pos > before {
                // Progress was made: start again from short waits.
                backoff = FIRST_BACKOFF;
            }
            self.after_failure(&what, failure, &mut deadline, &mut backoff, &mut reauthed, &target)
                .await?;
        }
        Ok(())
    }

    /// One request for `[pos, end)`, feeding `sink` and advancing `pos` until the response ends.
    async fn attempt(
        &self,
        digest: &Digest,
        target: &oci_client::Reference,
        pos: &mut u64,
        end: u64,
        deadline: &mut Instant,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<(), Attempt> {
        let desc = OciDescriptor {
            digest: digest.to_string(),
            ..OciDescriptor::default()
        };
        let request = self.oci.pull_blob_stream_partial(target, &desc, *pos, Some(end - *pos));
        let resp = match tokio::time::timeout_at(*deadline, request).await {
            Err(_) => return Err(Attempt::Stalled),
            Ok(r) => r.map_err(Attempt::Net)?,
        };
        // A registry may ignore Range and send the whole blob: skip what we have.
        let (mut stream, mut skip) = match resp {
            BlobResponse::Partial(s) => (s, 0u64),
            BlobResponse::Full(s) => (s, *pos),
        };
        while *pos < end {
            let chunk = match tokio::time::timeout_at(*deadline, stream.next()).await {
                Err(_) => return Err(Attempt::Stalled),
                Ok(None) => return Ok(()),
                // Past the end, oci-client's own digest check may complain about a partial
                // view of the blob: the caller hashes what it got and decides.
                Ok(Some(Err(e))) => return Err(Attempt::Net(OciDistributionError::IoError(e))),
                Ok(Some(Ok(c))) => c,
            };
            let dropped = skip.min(chunk.len() as u64) as usize;
            skip -= dropped as u64;
            let data = &chunk[dropped..];
            let keep = data.len().min((end - *pos) as usize);
            if keep > 0 {
                sink(&data[..keep]).map_err(Attempt::Sink)?;
                *pos += keep as u64;
                *deadline = Instant::now() + self.timeout;
            }
        }
        Ok(())
    }

    /// Runs one request until it succeeds, fails for good, or the budget is spent.
    pub(super) async fn retrying<T, F, Fut>(&self, what: &str, op: F) -> Result<T, RegistryError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let target = self.target(&self.image.selector());
        let mut deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut reauthed = false;
        loop {
            let failure = match tokio::time::timeout_at(deadline, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => self.classify(&e),
                Err(_) => Failure::Transient(TIMED_OUT.into()),
            };
            self.after_failure(what, failure, &mut deadline, &mut backoff, &mut reauthed, &target)
                .await?;
        }
    }

    /// Decides what follows a failed attempt: Ok to try again (after waiting), or the error.
    async fn after_failure(
        &self,
        what: &str,
        failure: Failure,
        deadline: &mut Instant,
        backoff: &mut Duration,
        reauthed: &mut bool,
        target: &oci_client::Reference,
    ) -> Result<(), RegistryError> {
        let reference = self.name.clone();
        match failure {
            Failure::Transient(reason) => {
                let now = Instant::now();
                if now + *backoff >= *deadline {
                    let secs = self.timeout.as_secs_f64();
                    return Err(if reason == TIMED_OUT {
                        RegistryError::Timeout {
                            reference,
                            what: what.to_owned(),
                            secs,
                        }
                    } else {
                        RegistryError::Unavailable {
                            reference,
                            what: what.to_owned(),
                            reason,
                        }
                    });
                }
                log::warn!("{reference}: {what}: {reason}; retrying in {} ms", backoff.as_millis());
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
                Ok(())
            }
            Failure::Unauthorized(reason) if !*reauthed => {
                // Tokens expire or get revoked: one new token before believing the 401.
                *reauthed = true;
                log::info!("{reference}: {what}: unauthorized; asking for a new token");
                match self.oci.auth(target, &self.auth, RegistryOperation::Pull).await {
                    Ok(_) => Ok(()),
                    Err(e) => match self.classify(&e) {
                        Failure::Unauthorized(r) => Err(self.unauthorized(what, r)),
                        _ => Err(self.unauthorized(what, reason)),
                    },
                }
            }
            Failure::Unauthorized(reason) => Err(self.unauthorized(what, reason)),
            Failure::NotFound => Err(RegistryError::NotFound {
                reference,
                what: what.to_owned(),
            }),
            Failure::Fatal(reason) => Err(RegistryError::Transport {
                reference,
                what: what.to_owned(),
                reason,
            }),
            Failure::Tls(reason) => Err(RegistryError::Tls { reference, reason }),
            Failure::Unreachable(reason) => Err(RegistryError::Unreachable { reference, reason }),
        }
    }

    fn unauthorized(&self, what: &str, reason: String) -> RegistryError {
        RegistryError::Unauthorized {
            reference: self.name.clone(),
            what: what.to_owned(),
            with_credentials: !matches!(self.auth, RegistryAuth::Anonymous),
            reason,
        }
    }

    /// Sorts an oci-client error for the retry policy, with a message safe to show.
    fn classify(&self, e: &OciDistributionError) -> Failure {
        use OciDistributionError as E;
        match e {
            E::RequestError(re) => match re.status().map(|s| s.as_u16()) {
                Some(code) => by_status(code, self.redact(&error_chain::text(re))),
                None if is_tls(re) => Failure::Tls(self.redact(&tls_reason(re))),
                None if unreachable(re).is_some() => {
                    Failure::Unreachable(unreachable(re).unwrap_or_default().to_owned())
                }
                None => Failure::Transient(self.redact(&error_chain::text(re))),
            },
            E::ServerError { code, message, .. } => by_status(*code, self.redact(&short(message))),
            E::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let text = self.redact(&short(&envelope.to_string()));
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    Failure::NotFound
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    Failure::Unauthorized(text)
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Toomanyrequests)) {
                    Failure::Transient(text)
                } else {
                    Failure::Fatal(text)
                }
            }
            E::UnauthorizedError { .. } => Failure::Unauthorized("the registry answered 401".into()),
            E::AuthenticationFailure(body) => {
                Failure::Unauthorized(format!("the token server refused: {}", self.redact(&short(body))))
            }
            E::ImageManifestNotFoundError(_) => Failure::NotFound,
            E::IoError(io) => Failure::Transient(self.redact(&io.to_string())),
            other => Failure::Fatal(self.redact(&short(&other.to_string()))),
        }
    }

    /// Removes secrets and URL query strings from a message.
    fn redact(&self, text: &str) -> String {
        let mut out = strip_queries(text);
        for s in &self.secrets {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out
    }
}

/// Did the TLS layer fail (rather than the network)? The rustls error is not always reachable
/// through `source()` (wrappers hide it), so its messages count too.
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    const MARKERS: &[&str] = &[
        "received corrupt message",
        "invalid peer certificate",
        "peer is incompatible",
        "peer misbehaved",
        "HandshakeFailure",
    ];
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                return true;
            }
        }
        cur = c.source();
    }
    let text = error_chain::text(e);
    MARKERS.iter().any(|m| text.contains(m))
}

/// The TLS failure in words, with what to do about it.
fn tls_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let text = error_chain::text(e);
    let hint = if text.contains("InvalidContentType") {
        "the registry does not seem to speak TLS; plain HTTP needs --tls-verify=false"
    } else if text.contains("certificate") || text.contains("Certificate") {
        "trust its CA with --cert-dir, or skip verification with --tls-verify=false"
    } else {
        "check the registry's TLS setup"
    };
    format!("{text} ({hint})")
}

/// "connection refused" or "unknown host" when the request never reached a server because
/// nothing listens at the address or the name does not resolve.
fn unreachable(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Some("connection refused");
            }
        }
        // hyper-util's resolver error has no public type: its text is the only mark.
        let text = c.to_string();
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            return Some("unknown host (the name does not resolve)");
        }
        cur = c.source();
    }
    None
}

fn by_status(code: u16, text: String) -> Failure {
    match code {
        401 | 403 => Failure::Unauthorized(format!("HTTP {code}")),
        404 => Failure::NotFound,
        408 | 429 | 500..=599 => Failure::Transient(format!("HTTP {code}: {text}")),
        _ => Failure::Fatal(format!("HTTP {code}: {text}")),
    }
}

/// One line, at most 200 characters (registries may answer with whole HTML pages).
fn short(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line,
    }
}

/// Drops the query part of every http(s) URL in `text`.
pub fn strip_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("http") {
        let (before, url_and_more) = rest.split_at(start);
        out.push_str(before);
        let is_url = url_and_more.starts_with("http://") || url_and_more.starts_with("https://");
        let end = url_and_more
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(url_and_more.len());
        let (url, more) = url_and_more.split_at(if is_url { end } else { 4 });
        match url.split_once('?') {
            Some((base, _)) if is_url => {
                out.push_str(base);
                out.push_str("?<redacted>");
            }
            _ => out.push_str(url),
        }
        rest = more;
    }
    out.push_str(rest);
    out
}

/// Trusted CA certificates: `*.crt` in each `--cert-dir`, plus containers' and Docker's
/// per-registry directories when they exist.
fn read_cert_dirs(image: &ImageRef, dirs: &[PathBuf], name: &str) -> Result<Vec<Certificate>, RegistryError> {
    let mut all: Vec<(PathBuf, bool)> = dirs.iter().map(|d| (d.clone(), true)).collect();
    for base in ["/etc/containers/certs.d", "/etc/docker/certs.d"] {
        all.push((PathBuf::from(base).join(&image.registry), false));
    }
    let mut certs = Vec::new();
    for (dir, named) in all {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(_) if !named => continue,
            Err(e) => {
                return Err(RegistryError::Setup {
                    reference: name.to_owned(),
                    reason: format!("--cert-dir {}: {e}", dir.display()),
                })
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).map_err(|e| RegistryError::Setup {
                reference: name.to_owned(),
                reason: format!("{}: {e}", f.display()),
            })?;
            certs.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_stripped() {
        let cases = [
            (
                "GET https://s3.example/x?X-Amz-Signature=abc failed",
                "GET https://s3.example/x?<redacted> failed",
            ),
            ("(http://h/p?t=1)", "(http://h/p?<redacted>)"),
            ("no url here", "no url here"),
            ("httpd said http://a/b", "httpd said http://a/b"),
        ];
        for (text, want) in cases {
            assert_eq!(strip_queries(text), want);
        }
    }

    #[test]
    fn short_messages() {
        assert_eq!(short("a\n  b\tc"), "a b c");
        assert_eq!(short(&"x".repeat(300)).len(), 203);
    }
}
