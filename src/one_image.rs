//! Choosing the one image that `--image [REF]` (and `-o image[=REF]`) mounts at the mount point,
//! like `podman image mount`: its merged rootfs, or with `--layer N` one layer as stored. For a
//! multi-platform index, `--platform os/arch[/variant]` (default: this host's) picks the
//! manifest, for local sources as for registries (docs/cli.md).

use crate::image::{ImageNode, ImageSet, ManifestInfo};
use crate::registry::{Platform, PlatformError};
use crate::source::{one_line, Format, SourceError};
use std::sync::Arc;

/// What the user asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// The image, in any spelling `crate::refname` accepts; `None`: the source's only image (a
    /// registry source: the image its reference names).
    pub image: Option<String>,
    /// One layer (0 = bottom) instead of the merged rootfs.
    pub layer: Option<usize>,
    /// `--platform`, for a multi-platform index.
    pub platform: Option<String>,
}

/// The image chosen: its ref name and manifest, and the layer when one was asked for.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The ref it was chosen by.
    pub name: String,
    /// Its manifest.
    pub manifest: ManifestInfo,
    /// `--layer`.
    pub layer: Option<usize>,
}

/// Applies `choice` to the refs of `set`; one line naming the problem when it cannot.
pub fn choose(set: &ImageSet, choice: &Choice) -> Result<Chosen, SourceError> {
    let err = |reason: String| SourceError::Unsupported {
        path: set.path.clone(),
        reason,
    };
    let names = || set.refs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    let (name, node) = match &choice.image {
        Some(sel) => crate::image::select_ref(&set.refs, &crate::refname::Selector::parse(sel))
            .ok_or_else(|| err(format!("no image {sel:?} in this source (it has: {})", names())))?,
        // A registry source shows the image its reference names first (and the whole index
        // as `<ref>@index`); any other source must hold exactly one image.
        None if set.format == Format::Registry || set.refs.len() == 1 => set
            .refs
            .first()
            .cloned()
            .ok_or_else(|| err("the source has no image".into()))?,
        None => {
            return Err(err(format!(
                "--image needs a name: this source has {} images ({})",
                set.refs.len(),
                names()
            )))
        }
    };
    let platform_error = |source: PlatformError| SourceError::Platform {
        path: set.path.clone(),
        source,
    };
    let wanted = match &choice.platform {
        Some(p) => Some(Platform::parse(p).map_err(|e| platform_error(e.into()))?),
        None => None,
    };
    let manifest = pick_platform(&name, &node, wanted.as_ref()).map_err(platform_error)?;
    if let Some(n) = choice.layer {
        let present = manifest.layers.get(n).is_some_and(|l| l.present);
        if !present {
            return Err(err(format!(
                "image {name:?} has no layer {n} (it has {} layers, 0 at the bottom)",
                manifest.layers.len()
            )));
        }
    }
    Ok(Chosen {
        name,
        manifest,
        layer: choice.layer,
    })
}

/// The manifest of `node` for the wanted platform (default: this host's).
fn pick_platform(name: &str, node: &Arc<ImageNode>, wanted: Option<&Platform>) -> Result<ManifestInfo, PlatformError> {
    let platform_of = |m: &ManifestInfo| m.platform.as_deref().map(platform_json);
    // Platform names come from the image's configs: one line, whatever they hold.
    let shown = |p: &str| one_line(&p.replace('-', "/")).into_owned();
    match node.as_ref() {
        ImageNode::Manifest(m) => match wanted {
            Some(w) if !platform_of(m).is_some_and(|p| w.matches(&p)) => Err(PlatformError::Other {
                name: name.to_owned(),
                is: m.platform.as_deref().map_or("of no platform".into(), shown),
                wanted: one_line(&w.to_string()).into_owned(),
            }),
            _ => Ok(m.clone()),
        },
        ImageNode::Index { .. } => {
            let host = Platform::host();
            let w = wanted.unwrap_or(&host);
            let mut manifests = Vec::new();
            collect_manifests(node, &mut manifests);
            let found = manifests.iter().find(|m| platform_of(m).is_some_and(|p| w.matches(&p)));
            match found {
                Some(m) => Ok((*m).clone()),
                None => Err(PlatformError::Missing {
                    name: name.to_owned(),
                    wanted: one_line(&w.to_string()).into_owned(),
                    host: wanted.is_none(),
                    have: manifests
                        .iter()
                        .filter_map(|m| m.platform.as_deref())
                        .map(shown)
                        .collect(),
                }),
            }
        }
    }
}

/// Manifests of an index, depth first in index order.
fn collect_manifests<'a>(node: &'a ImageNode, out: &mut Vec<&'a ManifestInfo>) {
    match node {
        ImageNode::Manifest(m) => out.push(m),
        ImageNode::Index { children, .. } => children.iter().for_each(|(_, c)| collect_manifests(c, out)),
    }
}

/// `linux-arm-v7` (a config's platform as `crate::oci::platform::dir_name` spells it) as an OCI
/// platform object.
fn platform_json(name: &str) -> serde_json::Value {
    let mut parts = name.splitn(3, '-');
    serde_json::json!({
        "os": parts.next().unwrap_or(""),
        "architecture": parts.next().unwrap_or(""),
        "variant": parts.next().unwrap_or(""),
    })
}
