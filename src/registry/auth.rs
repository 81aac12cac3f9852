//! Where registry credentials come from: `--creds`, `--authfile`, containers' auth.json files
//! and Docker's config.json, including `docker-credential-*` helpers.
//!
//! Order (the first source with an entry for the registry wins; docs/registry.md):
//! 1. `--creds USER:PASSWORD`, `--creds-file FILE` or `$IMGFS_CREDS` (the CLI reads those);
//! 2. `--authfile FILE`, and then no other file;
//! 3. `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` (without
//!    XDG_RUNTIME_DIR: `/run/containers/$UID/auth.json`, where `skopeo login` writes as root),
//!    `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config`), then
//!    `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`);
//! 4. anonymous.
//!
//! Inside one file, as Docker does: `credHelpers[host]`, else `credsStore`, else `auths`.
//! Secrets never reach a log line or an error message: [`Credentials`] prints as redacted.

use super::reference::{ImageRef, DOCKER_HUB};
use base64::Engine as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The key Docker uses for Docker Hub in config.json and with credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token; never printed.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// Parses `USER:PASSWORD` (the password may contain `:`).
    pub fn parse(text: &str) -> Result<Credentials, AuthError> {
        match text.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
            }),
            _ => Err(AuthError::BadCreds),
        }
    }
}

/// Why credentials could not be read. Never contains a secret.
// Variant fields are named for what they hold; each variant's doc and message say the rest.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// `--creds` without a `:`.
    #[error("--creds must be USER:PASSWORD")]
    BadCreds,
    /// An auth file the user named cannot be used.
    #[error("auth file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// An entry of an auth file cannot be read.
    #[error("auth file {}: entry {entry:?}", path.display())]
    Entry {
        path: PathBuf,
        entry: String,
        source: BadEntry,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper}: {reason}")]
    Helper { helper: String, reason: String },
}

/// What is wrong with an auth file entry's `auth` field. The decoders' own errors are left
/// out on purpose: they quote the byte they stopped at, a byte of the secret.
#[derive(Debug, thiserror::Error)]
pub enum BadEntry {
    /// Not base64.
    #[error("\"auth\" is not base64")]
    NotBase64,
    /// Decodes to bytes that are not UTF-8.
    #[error("\"auth\" is not UTF-8")]
    NotUtf8,
    /// No `:` between user and password.
    #[error("\"auth\" is not USER:PASSWORD")]
    NotUserPassword,
}

/// Credentials found for a registry, and where from (for the log).
#[derive(Debug, Clone)]
pub struct Found {
    /// The credentials.
    pub creds: Credentials,
    /// `--creds`, a file path, or a helper name.
    pub origin: String,
}

/// Looks credentials up for `r` in the order of the module docs.
pub fn find(r: &ImageRef, creds: Option<&Credentials>, authfile: Option<&Path>) -> Result<Option<Found>, AuthError> {
    if let Some(c) = creds {
        return Ok(Some(Found {
            creds: c.clone(),
            origin: "--creds".into(),
        }));
    }
    if let Some(f) = authfile {
        return from_file(f, r, true);
    }
    for (path, named) in default_files() {
        if let Some(found) = from_file(&path, r, named)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The default files, in order; `true` for one the user named (errors in it are errors).
fn default_files() -> Vec<(PathBuf, bool)> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = env("HOME");
    let mut files = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push((f, true));
    }
    match env("XDG_RUNTIME_DIR") {
        Some(d) => files.push((d.join("containers/auth.json"), false)),
        // Where `skopeo login` and `podman login` write without XDG_RUNTIME_DIR (root under
        // sudo, systemd services, containers): containers-auth.json(5).
        None => {
            let uid = rustix::process::getuid().as_raw();
            files.push((PathBuf::from(format!("/run/containers/{uid}/auth.json")), false));
        }
    }
    if let Some(d) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        files.push((d.join("containers/auth.json"), false));
    }
    if let Some(d) = env("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
        files.push((d.join("config.json"), false));
    }
    files
}

