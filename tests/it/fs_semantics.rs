//! File system semantics of a mount: read-only (EROFS), mount options, stable inode numbers,
//! attributes, statfs, the mount.fuse3 helper form.

use crate::util::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const EROFS: i32 = 30;

/// Runs a shell command that must fail with "Read-only file system".
fn expect_erofs(cmd: &mut Command, what: &str) {
    let o = run(cmd, CMD_TIMEOUT);
    assert!(!o.timed_out, "{what} hung");
    assert!(!o.ok(), "{what} succeeded on a read-only mount");
    assert!(
        o.stderr_str().contains("Read-only file system"),
        "{what} failed without EROFS: {}",
        o.stderr_str()
    );
}

#[test]
fn writes_fail_with_erofs() {
    let m = Mount::new(fx("oci"));
    let file = m.path("index.json");
    let before = m.read("index.json");
    for dir in ["", "images/v2", "blobs/sha256"] {
        let d = m.path(dir);
        expect_erofs(
            Command::new("touch").arg(d.join("new-file")),
            &format!("touch {dir}/new-file"),
        );
        expect_erofs(
            Command::new("mkdir").arg(d.join("new-dir")),
            &format!("mkdir {dir}/new-dir"),
        );
    }
    expect_erofs(Command::new("touch").arg(&file), "touch index.json (utimes)");
    expect_erofs(Command::new("rm").arg("-f").arg(&file), "rm index.json");
    expect_erofs(
        Command::new("rm").arg("-rf").arg(m.path("images/v1")),
        "rm -rf images/v1",
    );
    expect_erofs(Command::new("chmod").arg("600").arg(&file), "chmod index.json");
    expect_erofs(Command::new("chown").arg("1:1").arg(&file), "chown index.json");
    expect_erofs(
        Command::new("mv").arg(&file).arg(m.path("index2.json")),
        "mv index.json",
    );
    expect_erofs(Command::new("ln").arg("-s").arg("x").arg(m.path("link")), "ln -s");
    expect_erofs(Command::new("ln").arg(&file).arg(m.path("hardlink")), "ln");
    expect_erofs(
        Command::new("truncate").arg("-s").arg("0").arg(&file),
        "truncate index.json",
    );
    if cmd_exists("setfattr") {
        expect_erofs(
            Command::new("setfattr")
                .arg("-n")
                .arg("user.x")
                .arg("-v")
                .arg("1")
                .arg(&file),
            "setfattr",
        );
    } else {
        panic!("setfattr missing: {INSTALL_HINT}");
    }
    // and through the system calls directly
    let e = fs::OpenOptions::new().write(true).open(&file).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EROFS), "open(O_WRONLY) index.json: {e}");
    let e = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("x"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EROFS), "open(O_CREAT) x: {e}");
    let e = fs::set_permissions(&file, fs::Permissions::from_mode(0o777)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EROFS), "chmod: {e}");
    assert_eq!(m.read("index.json"), before, "index.json changed");
}

#[test]
fn mount_options_ro_nodev_nosuid() {
    let m = Mount::new(fx("docker-archive.tar"));
    let info = mount_at(&m.dir).expect("mountinfo entry");
    for opt in ["ro", "nodev", "nosuid"] {
        assert!(
            info.mount_options.iter().any(|o| o == opt),
            "mount options {:?} lack {opt}",
            info.mount_options
        );
    }
    assert!(info.fs_type.starts_with("fuse"), "fs type {}", info.fs_type);
    // `mount` shows the same
    let o = run(&mut Command::new("mount"), CMD_TIMEOUT).assert_ok();
    let line = o
        .stdout_str()
        .lines()
        .find(|l| l.contains(&format!(" on {} type ", m.dir.display())))
        .map(str::to_owned)
        .expect("mount lists the mount point");
    for opt in ["ro", "nodev", "nosuid"] {
        assert!(line.contains(opt), "`mount` line lacks {opt}: {line}");
    }
}

fn inode_map(dir: &Path, paths: Vec<std::path::PathBuf>) -> BTreeMap<String, (u64, i64, u32)> {
    paths
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            (format!("/{}", rel.display()), (md.ino(), md.mtime(), md.mode()))
        })
        .collect()
}

