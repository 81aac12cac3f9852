//! The files a source is made of, whether they sit in a directory or inside a tar archive.
//!
//! Format detection and the format readers only ever ask "what is at this relative path?", so an
//! OCI layout is read the same way from a directory, an oci-archive, or a gzip-compressed tar.
//! Paths are normalized (`./a`, `/a`, `a/` are `a`) and never leave the source: `..` is refused,
//! and symlinks (in a directory or inside an archive) are resolved only when they stay inside.

use super::{Result, SourceError};
use crate::blob::{FileBlob, Range, ReadAt};
use crate::tarindex::{self, EntryKind};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many symlinks or hardlinks one lookup may follow inside an archive before giving up.
const MAX_LINK_HOPS: usize = 16;

/// A read-only set of files: a directory tree or the members of a tar archive.
pub enum Files {
    /// A directory on the local filesystem.
    Dir {
        /// The directory as the user named it (for messages).
        root: PathBuf,
        /// The same directory with every link resolved: members must stay inside it.
        canonical_root: PathBuf,
    },
    /// The members of a tar archive, read in place through the archive's own `ReadAt`.
    Archive {
        /// The archive's bytes.
        data: Arc<dyn ReadAt>,
        /// Its members by normalized path.
        members: BTreeMap<String, Member>,
        /// The archive as the user named it (for messages).
        display: PathBuf,
    },
}

/// One archive member, as far as format detection needs it.
#[derive(Debug, Clone)]
pub struct Member {
    kind: EntryKind,
    offset: u64,
    size: u64,
    link: Option<String>,
}

impl Files {
    /// A directory source.
    pub fn dir(root: &Path) -> Result<Files> {
        let canonical_root = root
            .canonicalize()
            .map_err(|e| SourceError::io(root, "cannot open", e))?;
        Ok(Files::Dir {
            root: root.to_path_buf(),
            canonical_root,
        })
    }

    /// Indexes the headers of a tar archive (member data is never read here).
    pub fn archive(data: Arc<dyn ReadAt>, display: &Path) -> Result<Files> {
        let entries = tarindex::index_seekable(data.as_ref()).map_err(|e| SourceError::Tar {
            path: display.to_path_buf(),
            source: e,
        })?;
        let mut members = BTreeMap::new();
        for e in entries {
            let Some(name) = normalize(&String::from_utf8_lossy(&e.path)) else {
                let name = String::from_utf8_lossy(&e.path);
                log::warn!("{}: skipping member with unsafe name {name:?}", display.display());
                continue;
            };
            let link = e.link.as_deref().map(|l| String::from_utf8_lossy(l).into_owned());
            // Duplicate names: the last member wins, as when the archive is extracted.
            members.insert(
                name,
                Member {
                    kind: e.kind,
                    offset: e.data_offset,
                    size: e.stored_size,
                    link,
                },
            );
        }
        Ok(Files::Archive {
            data,
            members,
            display: display.to_path_buf(),
        })
    }

    /// The path to name in messages.
    pub fn display(&self) -> &Path {
        match self {
            Files::Dir { root, .. } => root,
            Files::Archive { display, .. } => display,
        }
    }

    /// True when a regular file (or a link to one) exists at `path`.
    pub fn is_file(&self, path: &str) -> bool {
        matches!(self.open(path), Ok(Some(_)))
    }

    /// Opens the file at `path`; `Ok(None)` when there is none.
    pub fn open(&self, path: &str) -> Result<Option<Arc<dyn ReadAt>>> {
        let Some(path) = normalize(path) else { return Ok(None) };
        match self {
            Files::Dir { root, canonical_root } => open_in_dir(root, canonical_root, &path),
            Files::Archive { data, members, display } => {
                let Some(m) = resolve(members, &path) else {
                    return Ok(None);
                };
                let range = Range::new(data.clone(), m.offset, m.size)
                    .map_err(|e| SourceError::io(display, &format!("member {path} is truncated"), e))?;
                Ok(Some(Arc::new(range)))
            }
        }
    }