/// Credentials for `r` from one auth file; a missing file has none. Problems with a file the
/// user did not name are warnings, so a stray broken config does not stop a public pull.
fn from_file(path: &Path, r: &ImageRef, named: bool) -> Result<Option<Found>, AuthError> {
    let bad = |reason: String| AuthError::File {
        path: path.to_path_buf(),
        reason,
    };
    let doc = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| bad(format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => return Ok(None),
        Err(e) => Err(bad(e.to_string())),
    };
    let result = doc.and_then(|doc| lookup(&doc, r, path));
    match result {
        Err(e) if !named => {
            log::warn!("{e}; ignoring it");
            Ok(None)
        }
        r => r,
    }
}

fn lookup(doc: &serde_json::Value, r: &ImageRef, path: &Path) -> Result<Option<Found>, AuthError> {
    let keys = candidate_keys(r);
    let helper_for_host = doc
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| normalize_key(k) == r.registry))
        .and_then(|(_, v)| v.as_str());
    let store = doc.get("credsStore").and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    for helper in helper_for_host.into_iter().chain(store) {
        if let Some(creds) = run_helper(helper, r)? {
            return Ok(Some(Found {
                creds,
                origin: format!("docker-credential-{helper}"),
            }));
        }
    }
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    // Most specific first: containers' auth.json may scope entries to a namespace.
    for want in &keys {
        let Some((_, entry)) = auths.iter().find(|(k, _)| normalize_key(k) == *want) else {
            continue;
        };
        if let Some(creds) = entry_credentials(entry).map_err(|source| AuthError::Entry {
            path: path.to_path_buf(),
            entry: want.clone(),
            source,
        })? {
            return Ok(Some(Found {
                creds,
                origin: path.display().to_string(),
            }));
        }
    }
    Ok(None)
}

/// `registry/ns/repo`, `registry/ns`, ..., `registry`.
fn candidate_keys(r: &ImageRef) -> Vec<String> {
    let mut keys = Vec::new();
    let mut scope = format!("{}/{}", r.registry, r.repository);
    loop {
        keys.push(scope.clone());
        match scope.rsplit_once('/') {
            Some((head, _)) => scope = head.to_owned(),
            None => break,
        }
    }
    keys
}

/// An auths/credHelpers key as a bare registry name: no scheme, no `/v1/` or `/v2/`,
/// and Docker Hub's several names as `docker.io`.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    let k = k.strip_suffix("/v1").or_else(|| k.strip_suffix("/v2")).unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => match k.split_once('/') {
            Some(("index.docker.io" | "registry-1.docker.io", rest)) => format!("{DOCKER_HUB}/{rest}"),
            _ => k.to_owned(),
        },
    }
}

/// The credentials of one `auths` entry; `None` when it has none imgfs can use.
fn entry_credentials(entry: &serde_json::Value) -> Result<Option<Credentials>, BadEntry> {
    let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    if let Some(auth) = field("auth") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| BadEntry::NotBase64)?;
        let text = String::from_utf8(raw).map_err(|_| BadEntry::NotUtf8)?;
        return Credentials::parse(&text)
            .map(Some)
            .map_err(|_| BadEntry::NotUserPassword);
    }
    if let (Some(u), Some(p)) = (field("username"), field("password")) {
        return Ok(Some(Credentials {
            username: u.to_owned(),
            password: p.to_owned(),
        }));
    }
    if field("identitytoken").is_some() {
        log::warn!("auth entry with an identity token (OAuth refresh token) is not supported; ignoring it");
    }
    Ok(None)
}