fn check_inodes_stable(fixture: &str, whole_tree: bool) {
    {
        let src = fx(fixture);
        let a = Mount::new(&src);
        let b = Mount::new(&src);
        let paths = |m: &Mount| {
            if whole_tree {
                walk(&m.dir)
            } else {
                walk_metadata(&m.dir)
            }
        };
        let ia = inode_map(&a.dir, paths(&a));
        let ib = inode_map(&b.dir, paths(&b));
        assert!(ia.len() > 10, "{fixture}: only {} paths", ia.len());
        let mut diff = Vec::new();
        for (p, x) in &ia {
            match ib.get(p) {
                Some(y) if y == x => {}
                other => diff.push(format!("{p}: {x:?} vs {other:?}")),
            }
        }
        for p in ib.keys().filter(|p| !ia.contains_key(*p)) {
            diff.push(format!("{p}: only in the second mount"));
        }
        assert!(
            diff.is_empty(),
            "{fixture}: (inode, mtime, mode) differ across two mounts:\n{}",
            diff.join("\n")
        );
        // and `stat -c %i` agrees with what we read
        let o = run(
            Command::new("stat").arg("-c").arg("%i").arg(a.path("index.json")),
            CMD_TIMEOUT,
        )
        .assert_ok();
        assert_eq!(o.stdout_str().trim(), ia["/index.json"].0.to_string());
        // distinct paths of different types never share an inode
        let mut by_ino: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
        for (p, (ino, _, mode)) in &ia {
            if mode & 0o170000 == 0o040000 {
                by_ino.entry(*ino).or_default().push(p);
            }
        }
        let dup: Vec<_> = by_ino.values().filter(|v| v.len() > 1).collect();
        assert!(dup.is_empty(), "{fixture}: directories share inode numbers: {dup:?}");
    }
}

/// The metadata tree (everything but the rootfs/ and layers/ contents).
#[test]
fn inode_numbers_stable_across_mounts() {
    for fixture in ["oci", "docker-archive.tar", "multi", "v1-legacy.tar"] {
        check_inodes_stable(fixture, false);
    }
}

/// The whole tree, filesystem views included.
#[test]
fn inode_numbers_stable_across_mounts_whole_tree() {
    for fixture in ["oci", "docker-archive.tar"] {
        check_inodes_stable(fixture, true);
    }
}

#[test]
fn metadata_attributes() {
    for fixture in ["oci", "oci-archive.tar", "docker-archive.tar"] {
        let src = fx(fixture);
        let m = Mount::new(&src);
        let want_mtime = if src.is_dir() {
            fs::metadata(src.join("index.json")).unwrap().mtime()
        } else {
            fs::metadata(&src).unwrap().mtime()
        };
        let mut files = vec!["index.json".to_owned(), "oci-layout".to_owned()];
        files.extend(m.ls("blobs/sha256").into_iter().map(|n| format!("blobs/sha256/{n}")));
        for r in ref_dirs(&m) {
            files.push(format!("images/{r}/manifest.json"));
            files.push(format!("images/{r}/config.json"));
        }
        if fixture == "docker-archive.tar" {
            files.push("manifest.json".into());
            files.push("repositories".into());
        }
        for f in &files {
            let md = fs::symlink_metadata(m.path(f)).unwrap_or_else(|e| panic!("{fixture}: {f}: {e}"));
            assert!(md.is_file(), "{fixture}: {f} is not a regular file");
            assert_eq!(
                md.mode() & 0o7777,
                0o444,
                "{fixture}: {f} mode {:o}",
                md.mode() & 0o7777
            );
            assert_eq!((md.uid(), md.gid()), (0, 0), "{fixture}: {f} owner");
            assert_eq!(md.mtime(), want_mtime, "{fixture}: {f} mtime is not the source's");
            assert_eq!(md.len(), m.read(f).len() as u64, "{fixture}: {f} st_size");
        }
        let mut dirs = vec!["".to_owned(), "blobs".into(), "blobs/sha256".into(), "images".into()];
        dirs.extend(m.ls("images").into_iter().map(|r| format!("images/{r}")));
        for d in &dirs {
            let md = fs::symlink_metadata(m.path(d)).unwrap();
            assert!(md.is_dir(), "{fixture}: /{d} is not a directory");
            assert_eq!(
                md.mode() & 0o7777,
                0o555,
                "{fixture}: /{d} mode {:o}",
                md.mode() & 0o7777
            );
            assert_eq!((md.uid(), md.gid()), (0, 0), "{fixture}: /{d} owner");
        }
    }
}

