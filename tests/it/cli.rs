//! The everyday CLI (issue 18): a mistyped subcommand, `imgfs ls -l` against GNU `ls -ln` of
//! the mount, `ls` of one file, `cat` through symlinks resolved inside the image like chroot.

use crate::util::*;
use std::process::Command;

fn imgfs_ok(args: &[&str]) -> Vec<u8> {
    run_imgfs(args, CMD_TIMEOUT).assert_ok().stdout
}

/// `imgfs inpsect foo` is a typo, not a mount-helper call: clap's suggestion, exit 2.
#[test]
fn a_mistyped_subcommand_gets_a_suggestion() {
    let o = run_imgfs(["inpsect", "foo"], ERROR_TIMEOUT);
    assert_eq!(o.status.and_then(|s| s.code()), Some(2), "{}", o.stderr_str());
    let err = o.stderr_str();
    assert!(err.contains("unrecognized subcommand 'inpsect'"), "{err}");
    assert!(err.contains("a similar subcommand exists: 'inspect'"), "{err}");
    // Two operands without -o are not the mount.fuse3 form either.
    let src = fx("oci");
    let o = run_imgfs([src.to_str().unwrap(), "/nonexistent-mnt"], ERROR_TIMEOUT);
    assert_eq!(o.status.and_then(|s| s.code()), Some(2), "{}", o.stderr_str());
    assert!(o.stderr_str().contains("unrecognized subcommand"), "{}", o.stderr_str());
}

/// `imgfs ls -l` prints what GNU `ls -ln --time-style=long-iso` prints on the mount (less its
/// "total" line), for a directory and for one file; `imgfs ls SRC FILE` prints that entry.
#[test]
fn ls_long_matches_ls_of_the_mount() {
    require(&["ls"]);
    let src = fx("oci");
    let s = src.to_str().unwrap();
    let m = Mount::new(&src);
    for rel in [
        "images/v2/rootfs",
        "images/v2/rootfs/bin",
        "images/v2/rootfs/bin/sh",
        "images/v2/rootfs/tmp",
        "images/v2",
        "images/v2/config.json",
    ] {
        let o = run(
            Command::new("ls")
                .args(["-ln", "--time-style=long-iso"])
                .arg(m.path(rel))
                .env("TZ", "UTC")
                .env("LC_ALL", "C"),
            CMD_TIMEOUT,
        )
        .assert_ok();
        let mnt_prefix = format!("{}/", m.dir.display());
        let want: Vec<String> = o
            .stdout_str()
            .lines()
            .filter(|l| !l.starts_with("total "))
            .map(|l| l.replace(&mnt_prefix, ""))
            .collect();
        let got = String::from_utf8(imgfs_ok(&["ls", "-l", s, rel])).unwrap();
        let got: Vec<&str> = got.lines().collect();
        assert_eq!(got, want, "imgfs ls -l {rel}");
    }
    // Without -l: one file prints its path, as ls does (it printed a blank line).
    assert_eq!(
        imgfs_ok(&["ls", s, "images/v2/config.json"]),
        b"images/v2/config.json\n"
    );
    assert_eq!(
        imgfs_ok(&["ls", s, "images/v2/rootfs/bin/busybox"]),
        b"images/v2/rootfs/bin/busybox\n"
    );
}

/// `imgfs cat` follows symlinks inside the image's root, as `chroot IMAGE cat` would: relative
/// and absolute targets, chains; a loop and an over-long chain give one line; `..` and `/` in
/// a target never leave the image.
#[test]
fn cat_follows_symlinks_inside_the_image() {
    let src = fx("oci");
    let s = src.to_str().unwrap();
    // bin/sh -> busybox
    assert_eq!(
        sha256_bytes(&imgfs_ok(&["cat", s, "images/v2/rootfs/bin/sh"])),
        expect("BUSYBOX_SHA256")
    );
    let hostile = hostile_fixtures().join("layers");
    let h = hostile.to_str().unwrap();
    let root = "images/symlinks/rootfs";
    // a chain of 30 links, and an absolute link whose target the image lacks
    assert_eq!(imgfs_ok(&["cat", h, &format!("{root}/c00")]), b"T\n");
    for (link, reason) in [
        (
            "loop-a",
            "too many levels of symbolic links (a symlink loop in the image)",
        ),
        (
            "self",
            "too many levels of symbolic links (a symlink loop in the image)",
        ),
        ("e00", "too many levels of symbolic links (a symlink loop in the image)"),
        // `/etc/passwd` and `../../..../tmp` resolve inside the image, which has neither
        ("abs-passwd", "no such file or directory"),
        ("up/imgfs-hostile-escape-rel", "no such file or directory"),
        ("hostroot/etc/passwd", "no such file or directory"),
    ] {
        let path = format!("{root}/{link}");
        let o = run_imgfs(["cat", h, &path], CMD_TIMEOUT);
        assert_no_panic(&o);
        assert!(!o.ok() && o.stdout.is_empty(), "cat {link}: {}", o.describe());
        let err = o.stderr_str();
        let last = err.lines().last().unwrap_or("");
        assert_eq!(last, format!("imgfs: {path} in {h}: {reason}"), "cat {link}: {err}");
    }
    // `hostroot -> /` is the image's root: its own `target` file, not the host's.
    assert_eq!(imgfs_ok(&["cat", h, &format!("{root}/hostroot/target")]), b"T\n");
    // `ls -l` of a link shows the link; with a trailing slash, `ls` follows it like ls(1)
    let line = String::from_utf8(imgfs_ok(&["ls", "-l", h, &format!("{root}/abs-passwd")])).unwrap();
    assert!(
        line.starts_with("lrwxrwxrwx ") && line.ends_with(&format!(" {root}/abs-passwd -> /etc/passwd\n")),
        "{line}"
    );
}