    /// A cache key for the file at `path` that changes whenever its bytes may have: for a
    /// directory source the file's own path, size, mtime, inode and device; for an archive the
    /// archive's, plus the member's path, offset and size. `None` when the file cannot be found.
    pub fn identity(&self, path: &str) -> Option<String> {
        let path = normalize(path)?;
        match self {
            Files::Dir { root, canonical_root } => {
                let real = real_file_in_dir(root, canonical_root, &path)?;
                let meta = real.metadata().ok()?;
                Some(super::outer::identity_key(&real, &meta))
            }
            Files::Archive { members, display, .. } => {
                let m = resolve(members, &path)?;
                let archive = super::outer::identity_key(display, &display.metadata().ok()?);
                let id = format!("{archive}\0{path}\0{}\0{}", m.offset, m.size);
                Some(crate::digest::Digest::sha256_of(id.as_bytes()).hex().to_owned())
            }
        }
    }

    /// Names of the entries directly inside directory `dir` ("" is the top), sorted.
    pub fn list(&self, dir: &str) -> Vec<String> {
        let dir = if dir.is_empty() {
            Some(String::new())
        } else {
            normalize(dir)
        };
        let Some(dir) = dir else { return Vec::new() };
        match self {
            Files::Dir { canonical_root, .. } => {
                let Ok(rd) = std::fs::read_dir(canonical_root.join(&dir)) else {
                    return Vec::new();
                };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect();
                names.sort();
                names
            }
            Files::Archive { members, .. } => {
                let prefix = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                let mut names: Vec<String> = members
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter_map(|(k, _)| k[prefix.len()..].split('/').next().map(str::to_owned))
                    .filter(|n| !n.is_empty())
                    .collect();
                names.dedup();
                names
            }
        }
    }
}

/// Normalizes a member or relative path: drops `.`/empty components and leading `/`; `None` if a
/// component is `..`, since such a path could point outside the source.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The regular file `rel` of a directory source, links resolved; `None` if there is none or it
/// lies outside the source (which is logged: nothing outside is ever opened or looked at).
fn real_file_in_dir(root: &Path, canonical_root: &Path, rel: &str) -> Option<PathBuf> {
    let real = canonical_root.join(rel).canonicalize().ok()?;
    if !real.starts_with(canonical_root) {
        log::warn!("{}: {rel} points outside the source; ignored", root.display());
        return None;
    }
    real.is_file().then_some(real)
}

fn open_in_dir(root: &Path, canonical_root: &Path, rel: &str) -> Result<Option<Arc<dyn ReadAt>>> {
    let path = canonical_root.join(rel);
    let Some(real) = real_file_in_dir(root, canonical_root, rel) else {
        return Ok(None);
    };
    let file = File::open(&real).map_err(|e| SourceError::io(&path, "cannot open", e))?;
    let blob = FileBlob::new(file).map_err(|e| SourceError::io(&path, "cannot stat", e))?;
    Ok(Some(Arc::new(blob.with_path(&path))))
}

/// Follows hardlinks and symlinks between members, staying inside the archive.
fn resolve<'a>(members: &'a BTreeMap<String, Member>, path: &str) -> Option<&'a Member> {
    let mut path = path.to_owned();
    for _ in 0..MAX_LINK_HOPS {
        let m = members.get(&path)?;
        match (m.kind, &m.link) {
            (EntryKind::File, _) => return Some(m),
            (EntryKind::Hardlink, Some(target)) => path = normalize(target)?,
            (EntryKind::Symlink, Some(target)) => {
                // Docker >= 25 writes `<id>/layer.tar -> ../blobs/sha256/<hex>`.
                let base = path.rsplit_once('/').map_or("", |(d, _)| d);
                path = join_inside(base, target)?;
            }
            _ => return None,
        }
    }
    None
}

/// Resolves `target` relative to directory `base` lexically; `None` if it climbs above the top.
fn join_inside(base: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.retain(|p| !p.is_empty());
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(
        parts
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases = [
            ("./a", Some("a")),
            ("/a", Some("a")),
            ("a/", Some("a")),
            ("a//b/./c", Some("a/b/c")),
            ("../etc/passwd", None),
            ("a/../../b", None),
            ("", Some("")),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn join_inside_table() {
        let cases = [
            ("abc", "../blobs/sha256/x", Some("blobs/sha256/x")),
            ("", "a", Some("a")),
            ("a/b", "../../c", Some("c")),
            ("a", "../../c", None),
            ("a", "/etc/passwd", Some("etc/passwd")),
        ];
        for (base, target, want) in cases {
            assert_eq!(join_inside(base, target).as_deref(), want, "{base} {target}");
        }
    }
}