/// rootfs/ of a mount reads like the rootfs umoci unpacks from the same image.
#[test]
fn rootfs_view_matches_umoci() {
    let want = crate::sources::reference_rootfs();
    let strip_root = |d: &[String]| d.iter().filter(|l| !l.starts_with("/ ")).cloned().collect::<Vec<_>>();
    for (fixture, r) in [("oci", "v2"), ("docker-archive.tar", "imgfs/test:v2")] {
        let m = Mount::new(fx(fixture));
        let root = m.path(&format!("images/{r}/rootfs"));
        let got = tree_dump(&root);
        assert!(
            strip_root(&got) == strip_root(want),
            "{fixture}: images/{r}/rootfs differs from umoci's unpack of oci:v2:\n{}",
            dump_diff(&strip_root(want), &strip_root(&got))
        );
        assert_eq!(fs::read(root.join("data/random.bin")).unwrap(), random_bytes());
        // the bottom layer alone
        let l0 = m.path(&format!("images/{r}/layers/0"));
        assert_eq!(sha256_file(&l0.join("bin/busybox")), expect("BUSYBOX_SHA256"));
        assert!(l0.join("tmp/to-delete.txt").is_file(), "layers/0 has tmp/to-delete.txt");
        assert!(!l0.join("etc/layer1.txt").exists(), "layers/0 has no etc/layer1.txt");
    }
}

#[test]
fn ref_dirs_have_filesystem_views() {
    let m = Mount::new(fx("oci"));
    for (r, n) in [("v1", 1), ("v2", 3), ("latest", 3)] {
        let d = m.path(&format!("images/{r}"));
        assert!(d.join("rootfs").is_dir(), "images/{r}/rootfs/ missing: {:?}", ls(&d));
        assert!(d.join("layers").is_dir(), "images/{r}/layers/ missing: {:?}", ls(&d));
        let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let got: Vec<String> = ls(&d.join("layers")).into_iter().collect();
        assert_eq!(got, want, "images/{r}/layers/");
    }
}

#[test]
fn statfs_works() {
    let m = Mount::new(fx("oci-archive.tar"));
    let o = run(
        Command::new("stat")
            .arg("-f")
            .arg("-c")
            .arg("%b %S %c %f %a %d")
            .arg(&m.dir),
        CMD_TIMEOUT,
    )
    .assert_ok();
    let v: Vec<u64> = o.stdout_str().split_whitespace().map(|x| x.parse().unwrap()).collect();
    let (blocks, frsize, files, bfree, bavail, ffree) = (v[0], v[1], v[2], v[3], v[4], v[5]);
    let total: u64 = m
        .ls("blobs/sha256")
        .iter()
        .map(|n| fs::metadata(m.path(&format!("blobs/sha256/{n}"))).unwrap().len())
        .sum();
    assert!(frsize > 0, "statfs: fundamental block size 0");
    let bytes = blocks * frsize;
    assert!(
        bytes >= total && bytes <= total + total / 2 + (1 << 20),
        "statfs reports {bytes} bytes ({blocks} x {frsize}), the blobs total {total}"
    );
    assert!(
        files >= m.ls("blobs/sha256").len() as u64 + 4,
        "statfs reports {files} nodes"
    );
    let _ = (bfree, bavail, ffree);
    // `stat -f` plain form works too
    run(Command::new("stat").arg("-f").arg(&m.dir), CMD_TIMEOUT).assert_ok();
}

/// Runs a mount command expected to mount the oci/ fixture at `mnt`, checks the mount, then
/// unmounts it with `imgfs umount`.
fn helper_mount(cmd: &mut Command, mnt: &Path) {
    let src = fx("oci");
    let o = run(cmd, MOUNT_TIMEOUT);
    let mounted = is_mounted(mnt);
    let cleanup = |mnt: &Path| {
        let _ = run_imgfs(["umount".as_ref(), mnt.as_os_str()], MOUNT_TIMEOUT);
        force_unmount(mnt);
    };
    if !o.ok() || !mounted {
        cleanup(mnt);
        panic!(
            "{} (mounted: {mounted})\n{}{}",
            o.describe(),
            o.stdout_str(),
            o.stderr_str()
        );
    }
    assert_no_panic(&o);
    let top = ls(mnt);
    let info = mount_at(mnt).unwrap();
    let idx = fs::read(mnt.join("index.json"));
    let u = imgfs_umount(mnt);
    let still = is_mounted(mnt);
    if still {
        cleanup(mnt);
    }
    assert_eq!(
        top,
        set(&["blobs", "images", "index.json", "manifest.json", "oci-layout"]),
        "{}",
        o.what
    );
    assert_eq!(idx.unwrap(), fs::read(src.join("index.json")).unwrap(), "{}", o.what);
    assert!(
        info.mount_options.iter().any(|o| o == "ro"),
        "options {:?}",
        info.mount_options
    );
    assert!(info.fs_type.starts_with("fuse"), "fs type {}", info.fs_type);
    assert!(u.ok(), "imgfs umount after {}: {}", o.what, u.stderr_str());
    assert!(!still, "still mounted after imgfs umount");
}

