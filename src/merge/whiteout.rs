//! Recognition of OCI whiteout names (image-spec `layer.md`, "Whiteouts").
//!
//! Only the last component of an entry's path is a whiteout: `DIR/.wh.NAME` hides `DIR/NAME`,
//! `DIR/.wh..wh..opq` hides everything lower layers put in `DIR`. Names starting with
//! `.wh..wh.` other than the opaque marker are aufs bookkeeping (`.wh..wh.plnk`,
//! `.wh..wh.aufs`, `.wh..wh.orph`) that old Docker versions leaked into layers; the spec says
//! to ignore them.

/// Prefix of every whiteout name.
pub const PREFIX: &[u8] = b".wh.";
/// Prefix of aufs metadata names (and of the opaque marker).
pub const META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker.
pub const OPAQUE: &[u8] = b".wh..wh..opq";

/// What a final path component means in an OCI layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary name.
    None,
    /// `.wh.NAME`: remove `NAME` from the same directory.
    Remove(&'a [u8]),
    /// `.wh..wh..opq`: remove everything lower layers put in the same directory.
    Opaque,
    /// Other `.wh..wh.*`: aufs metadata, dropped silently.
    Meta,
    /// `.wh.`, `.wh..` or `.wh...`: would hide nothing nameable (or the directory itself, or
    /// its parent), so it is dropped with a warning.
    Invalid,
}

/// Classifies one path component.
pub fn classify(name: &[u8]) -> Whiteout<'_> {
    let Some(target) = name.strip_prefix(PREFIX) else {
        return Whiteout::None;
    };
    if name == OPAQUE {
        Whiteout::Opaque
    } else if name.starts_with(META_PREFIX) {
        Whiteout::Meta
    } else if matches!(target, b"" | b"." | b"..") {
        Whiteout::Invalid
    } else {
        Whiteout::Remove(target)
    }
}

/// Whether `name` is any kind of whiteout name (used for non-final components, which are
/// never legitimate in an OCI layer).
pub fn is_whiteout(name: &[u8]) -> bool {
    name.starts_with(PREFIX)
}

/// Whether `name` is aufs metadata (its subtree, e.g. `.wh..wh.plnk/123.456`, is dropped
/// silently).
pub fn is_meta(name: &[u8]) -> bool {
    name.starts_with(META_PREFIX)
}
