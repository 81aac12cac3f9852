//! Broken inputs and bad mount points: `imgfs mount` fails quickly, with one line on stderr that
//! names the file and the problem, never a panic, and leaves nothing mounted.

use crate::util::*;
use std::fs;
use std::path::{Path, PathBuf};

/// Runs `imgfs mount SOURCE MNT` expecting a failure, and checks the message:
/// one line, naming `names` (each must appear), with one of `keywords` (case-insensitive) in
/// what is left once the named paths are taken out (so a file called missing-blob/ does not
/// count as saying "missing").
fn expect_mount_error(source: &str, mnt: &Path, names: &[&str], keywords: &[&str]) -> String {
    let o = run_imgfs(["mount".as_ref(), source.as_ref(), mnt.as_os_str()], ERROR_TIMEOUT);
    let left_mounted = is_mounted(mnt);
    if left_mounted {
        force_unmount(mnt);
    }
    assert_no_panic(&o);
    assert!(
        !o.timed_out,
        "imgfs mount {source} {} hung (killed after {:?})",
        mnt.display(),
        o.elapsed
    );
    assert!(
        !o.ok(),
        "imgfs mount {source} {} succeeded, expected a failure\n{}",
        mnt.display(),
        o.stderr_str()
    );
    assert!(
        !left_mounted,
        "a failed imgfs mount {source} left a mount at {}",
        mnt.display()
    );
    let err = o.stderr_str();
    let msg = err.trim_end();
    assert!(!msg.is_empty(), "imgfs mount {source}: failed with an empty stderr");
    assert_eq!(
        msg.lines().count(),
        1,
        "imgfs mount {source}: stderr must be ONE line, got:\n{msg}"
    );
    for n in names {
        assert!(
            msg.contains(n),
            "imgfs mount {source}: message does not name {n}: {msg}"
        );
    }
    let mut rest = msg.to_owned();
    let mut strip: Vec<&str> = names.to_vec();
    strip.push(source);
    strip.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for n in strip {
        rest = rest.replace(n, "");
    }
    let lower = rest.to_lowercase();
    assert!(
        keywords.iter().any(|k| lower.contains(&k.to_lowercase())),
        "imgfs mount {source}: message names no problem among {keywords:?}: {msg}"
    );
    msg.to_owned()
}

fn fresh_mnt(t: &tempfile::TempDir) -> PathBuf {
    let d = t.path().join("mnt");
    fs::create_dir(&d).unwrap();
    d
}

fn bad(name: &str, keywords: &[&str], also: &[&str]) -> String {
    let src = fx(&format!("bad/{name}"));
    let s = src.to_string_lossy().into_owned();
    let t = tempdir();
    let mnt = fresh_mnt(&t);
    let mut names = vec![s.trim_end_matches('/')];
    names.extend_from_slice(also);
    expect_mount_error(&s, &mnt, &names, keywords)
}

#[test]
fn bad_truncated_in_blob() {
    bad("truncated.tar", &["truncated"], &[]);
}

#[test]
fn bad_truncated_in_header() {
    bad("truncated-header.tar", &["truncated"], &[]);
}

#[test]
fn bad_not_an_image() {
    bad(
        "not-an-image.tar",
        &[
            "not a container image",
            "not an image",
            "no image",
            "unknown format",
            "unrecognized",
        ],
        &[],
    );
}

#[test]
fn bad_garbage() {
    bad(
        "garbage.bin",
        &[
            "not a container image",
            "not an image",
            "not a tar",
            "unknown format",
            "unrecognized",
            "not a readable",
        ],
        &[],
    );
}

#[test]
fn bad_json_index() {
    bad("bad-json", &["json"], &["index.json"]);
}

#[test]
fn bad_missing_blob() {
    let d = expect("MISSING_LAYER");
    bad("missing-blob", &["missing", "absent", "not found"], &[digest_hex(d)]);
}

#[test]
fn bad_digest_mismatch() {
    let d = expect("OCI_V2_CONFIG");
    let msg = bad(
        "digest-mismatch",
        &["digest", "mismatch", "does not match"],
        &[digest_hex(d)],
    );
    assert!(
        msg.to_lowercase().contains("match"),
        "the message should say the digest does not match: {msg}"
    );
}