/// What `mount -t fuse.imgfs SOURCE DIR -o ro` runs: mount.fuse3, which runs
/// `imgfs SOURCE DIR -o ro,...` through /bin/sh with imgfs found on PATH. mount(8) itself drops
/// PATH from the helper's environment, so the helper is called directly here with the test
/// binary's directory first on PATH (see `mount_t_fuse_through_mount8` for mount(8) itself).
#[test]
fn mount_helper_form_via_mount_fuse3() {
    require(&["mount.fuse3"]);
    let t = tempdir();
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let bin_dir = imgfs().parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    helper_mount(
        Command::new("mount.fuse3")
            .arg(fx("oci"))
            .arg(&mnt)
            .arg("-t")
            .arg("fuse.imgfs")
            .arg("-o")
            .arg("ro")
            .env("PATH", &path),
        &mnt,
    );
}

/// mount(8) -> mount.fuse3 -> `imgfs SOURCE DIR -o OPTS`, naming the binary by its path
/// (`-t fuse` with `TYPE#SOURCE`) since mount(8) does not pass PATH on.
#[test]
fn mount_t_fuse_through_mount8() {
    require(&["mount", "mount.fuse3"]);
    let t = tempdir();
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let spec = format!("{}#{}", imgfs().display(), fx("oci").display());
    helper_mount(
        Command::new("mount")
            .arg("-t")
            .arg("fuse")
            .arg(&spec)
            .arg(&mnt)
            .arg("-o")
            .arg("ro"),
        &mnt,
    );
}

/// `imgfs umount` unmounts (the `Mount` guard falls back to fusermount3, this does not).
#[test]
fn imgfs_umount_unmounts() {
    let t = tempdir();
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = run_imgfs(
        ["mount".as_ref(), fx("oci-archive.tar").as_os_str(), mnt.as_os_str()],
        MOUNT_TIMEOUT,
    );
    assert_no_panic(&m);
    let mounted = is_mounted(&mnt);
    let u = imgfs_umount(&mnt);
    let still = is_mounted(&mnt);
    force_unmount(&mnt);
    assert!(m.ok() && mounted, "imgfs mount: {} {}", m.describe(), m.stderr_str());
    assert_no_panic(&u);
    assert!(u.ok(), "imgfs umount: {} {}", u.describe(), u.stderr_str());
    assert!(!still, "still mounted after imgfs umount");
    // the directory is usable again: empty, and mountable a second time
    assert!(ls(&mnt).is_empty());
    let again = run_imgfs(
        ["mount".as_ref(), fx("oci-archive.tar").as_os_str(), mnt.as_os_str()],
        MOUNT_TIMEOUT,
    );
    let remounted = is_mounted(&mnt);
    let _ = run_imgfs(["umount".as_ref(), mnt.as_os_str()], MOUNT_TIMEOUT);
    force_unmount(&mnt);
    assert!(again.ok() && remounted, "second imgfs mount: {}", again.stderr_str());
}

#[test]
fn umount_of_a_plain_directory_fails() {
    // imgfs umount of something that is not mounted fails with one line, no panic
    let t = tempdir();
    let o = run_imgfs(["umount".as_ref(), t.path().as_os_str()], ERROR_TIMEOUT);
    assert_no_panic(&o);
    assert!(!o.ok(), "imgfs umount of a plain directory succeeded");
    assert_eq!(
        o.stderr_str().trim_end().lines().count(),
        1,
        "stderr: {}",
        o.stderr_str()
    );
    assert!(
        o.stderr_str().contains(&*t.path().to_string_lossy()),
        "stderr names the directory: {}",
        o.stderr_str()
    );
}
