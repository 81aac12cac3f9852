//! Building the tree from an image set (layout in docs/layout.md). The walk order is fixed
//! (sorted names, depth first), so node ids — and inode numbers — are the same on every mount.

use super::escape::{escape_component, ref_path};
use super::{Content, Node, NodeId, NodeKind, Tree};
use crate::image::{ImageNode, ImageSet};
use crate::view::{PlacementId, ViewSpec};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A directory being assembled: name -> entry, sorted by name bytes.
#[derive(Default)]
struct DirSpec(BTreeMap<Vec<u8>, Spec>);

enum Spec {
    Dir(DirSpec),
    File(Content, u64),
    View(ViewSpec),
    Symlink(Box<[u8]>),
}

impl DirSpec {
    fn file(&mut self, name: &str, content: Content, size: u64) {
        self.0.insert(name.as_bytes().to_vec(), Spec::File(content, size));
    }
    fn symlink(&mut self, name: &str, target: &str) {
        self.0
            .insert(name.as_bytes().to_vec(), Spec::Symlink(target.as_bytes().into()));
    }
    fn view(&mut self, name: &str, spec: ViewSpec) {
        self.0.insert(name.as_bytes().to_vec(), Spec::View(spec));
    }
    fn dir(&mut self, name: &str) -> &mut DirSpec {
        let key = name.as_bytes().to_vec();
        if !matches!(self.0.get(&key), Some(Spec::Dir(_))) {
            self.0.insert(key.clone(), Spec::Dir(DirSpec::default()));
        }
        match self.0.entry(key).or_insert_with(|| Spec::Dir(DirSpec::default())) {
            Spec::Dir(d) => d,
            // Names are fixed by the layout above: a file and a directory never share one.
            _ => unreachable!("a directory was just inserted under this name"),
        }
    }
}

/// What a mount shows besides the OCI layout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shown {
    /// Leave out `images/` (`--layout-only`: the OCI layout alone, for tools that walk and
    /// open every path, such as validators).
    pub layout_only: bool,
    /// Show `containers-storage/`, an image store podman and CRI-O read
    /// (`--containers-storage`; `crate::containers_storage`).
    pub containers_storage: bool,
}

/// Builds the tree of a mount.
pub fn build(set: Arc<ImageSet>) -> Tree {
    build_with(set, Shown::default(), &crate::cache::Cache::new(None))
}

/// Builds the tree of a mount with the parts `shown` asks for. `cache` gives the layer sizes
/// the image store shows when it has their indexes.
pub fn build_with(set: Arc<ImageSet>, shown: Shown, cache: &crate::cache::Cache) -> Tree {
    let layout_only = shown.layout_only;
    let mut root = DirSpec::default();
    let bytes = |b: &Arc<Vec<u8>>| (Content::Bytes(b.clone()), b.len() as u64);
    let (c, n) = bytes(&set.oci_layout);
    root.file("oci-layout", c, n);
    let (c, n) = bytes(&set.index_json);
    root.file("index.json", c, n);
    for (name, data) in &set.extras {
        root.file(name, Content::Source(data.clone()), data.len());
    }
    let blobs = root.dir("blobs");
    for (digest, info) in &set.blobs {
        blobs
            .dir(digest.algorithm().name())
            .file(digest.hex(), Content::Blob(digest.clone()), info.data.len());
    }
    let paths = place_refs(set.refs.iter().map(|(name, _)| name.as_str()));
    let mut shared = HashMap::new();
    if shown.containers_storage {
        add_store(root.dir(crate::containers_storage::DIR), &set, &mut shared, cache);
    }
    if !layout_only {
        let images = root.dir("images");
        for ((_, node), path) in set.refs.iter().zip(&paths) {
            let dir = path.iter().fold(&mut *images, |dir, part| dir.dir(part));
            add_image(dir, node, &set, &mut shared);
        }
    }
    // Without images/ (--layout-only) no ref has a path.
    let ref_paths = match layout_only {
        true => Vec::new(),
        false => paths.iter().map(|p| format!("images/{}", p.join("/"))).collect(),
    };
    let mut tree = Tree {
        nodes: Vec::new(),
        set,
        views: Vec::new(),
        view_nodes: Vec::new(),
        ref_paths,
    };
    flatten(&mut tree, root);
    tree
}

