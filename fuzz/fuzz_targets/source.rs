//! Source detection and the JSON documents (`imgfs::open_tree`: `source::open` with format
//! detection, docker-archive `manifest.json`, `repositories`, v1 `<id>/json`, OCI
//! `index.json`/manifests/configs through `image::ImageSet::load`, then `tree::build`).
//!
//! The input is a small text format that the target turns into a real tar file on disk:
//!
//! ```text
//! docker-archive:busybox:1 gz          <- line 1: transport[:selector] [gz|zst]
//! --- manifest.json                    <- a member: "--- NAME", then its content
//! [{"Config":"@1.json","RepoTags":["busybox:1"],"Layers":["l/layer.tar"]}]
//! --- @1.json
//! {"rootfs":{"type":"layers","diff_ids":["sha256:@2"]}}
//! --- l/layer.tar
//! ...
//! --- link -> target                   <- a symlink member ("=>": a hardlink)
//! --- somedir/                         <- a directory member
//! ```
//!
//! Transports: `auto` (a bare path), `oci`, `oci-archive`, `docker-archive`, `dir`. In names and
//! contents `@N` becomes the sha256 hex of member N's content and `#N` its length (N = 0..9;
//! contents are resolved from the last member to the first, so a member refers to later ones),
//! which lets the fuzzer keep digests and sizes valid while it changes the documents.
//!
//! Invariant: opening never panics, and an error's Display, and that of every error in its
//! `source()` chain, is one line (no '\n'), as the CLI prints them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::error::Error;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Members taken from one input, at most.
const MAX_MEMBERS: usize = 24;

struct Member {
    name: Vec<u8>,
    content: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(first) = std::str::from_utf8(first) else { return };
    let mut words = first.split(' ');
    let spec = words.next().unwrap_or("");
    let outer = words.next().unwrap_or("");
    let members = resolve(split_members(rest));
    let Some(mut archive) = build_tar(&members) else { return };
    match outer {
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&archive).unwrap();
            archive = e.finish().unwrap();
        }
        "zst" => archive = zstd::encode_all(&archive[..], 1).unwrap(),
        _ => {}
    }
    let path = archive_path();
    std::fs::write(path, &archive).unwrap();
    let (transport, selector) = spec.split_once(':').unwrap_or((spec, ""));
    let p = path.display();
    let sel = if selector.is_empty() {
        String::new()
    } else {
        format!(":{selector}")
    };
    let reference = match transport {
        "oci" => format!("oci:{p}{sel}"),
        "oci-archive" => format!("oci-archive:{p}{sel}"),
        "docker-archive" => format!("docker-archive:{p}{sel}"),
        "dir" => format!("dir:{p}"),
        _ => p.to_string(),
    };
    let cache = imgfs::cache::Cache::new(None);
    let opened = imgfs::open_tree(&reference, &cache);
    if std::env::var_os("FUZZ_SOURCE_VERBOSE").is_some() {
        // For checking what seeds reach: `FUZZ_SOURCE_VERBOSE=1 .../source SEED...`.
        match &opened {
            Ok(tree) => eprintln!("{reference}: opened, {} nodes", tree.len()),
            Err(e) => eprintln!("{reference}: {e}"),
        }
    }
    match opened {
        Ok(tree) => {
            assert!(!tree.is_empty());
            let _ = tree.resolve("images");
        }
        Err(e) => {
            let mut err: Option<&dyn Error> = Some(&e);
            while let Some(cur) = err {
                let text = cur.to_string();
                assert!(!text.contains('\n'), "multi-line error: {text:?} (top: {e})");
                err = cur.source();
            }
        }
    }
});

/// The archive file of this process (on tmpfs when there is one).
fn archive_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let base = ["/dev/shm", "/tmp"]
            .into_iter()
            .find(|d| Path::new(d).is_dir())
            .unwrap_or(".");
        PathBuf::from(base).join(format!("imgfs-fuzz-source-{}.tar", std::process::id()))
    })
}

fn split_members(mut rest: &[u8]) -> Vec<Member> {
    const SEP: &[u8] = b"\n--- ";
    let mut out = Vec::new();
    let Some(r) = rest.strip_prefix(&SEP[1..]) else {
        return out;
    };
    rest = r;
    while out.len() < MAX_MEMBERS {
        let end = find(rest, SEP).unwrap_or(rest.len());
        let part = &rest[..end];
        let (name, content) = match part.iter().position(|&b| b == b'\n') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        out.push(Member {
            name: name.to_vec(),
            content: content.to_vec(),
        });
        if end == rest.len() {
            break;
        }
        rest = &rest[end + SEP.len()..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Replaces `@N` and `#N`, contents from the last member to the first, then names.
fn resolve(mut members: Vec<Member>) -> Vec<Member> {
    for i in (0..members.len()).rev() {
        let content = substitute(&members[i].content, &members);
        members[i].content = content;
    }
    for i in 0..members.len() {
        let name = substitute(&members[i].name, &members);
        members[i].name = name;
    }
    members
}

fn substitute(text: &[u8], members: &[Member]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let n = text
            .get(i + 1)
            .filter(|d| d.is_ascii_digit())
            .map(|d| (d - b'0') as usize);
        match (c, n.and_then(|n| members.get(n))) {
            (b'@', Some(m)) => {
                let hex: String = Sha256::digest(&m.content).iter().map(|b| format!("{b:02x}")).collect();
                out.extend_from_slice(hex.as_bytes());
                i += 2;
            }
            (b'#', Some(m)) => {
                out.extend_from_slice(m.content.len().to_string().as_bytes());
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn build_tar(members: &[Member]) -> Option<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(0);
        let (name, link, kind) = if let Some(i) = find(&m.name, b" -> ") {
            (&m.name[..i], Some(&m.name[i + 4..]), tar::EntryType::Symlink)
        } else if let Some(i) = find(&m.name, b" => ") {
            (&m.name[..i], Some(&m.name[i + 4..]), tar::EntryType::Link)
        } else if m.name.ends_with(b"/") {
            (&m.name[..], None, tar::EntryType::Directory)
        } else {
            (&m.name[..], None, tar::EntryType::Regular)
        };
        h.set_entry_type(kind);
        let path = Path::new(std::ffi::OsStr::from_bytes(name));
        let res = match link {
            Some(target) => {
                h.set_size(0);
                b.append_link(&mut h, path, Path::new(std::ffi::OsStr::from_bytes(target)))
            }
            None if kind == tar::EntryType::Directory => {
                h.set_size(0);
                b.append_data(&mut h, path, &[][..])
            }
            None => {
                h.set_size(m.content.len() as u64);
                b.append_data(&mut h, path, &m.content[..])
            }
        };
        // Names the tar crate refuses to write (empty, "..") are left out.
        if res.is_err() {
            continue;
        }
    }
    b.into_inner().ok()
}