#[test]
fn bad_manifest_json() {
    bad("bad-manifest-json.tar", &["json"], &["manifest.json"]);
}

#[test]
fn missing_source_path() {
    let t = tempdir();
    let mnt = fresh_mnt(&t);
    let src = t.path().join("no-such-image.tar");
    let s = src.to_string_lossy().into_owned();
    expect_mount_error(&s, &mnt, &[&s], &["no such file", "not found", "does not exist"]);
    // the transport forms too
    for form in [
        format!("oci:{s}"),
        format!("oci-archive:{s}"),
        format!("docker-archive:{s}"),
        format!("dir:{s}"),
    ] {
        expect_mount_error(&form, &mnt, &[&s], &["no such file", "not found", "does not exist"]);
    }
}

#[test]
fn missing_mount_point() {
    let t = tempdir();
    let mnt = t.path().join("does-not-exist");
    let src = fx("oci").to_string_lossy().into_owned();
    let m = mnt.to_string_lossy().into_owned();
    expect_mount_error(&src, &mnt, &[&m], &["no such file", "not found", "does not exist"]);
    assert!(!mnt.exists(), "imgfs mount created the missing mount point");
}

#[test]
fn mount_point_not_empty() {
    let t = tempdir();
    let mnt = fresh_mnt(&t);
    fs::write(mnt.join("something"), b"x").unwrap();
    let src = fx("oci").to_string_lossy().into_owned();
    let m = mnt.to_string_lossy().into_owned();
    expect_mount_error(&src, &mnt, &[&m], &["not empty", "non-empty", "nonempty"]);
    assert_eq!(fs::read(mnt.join("something")).unwrap(), b"x");
}

#[test]
fn mount_point_is_a_file() {
    let t = tempdir();
    let file = t.path().join("file");
    fs::write(&file, b"x").unwrap();
    let src = fx("oci").to_string_lossy().into_owned();
    let m = file.to_string_lossy().into_owned();
    expect_mount_error(&src, &file, &[&m], &["not a directory"]);
}

#[test]
fn mount_point_already_mounted() {
    let first = Mount::new(fx("oci"));
    let src = fx("oci-archive.tar").to_string_lossy().into_owned();
    let m = first.dir.to_string_lossy().into_owned();
    // expect_mount_error must not unmount the first mount: check it is still there after
    let o = run_imgfs(["mount".as_ref(), src.as_ref(), first.dir.as_os_str()], ERROR_TIMEOUT);
    assert_no_panic(&o);
    assert!(!o.timed_out, "imgfs mount onto a mounted dir hung");
    assert!(!o.ok(), "imgfs mount onto an imgfs mount point succeeded");
    let msg = o.stderr_str();
    let msg = msg.trim_end();
    assert_eq!(msg.lines().count(), 1, "stderr must be ONE line, got:\n{msg}");
    assert!(msg.contains(&m), "message does not name {m}: {msg}");
    let rest = msg.replace(&m, "").to_lowercase();
    assert!(
        ["already mounted", "already", "not empty", "busy", "mount point"]
            .iter()
            .any(|k| rest.contains(k)),
        "message names no problem: {msg}"
    );
    // still exactly one mount there, the first, and it still works
    let count = mountinfo().iter().filter(|i| i.mount_point == first.dir).count();
    assert_eq!(count, 1, "{count} mounts stacked on {}", first.dir.display());
    assert_eq!(first.ls("images"), set(&["latest", "v1", "v2"]));
}

#[test]
fn bad_reference_selectors() {
    let t = tempdir();
    let mnt = fresh_mnt(&t);
    let da = fx("docker-archive.tar").to_string_lossy().into_owned();
    expect_mount_error(
        &format!("docker-archive:{da}:nosuch/image:tag"),
        &mnt,
        &[&da],
        &["no image", "not found", "no such"],
    );
    expect_mount_error(
        &format!("docker-archive:{da}:@7"),
        &mnt,
        &[&da],
        &["no image", "not found", "no such", "out of range"],
    );
    let oci = fx("oci").to_string_lossy().into_owned();
    expect_mount_error(
        &format!("oci:{oci}:nosuchref"),
        &mnt,
        &[&oci],
        &["no image", "not found", "no such"],
    );
}