/// The tree of a one-image mount (`--image`): its root is the image's rootfs view, or one layer.
pub fn build_one(set: Arc<ImageSet>, chosen: &crate::one_image::Chosen) -> Tree {
    let manifest = Arc::new(chosen.manifest.clone());
    let spec = match chosen.layer {
        Some(n) => ViewSpec::Layer(manifest, n),
        None => ViewSpec::Rootfs(manifest),
    };
    Tree {
        nodes: vec![Node {
            name: Box::new([]),
            parent: NodeId::ROOT,
            kind: NodeKind::View(PlacementId(0)),
        }],
        set,
        views: vec![spec],
        view_nodes: vec![NodeId::ROOT],
        ref_paths: Vec::new(),
    }
}

/// The path (components under `images/`) of each ref, in the refs' order. A ref's directory
/// holds an image, so no ref may be shown inside another's directory nor on one's path: with a
/// ref `a` and a ref `a/b:1`, the one with fewer components keeps its path (the first in index
/// order among equals) and the other is shown as one component (`a%2Fb:1`), then with `~2`,
/// `~3`... appended until it is free. Depends only on the names and their order, so the same
/// source always gives the same paths (and inode numbers).
fn place_refs<'a>(names: impl Iterator<Item = &'a str>) -> Vec<Vec<String>> {
    let names: Vec<&str> = names.collect();
    let wanted: Vec<Vec<String>> = names.iter().map(|n| ref_path(n)).collect();
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&i| (wanted[i].len(), i));
    let mut leaves = std::collections::HashSet::new();
    let mut inner = std::collections::HashSet::new();
    let mut out = vec![Vec::new(); names.len()];
    for i in order {
        let flat = escape_component(crate::refname::familiar(names[i]));
        let candidates = std::iter::once(wanted[i].clone())
            .chain(std::iter::once(vec![flat.clone()]))
            .chain((2u64..).map(|n| vec![format!("{flat}~{n}")]));
        for path in candidates {
            let free = !leaves.contains(&path)
                && !inner.contains(&path)
                && (1..path.len()).all(|k| !leaves.contains(&path[..k]));
            if free {
                for k in 1..path.len() {
                    inner.insert(path[..k].to_vec());
                }
                leaves.insert(path.clone());
                out[i] = path;
                break;
            }
        }
    }
    out
}

/// `shared` holds one `ManifestInfo` per manifest digest: every ref and every layer view of a
/// manifest points at it (cloning it per view cost ~1 KB each, 100 MB for 100k views).
fn add_image(
    dir: &mut DirSpec,
    node: &ImageNode,
    set: &ImageSet,
    shared: &mut HashMap<crate::digest::Digest, Arc<crate::image::ManifestInfo>>,
) {
    let blob = |d: &crate::digest::Digest| {
        let size = set.blobs.get(d).map_or(0, |b| b.data.len());
        (Content::Blob(d.clone()), size)
    };
    match node {
        ImageNode::Manifest(m) => {
            let (c, n) = blob(&m.digest);
            dir.file("manifest.json", c, n);
            if let Some(d) = &m.oci_digest {
                let (c, n) = blob(d);
                dir.file("manifest.oci.json", c, n);
            }
            let (c, n) = blob(&m.config);
            dir.file("config.json", c, n);
            let manifest = shared.entry(m.digest.clone()).or_insert_with(|| Arc::new(m.clone()));
            dir.view("rootfs", ViewSpec::Rootfs(manifest.clone()));
            let layers = dir.dir("layers");
            for (i, _) in m.layers.iter().enumerate().filter(|(_, l)| l.present) {
                layers.view(&i.to_string(), ViewSpec::Layer(manifest.clone(), i));
            }
            // Overlay-ready layers need every layer up to theirs (a foreign layer the source
            // lacks ends the list).
            let complete = m.layers.iter().take_while(|l| l.present).count();
            let overlay = dir.dir("overlay");
            for i in 0..complete {
                overlay.view(&i.to_string(), ViewSpec::Overlay(manifest.clone(), i));
            }
        }
        ImageNode::Index {
            digest,
            oci_digest,
            children,
        } => {
            let (c, n) = blob(digest);
            dir.file("index.json", c, n);
            if let Some(d) = oci_digest {
                let (c, n) = blob(d);
                dir.file("index.oci.json", c, n);
            }
            for (name, child) in children {
                add_image(dir.dir(&escape_component(name)), child, set, shared);
            }
        }
    }
}