/// Runs `docker-credential-NAME get` with the registry on stdin (Docker's credential helper
/// protocol). "Not found" answers are `None`.
fn run_helper(name: &str, r: &ImageRef) -> Result<Option<Credentials>, AuthError> {
    let fail = |reason: String| AuthError::Helper {
        helper: name.to_owned(),
        reason,
    };
    if name.contains('/') {
        return Err(fail("helper names may not contain '/'".into()));
    }
    let server = if r.registry == DOCKER_HUB {
        DOCKER_HUB_KEY.to_owned()
    } else {
        r.registry.clone()
    };
    let mut child = Command::new(format!("docker-credential-{name}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is not our failure: its answer decides.
        let _ = stdin.write_all(server.as_bytes());
    }
    let mut out = Vec::new();
    let reader = child.stdout.take();
    let status = wait_with_timeout(&mut child, reader, &mut out).map_err(|e| fail(e.to_string()))?;
    if !status.success() {
        // Helpers answer "credentials not found in native keychain" on stdout when they
        // have nothing: that is not an error. Their other messages are not shown: some
        // helpers echo what they were given.
        let text = String::from_utf8_lossy(&out);
        if text.to_ascii_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(fail(format!("exited with {status}")));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&out).map_err(|_| fail("answered something that is not JSON".into()))?;
    let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let (username, password) = (field("Username"), field("Secret"));
    if username == "<token>" {
        log::warn!("docker-credential-{name} gave an identity token, which imgfs does not support; ignoring it");
        return Ok(None);
    }
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username, password }))
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    stdout: Option<std::process::ChildStdout>,
    out: &mut Vec<u8>,
) -> std::io::Result<std::process::ExitStatus> {
    // Read on a thread so a helper that writes a lot cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > HELPER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "no answer within {}s",
                HELPER_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    *out = reader.join().unwrap_or_default();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> ImageRef {
        ImageRef::parse(text).unwrap()
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn keys_normalize() {
        let cases = [
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://quay.io/v2/", "quay.io"),
            ("quay.io/org", "quay.io/org"),
        ];
        for (k, want) in cases {
            assert_eq!(normalize_key(k), want, "{k}");
        }
    }

    #[test]
    fn auths_entries_most_specific_first() {
        let doc = serde_json::json!({
            "auths": {
                "quay.io": {"auth": b64("general:one")},
                "quay.io/org": {"auth": b64("scoped:two")},
                "https://index.docker.io/v1/": {"username": "hub", "password": "three"},
                "127.0.0.1:5000": {},
            }
        });
        let p = Path::new("f.json");
        let user = |text: &str| lookup(&doc, &r(text), p).unwrap().map(|f| f.creds.username);
        assert_eq!(user("quay.io/org/img").as_deref(), Some("scoped"));
        assert_eq!(user("quay.io/other/img").as_deref(), Some("general"));
        assert_eq!(user("busybox").as_deref(), Some("hub"));
        assert_eq!(user("127.0.0.1:5000/x"), None);
        assert_eq!(user("example.com/x"), None);
    }

    #[test]
    fn bad_entries_never_show_secrets() {
        // The whole chain, as `imgfs: ...` prints it.
        let chain = |auth: &str| {
            let doc = serde_json::json!({"auths": {"quay.io": {"auth": auth}}});
            let e = lookup(&doc, &r("quay.io/a"), Path::new("f.json")).unwrap_err();
            let mut text = e.to_string();
            let mut cur: &dyn std::error::Error = &e;
            while let Some(next) = cur.source() {
                text = format!("{text}: {next}");
                cur = next;
            }
            text
        };
        let cases = [
            (b64("no-colon-secret"), "\"auth\" is not USER:PASSWORD"),
            ("se!cret".to_owned(), "\"auth\" is not base64"),
            (
                base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]),
                "\"auth\" is not UTF-8",
            ),
        ];
        for (auth, why) in cases {
            let err = chain(&auth);
            assert_eq!(err, format!("auth file f.json: entry \"quay.io\": {why}"));
        }
        let c = Credentials::parse("u:p:with:colons").unwrap();
        assert_eq!(c.password, "p:with:colons");
        assert!(!format!("{c:?}").contains("p:with"));
        assert!(Credentials::parse("nopassword").is_err());
    }
}
