//! Overlay-ready layers (issue 19): the kernel's overlayfs stacking `images/<ref>/overlay/<n>/`
//! as read-only lower directories shows exactly `images/<ref>/rootfs/` (docs/layout.md,
//! "Overlay-ready layers"), in a full metadata dump, on two edge-case images; with the root
//! (`trusted.`) and the rootless (`userxattr`) opaque markers; and the attribute that shows
//! through when both markers are served.

use crate::rootfs::{built_fixture, edge};
use crate::util::{assert_same_dump, is_mounted, mount_at, require, run, tempdir, treedump, Mount};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The overlay edge-case image (tests/fixtures/overlay) and its `umoci unpack`, built once per run.
fn overlay_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        built_fixture(
            "tests/fixtures/overlay/make-overlay-image.sh",
            "test-fixtures-overlay",
            &["umoci", "python3"],
        )
    })
}

/// The canonical dump of a tree, hardlink groups by inode number: overlayfs reports a lower
/// file's own nlink, which may count names a later layer replaced (docs/layout.md).
fn dump(dir: &Path) -> String {
    treedump(dir, &["--links-by-inode"])
}

fn assert_same(what: &str, got: &str, want: &str) {
    assert_same_dump(what, got, want, ["rootfs/", "the overlay mount"]);
}

/// A kernel overlayfs mount of `lower` (bottom first), unmounted by its path on drop.
struct Overlay {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Overlay {
    fn mount(lower: &[PathBuf], options: &str) -> Overlay {
        require(&["mount", "umount"]);
        let tmp = tempdir();
        let dir = tmp.path().join("merged");
        std::fs::create_dir(&dir).unwrap();
        let dirs: Vec<String> = lower.iter().rev().map(|p| p.display().to_string()).collect();
        let opts = format!("{options},lowerdir={}", dirs.join(":"));
        let o = run(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&dir),
            Duration::from_secs(30),
        );
        assert!(
            o.ok(),
            "mount -t overlay -o {opts} failed: {}\n{}",
            o.describe(),
            o.stderr_str()
        );
        Overlay { dir, _tmp: tmp }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let o = run(Command::new("umount").arg(&self.dir), Duration::from_secs(30));
        if !o.ok() && !std::thread::panicking() {
            panic!(
                "umount {} failed: {}\n{}",
                self.dir.display(),
                o.describe(),
                o.stderr_str()
            );
        }
    }
}

/// `overlay/0`, `overlay/1`... of the image at `r` (bottom first).
fn layer_dirs(m: &Mount, r: &str) -> Vec<PathBuf> {
    let n = m.ls(&format!("images/{r}/overlay")).len();
    assert!(n > 1, "images/{r}/overlay has {n} layers");
    (0..n).map(|i| m.path(&format!("images/{r}/overlay/{i}"))).collect()
}

/// Every file of every overlay layer: no `.wh.` name; whiteouts are character devices 0:0.
/// Returns the number of whiteouts and of opaque directories seen.
fn check_layers(layers: &[PathBuf], marker: &str) -> (usize, usize) {
    let (mut whiteouts, mut opaque) = (0, 0);
    for layer in layers {
        for rel in crate::util::walk(layer).into_iter().skip(1) {
            let path = layer.join(&rel);
            let name = rel.file_name().unwrap().to_string_lossy().into_owned();
            assert!(!name.starts_with(".wh."), "{} is an OCI whiteout file", path.display());
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                assert_eq!(meta.mode() & 0o7777, 0, "{}: whiteout mode", path.display());
                whiteouts += 1;
            }
            if meta.is_dir() {
                let o = run(
                    Command::new("getfattr")
                        .args(["--only-values", "-n", marker])
                        .arg(&path),
                    Duration::from_secs(10),
                );
                if o.ok() {
                    assert_eq!(o.stdout_str(), "y", "{}: {marker}", path.display());
                    opaque += 1;
                }
            }
        }
    }
    (whiteouts, opaque)
}

#[test]
fn overlay_layers_stacked_by_the_kernel_equal_the_rootfs() {
    require(&["getfattr"]);
    let images = [
        (edge().join("oci"), "edge", None),
        (
            overlay_image().join("oci"),
            "overlay",
            Some(overlay_image().join("bundle/rootfs")),
        ),
    ];
    for (source, r, reference) in images {
        let m = Mount::with_args(&source, &["-o", "overlay_opaque=trusted"]);
        let mount_options = mount_at(&m.dir).expect("imgfs mount").mount_options;
        assert!(
            mount_options.iter().any(|o| o == "nodev") && mount_options.iter().any(|o| o == "ro"),
            "{mount_options:?}"
        );
        let want = dump(&m.path(&format!("images/{r}/rootfs")));
        if let Some(reference) = reference {
            assert_same(&format!("{r}: rootfs/ against umoci unpack"), &want, &dump(&reference));
        }
        let layers = layer_dirs(&m, r);
        let (whiteouts, opaque) = check_layers(&layers, "trusted.overlay.opaque");
        assert!(
            whiteouts >= 1 && opaque >= 1,
            "{r}: {whiteouts} whiteouts, {opaque} opaque dirs"
        );
        let ov = Overlay::mount(&layers, "ro");
        assert_same(&format!("{r}: overlayfs over overlay/<n>/"), &dump(&ov.dir), &want);
        drop(ov);
    }
}

#[test]
fn rootless_overlay_with_userxattr_reads_the_user_markers() {
    require(&["getfattr"]);
    let m = Mount::with_args(overlay_image().join("oci"), &["-o", "overlay_opaque=user"]);
    let layers = layer_dirs(&m, "overlay");
    let (_, opaque) = check_layers(&layers, "user.overlay.opaque");
    assert!(opaque >= 2, "{opaque} opaque directories");
    let want = dump(&m.path("images/overlay/rootfs"));
    let ov = Overlay::mount(&layers, "ro,userxattr");
    assert_same("overlayfs -o userxattr over overlay/<n>/", &dump(&ov.dir), &want);
}

#[test]
fn both_markers_by_default_and_only_the_other_one_shows_through() {
    let m = Mount::new(overlay_image().join("oci"));
    let layers = layer_dirs(&m, "overlay");
    let want = dump(&m.path("images/overlay/rootfs"));
    for (options, other) in [
        ("ro", "user.overlay.opaque"),
        ("ro,userxattr", "trusted.overlay.opaque"),
    ] {
        let ov = Overlay::mount(&layers, options);
        let got = dump(&ov.dir);
        // The only difference: the other mode's marker on the directories that are opaque in
        // the top layer that has them.
        let marker = format!("{other}=79");
        let cleaned: Vec<String> = got
            .lines()
            .map(|l| {
                l.replace(&format!("[{marker}]"), "[]")
                    .replace(&format!(",{marker}"), "")
            })
            .collect();
        assert_same(
            &format!("overlayfs -o {options}, both markers"),
            &(cleaned.join("\n") + "\n"),
            &want,
        );
        let shown = got.lines().filter(|l| l.contains(&marker)).count();
        assert!(shown >= 1, "-o {options}: {other} does not show through:\n{got}");
        let dir = ov.dir.clone();
        drop(ov);
        assert!(!is_mounted(&dir));
    }
}