/// The image store of `crate::containers_storage`, its directories made from its paths.
fn add_store(
    dir: &mut DirSpec,
    set: &ImageSet,
    shared: &mut HashMap<crate::digest::Digest, Arc<crate::image::ManifestInfo>>,
    cache: &crate::cache::Cache,
) {
    use crate::containers_storage::StoreNode;
    for (path, node) in crate::containers_storage::build(set, shared, cache) {
        let mut parts: Vec<&str> = path.split('/').collect();
        let Some(name) = parts.pop() else { continue };
        let parent = parts.into_iter().fold(&mut *dir, |d, p| d.dir(p));
        match node {
            StoreNode::Bytes(b) => {
                let n = b.len() as u64;
                parent.file(name, Content::Bytes(b), n);
            }
            StoreNode::Blob(d, size) => parent.file(name, Content::Blob(d), size),
            StoreNode::Symlink(target) => parent.symlink(name, &target),
            StoreNode::LayerDiff(m, n) => parent.view(name, ViewSpec::Overlay(m, n)),
            StoreNode::TarSplit(d, diff_id) => parent.file(name, Content::TarSplit(d, diff_id), 0),
        }
    }
}

/// Lays the spec out breadth-first per directory: a directory's children get consecutive ids.
fn flatten(tree: &mut Tree, root: DirSpec) {
    let nodes = &mut tree.nodes;
    nodes.push(Node {
        name: Box::new([]),
        parent: NodeId::ROOT,
        kind: NodeKind::Dir { children: Vec::new() },
    });
    let mut queue = std::collections::VecDeque::from([(NodeId::ROOT, root)]);
    while let Some((id, spec)) = queue.pop_front() {
        let mut children = Vec::with_capacity(spec.0.len());
        for (name, child) in spec.0 {
            let child_id = NodeId(nodes.len() as u32);
            children.push(child_id);
            let kind = match child {
                Spec::File(content, size) => NodeKind::File { content, size },
                Spec::Dir(d) => {
                    queue.push_back((child_id, d));
                    NodeKind::Dir { children: Vec::new() }
                }
                Spec::Symlink(target) => NodeKind::Symlink { target },
                Spec::View(v) => {
                    tree.views.push(v);
                    tree.view_nodes.push(child_id);
                    NodeKind::View(PlacementId(tree.views.len() as u32 - 1))
                }
            };
            nodes.push(Node {
                name: name.into_boxed_slice(),
                parent: id,
                kind,
            });
        }
        nodes[id.0 as usize].kind = NodeKind::Dir { children };
    }
}

#[cfg(test)]
mod tests {
    use super::place_refs;

    #[test]
    fn refs_are_placed_without_collisions() {
        let names = [
            "a/b:1",
            "a",
            "docker.io/myorg/myapp:2.0",
            "myorg/myapp:2.0",
            "a%2Fb:1",
            "quay.io/org/img:1",
            "a/b:1/c",
        ];
        let got: Vec<String> = place_refs(names.into_iter()).iter().map(|p| p.join("/")).collect();
        assert_eq!(
            got,
            [
                // `a` has fewer components: it keeps its path; the literal one-component ref
                // `a%2Fb:1` is placed before this two-component one
                "a%2Fb:1~2",
                "a",
                "myorg/myapp:2.0",
                // the same name shown twice: the first in index order keeps it
                "myorg%2Fmyapp:2.0",
                "a%2Fb:1",
                "quay.io/org/img:1",
                "a%2Fb:1%2Fc",
            ]
        );
    }
}