/// Real broken inputs from other projects: a manifest.json that is `null`, layouts whose
/// index.json names manifests the layout lacks, configs whose size is not their descriptor's.
#[test]
fn real_broken_fixtures() {
    let root = shared_fixtures();
    let cases: &[(&str, &[&str])] = &[
        (
            "google-go-containerregistry/tarball/null_manifest.tar",
            &["manifest.json"],
        ),
        (
            "containers-image/oci-layout/manifest",
            &["missing", "absent", "not found"],
        ),
        (
            "containers-image/oci-layout/two_images_manifest",
            &["missing", "absent", "not found"],
        ),
        (
            "containers-image/oci-layout/delete_image_shared_blobs_dir",
            &["missing", "absent", "not found"],
        ),
        // configs whose size differs from their descriptor's
        (
            "containers-image/oci-layout/delete_image_multiple_images",
            &["size", "bytes"],
        ),
        (
            "containers-image/oci-layout/delete_image_only_one_image",
            &["size", "bytes"],
        ),
    ];
    for (rel, kw) in cases {
        let p = root.join(rel);
        assert!(p.exists(), "shared fixture {rel} missing");
        let t = tempdir();
        let mnt = fresh_mnt(&t);
        let s = p.to_string_lossy().into_owned();
        expect_mount_error(&s, &mnt, &[&s], kw);
    }
}

/// The one line is meant for a person: printable text (no raw bytes from the input), and no
/// part said twice in a row (as when an error's cause is printed by both its Display and the
/// error chain: "invalid JSON: EOF ...: EOF ...").
#[test]
fn error_messages_are_clean() {
    let mut f = Failures::default();
    for name in [
        "truncated.tar",
        "truncated-header.tar",
        "not-an-image.tar",
        "garbage.bin",
        "bad-json",
        "missing-blob",
        "digest-mismatch",
        "bad-manifest-json.tar",
    ] {
        let src = fx(&format!("bad/{name}"));
        let t = tempdir();
        let mnt = fresh_mnt(&t);
        let o = run_imgfs(["mount".as_ref(), src.as_os_str(), mnt.as_os_str()], ERROR_TIMEOUT);
        force_unmount(&mnt);
        assert_no_panic(&o);
        let msg = o.stderr_str().trim_end().to_owned();
        f.check(
            !msg.contains('\u{FFFD}') && !msg.chars().any(|c| c.is_control()),
            || format!("{name}: message carries raw bytes or control characters: {msg:?}"),
        );
        let parts: Vec<&str> = msg.split(": ").map(str::trim).collect();
        let adjacent = parts.windows(2).any(|w| w[0] == w[1] && !w[0].is_empty());
        let n = parts.len();
        let suffix = (1..=n / 2).any(|k| parts[n - k..] == parts[n - 2 * k..n - k]);
        f.check(!adjacent && !suffix, || {
            format!("{name}: message repeats itself: {msg}")
        });
    }
    f.assert_none("error messages");
}

/// Without /dev/fuse (hidden here by a private tmpfs on /dev in a new mount namespace) the
/// mount fails at once with one line that says what is missing.
#[test]
fn no_dev_fuse() {
    crate::util::require(&["unshare"]);
    let t = crate::util::tempdir();
    let mnt = fresh_mnt(&t);
    let script = format!(
        "mount -t tmpfs none /dev && exec {} mount {} {}",
        crate::util::imgfs().display(),
        crate::util::fx("oci").display(),
        mnt.display()
    );
    let o = crate::util::run(
        std::process::Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]),
        crate::util::ERROR_TIMEOUT,
    );
    crate::util::assert_no_panic(&o);
    assert!(!o.ok(), "mount without /dev/fuse succeeded");
    let err = o.stderr_str();
    assert_eq!(err.trim().lines().count(), 1, "expected one line, got:\n{err}");
    assert!(err.contains("/dev/fuse does not exist"), "unclear error: {err}");
}
