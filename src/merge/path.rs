//! Normalization of raw tar member paths into name components.
//!
//! Tar archives spell the same path many ways (`./a/b`, `/a/b`, `a//b/`, `a/./b`); all of them
//! become the components `["a", "b"]`. A `..` component is an error rather than being resolved:
//! resolving it could climb out of the tree or silently alias another path, and no well-formed
//! image layer needs it.

/// Longest single name Linux accepts (`NAME_MAX`). A longer name could never be looked up
/// through the kernel, and a FUSE readdir that returned one would fail for the whole directory.
pub const NAME_MAX: usize = 255;

/// Why a path could not be normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `..` component: never resolved, the entry is dropped.
    DotDot,
    /// A NUL byte: such a name cannot cross the kernel interface.
    Nul,
    /// A component longer than [`NAME_MAX`] (only checked for names that will be shown, see
    /// [`check_names`]).
    NameTooLong,
}

impl PathError {
    /// Warning text when the entry's own path is bad.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::DotDot => "path has a '..' component",
            PathError::Nul => "path contains a NUL byte",
            PathError::NameTooLong => "path has a component longer than 255 bytes",
        }
    }

    /// Warning text when a hardlink's target path is bad.
    pub fn hardlink_reason(self) -> &'static str {
        match self {
            PathError::DotDot => "hardlink target has a '..' component",
            PathError::Nul => "hardlink target contains a NUL byte",
            // Never produced by normalization; such a target simply does not exist.
            PathError::NameTooLong => "hardlink target does not exist",
        }
    }
}

/// Splits `path` into its components into `out` (cleared first), skipping empty and `.`
/// components. An empty result means the root directory itself.
///
/// Name length is not checked here: a whiteout `.wh.NAME` for a 255-byte NAME is itself 259
/// bytes long and legitimate. See [`check_names`].
///
/// Takes the output vector from the caller so a loop over many entries reuses one allocation.
pub fn normalize_into<'a>(path: &'a [u8], out: &mut Vec<&'a [u8]>) -> Result<(), PathError> {
    out.clear();
    if path.contains(&0) {
        return Err(PathError::Nul);
    }
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(PathError::DotDot),
            _ => out.push(comp),
        }
    }
    Ok(())
}

/// Rejects components longer than [`NAME_MAX`], for entries that will become names in a tree.
pub fn check_names(comps: &[&[u8]]) -> Result<(), PathError> {
    if comps.iter().any(|c| c.len() > NAME_MAX) {
        return Err(PathError::NameTooLong);
    }
    Ok(())
}

/// [`normalize_into`] into a fresh vector.
pub fn normalize(path: &[u8]) -> Result<Vec<&[u8]>, PathError> {
    let mut out = Vec::new();
    normalize_into(path, &mut out)?;
    Ok(out)
}

/// Whether `name` may appear as a directory entry name in a merged tree.
pub fn is_valid_name(name: &[u8]) -> bool {
    !matches!(name, b"" | b"." | b"..") && name.len() <= NAME_MAX && !name.iter().any(|&b| b == b'/' || b == 0)
}
