//! Tests of `seek.rs`, kept apart so that the code reads without scrolling past them.

use super::super::header::padded;
use super::super::testutil::*;
use super::super::{EntryKind, SparseChunk, TarError};
use super::*;

// ---- real GNU tar archives, cross-checked with the tar crate and the source tree ----

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    tree: TreeOpts,
    keeps: Keeps,
}

const ALL_PLAIN: TreeOpts = TreeOpts {
    special: true,
    prefix: true,
    long: true,
    odd_times: true,
    sparse: false,
    huge_sparse: false,
    xattrs: false,
};
const SPARSE: TreeOpts = TreeOpts {
    special: false,
    prefix: false,
    long: false,
    odd_times: false,
    sparse: true,
    huge_sparse: true,
    xattrs: false,
};
const SECS: Keeps = Keeps { nsec: false, ids: true };
const NSECS: Keeps = Keeps { nsec: true, ids: true };

fn cases() -> Vec<Case> {
    let plain = TreeOpts::default();
    let ustar = TreeOpts {
        special: true,
        prefix: true,
        ..plain
    };
    vec![
        Case {
            name: "v7",
            args: &["--format=v7"],
            tree: plain,
            keeps: SECS,
        },
        Case {
            name: "ustar",
            args: &["--format=ustar"],
            tree: ustar,
            keeps: SECS,
        },
        Case {
            name: "oldgnu",
            args: &["--format=oldgnu"],
            tree: ALL_PLAIN,
            keeps: SECS,
        },
        Case {
            name: "gnu",
            args: &["--format=gnu"],
            tree: ALL_PLAIN,
            keeps: SECS,
        },
        Case {
            name: "posix",
            args: &["--format=posix", "--xattrs", "--xattrs-include=user.*"],
            tree: TreeOpts {
                xattrs: true,
                ..ALL_PLAIN
            },
            keeps: NSECS,
        },
        Case {
            name: "posix-global",
            args: &["--format=posix", "--pax-option=comment=global-hello"],
            tree: ALL_PLAIN,
            keeps: NSECS,
        },
        Case {
            name: "gnu-sparse",
            args: &["--format=gnu", "--sparse"],
            tree: SPARSE,
            keeps: SECS,
        },
        Case {
            name: "oldgnu-sparse",
            args: &["--format=oldgnu", "--sparse"],
            tree: SPARSE,
            keeps: SECS,
        },
        Case {
            name: "pax-sparse-0.0",
            args: &["--format=posix", "--sparse", "--sparse-version=0.0"],
            tree: SPARSE,
            keeps: NSECS,
        },
        Case {
            name: "pax-sparse-0.1",
            args: &["--format=posix", "--sparse", "--sparse-version=0.1"],
            tree: SPARSE,
            keeps: NSECS,
        },
        Case {
            name: "pax-sparse-1.0",
            args: &["--format=posix", "--sparse", "--sparse-version=1.0"],
            tree: SPARSE,
            keeps: NSECS,
        },
        Case {
            name: "gnu-big-ids",
            args: &["--format=gnu", "--owner=big:3000000", "--group=big:40000000"],
            tree: plain,
            keeps: Keeps {
                nsec: false,
                ids: false,
            },
        },
        Case {
            name: "posix-big-ids",
            args: &["--format=posix", "--owner=big:3000000", "--group=big:40000000"],
            tree: plain,
            keeps: Keeps { nsec: true, ids: false },
        },
    ]
}

#[test]
fn gnu_tar_cross_check() {
    require_gnu_tar();
    for case in cases() {
        let tree = make_tree(case.tree);
        let archive = tar_create(tree.dir.path(), case.args);
        eprintln!("{}: {} bytes", case.name, archive.len());
        let entries = cross_check(&archive, tree.dir.path(), case.keeps);
        check_case_specifics(&case, &tree, &entries);
    }
}

/// Expectations beyond "agrees with the tar crate and the filesystem".
fn check_case_specifics(case: &Case, tree: &Tree, entries: &[Entry]) {
    let find = |suffix: &[u8]| entries.iter().find(|e| e.path.ends_with(suffix));
    let name = case.name;
    assert!(find(b"caf\xe9-\xff").is_some(), "{name}: non-UTF-8 name");
    if case.tree.long {
        let deep = find(&b"c".repeat(80)).expect("deep file");
        assert!(deep.path.len() > 255, "{name}");
        let link = find(b"longtarget").unwrap();
        assert_eq!(link.link.as_deref(), Some("t/".repeat(75).as_bytes()), "{name}");
        let hard = find(b"hard-to-deep").unwrap();
        assert_eq!(hard.kind, EntryKind::Hardlink, "{name}");
        assert!(hard.link.as_ref().unwrap().len() > 255, "{name}");
    }
    if case.tree.special {
        assert_eq!(find(b"d/fifo").unwrap().kind, EntryKind::Fifo, "{name}");
        if let Some(dev) = find(b"d/null") {
            assert_eq!(
                (dev.kind, dev.dev_major, dev.dev_minor),
                (EntryKind::CharDev, 1, 3),
                "{name}"
            );
        }
    }
    if case.tree.odd_times {
        assert_eq!(find(b"d/neg").unwrap().mtime, -1_000_001, "{name}");
        assert_eq!(find(b"d/future").unwrap().mtime, 9_000_000_000, "{name}");
    }
    if case.keeps.nsec {
        let one = find(b"d/one").unwrap();
        assert_eq!((one.mtime, one.mtime_nsec), (1_700_000_000, 123_456_789), "{name}");
        if case.tree.odd_times {
            assert_eq!(find(b"d/neg").unwrap().mtime_nsec, 750_000_000, "{name}");
        }
    }
    if !case.keeps.ids {
        assert!(
            entries.iter().all(|e| (e.uid, e.gid) == (3_000_000, 40_000_000)),
            "{name}"
        );
    }
    if case.tree.xattrs && tree.xattrs {
        let x = &find(b"d/attrs").unwrap().xattrs;
        let want = [
            (b"user.bin".to_vec(), vec![0, 0xff, b'=', b'A']),
            (b"user.foo".to_vec(), b"bar".to_vec()),
        ];
        let mut got = x.clone();
        got.sort();
        assert_eq!(got, want, "{name}");
    }
    if case.tree.sparse {
        let holes = find(b"s/holes").unwrap();
        assert!(holes.sparse.as_ref().is_some_and(|s| !s.is_empty()), "{name}");
        assert!(holes.stored_size < holes.size, "{name}");
        let all = find(b"s/allhole").unwrap();
        assert_eq!((all.stored_size, all.sparse.as_deref()), (0, Some(&[][..])), "{name}");
        assert!(find(b"s/many").unwrap().sparse.as_ref().unwrap().len() >= 60, "{name}");
        if tree.huge {
            let huge = find(b"huge").unwrap();
            assert_eq!(huge.size, 9 << 30, "{name}");
            let last = huge.sparse.as_ref().unwrap().last().unwrap();
            assert_eq!(last.offset, 8 << 30, "{name}");
        }
    }
}

/// libarchive's writer: a second, independent producer (LIBARCHIVE.xattr records, its own
/// PAX sparse 1.0 writer). Skipped where bsdtar is not installed.
#[test]
fn bsdtar_cross_check() {
    require_bsdtar();
    let ustar = TreeOpts {
        special: true,
        prefix: true,
        ..TreeOpts::default()
    };
    // No pre-1970 fractional mtimes: libarchive 3.6 writes -1000000.25 s as
    // "mtime=-1000001.75" (floor seconds, then the positive fraction), which as the decimal
    // number POSIX specifies is a different time; GNU tar writes "-1000000.25".
    let pax = TreeOpts {
        sparse: true,
        xattrs: true,
        odd_times: false,
        ..ALL_PLAIN
    };
    let cases: [(&str, &[&str], TreeOpts, Keeps); 3] = [
        ("bsdtar-pax", &["--format=pax", "--xattrs"], pax, NSECS),
        ("bsdtar-ustar", &["--format=ustar"], ustar, SECS),
        (
            "bsdtar-gnutar",
            &["--format=gnutar"],
            TreeOpts { long: true, ..ustar },
            SECS,
        ),
    ];
    for (name, args, opts, keeps) in cases {
        let tree = make_tree(opts);
        let archive = bsdtar_create(tree.dir.path(), args);
        eprintln!("{name}: {} bytes", archive.len());
        let entries = cross_check(&archive, tree.dir.path(), keeps);
        assert!(entries.iter().any(|e| e.path.ends_with(b"caf\xe9-\xff")), "{name}");
        if opts.sparse {
            let holes = entries.iter().find(|e| e.path.ends_with(b"s/holes")).unwrap();
            assert!(holes.sparse.is_some(), "{name}: libarchive wrote no sparse map");
        }
    }
}

/// Names with '=' and '%' are escaped by both writers; libarchive also writes each xattr
/// twice (LIBARCHIVE.xattr base64 + SCHILY.xattr raw), which must collapse into one.
#[test]
fn escaped_xattr_names_from_both_writers() {
    let tree = make_tree(TreeOpts::default());
    let f = tree.dir.path().join("d/one");
    let name = "user.we=ird%name";
    let set = |n: &str, v: &str| {
        run(
            "setfattr",
            &["-n".as_ref(), n.as_ref(), "-v".as_ref(), v.as_ref(), f.as_os_str()],
        )
    };
    // user.* xattrs work on every file system a test directory lives on here (ext4, tmpfs >= 6.6).
    assert!(
        set(name, "hello") && set("user.bin", "0x00ff3d41"),
        "setfattr failed on {} (package attr: bash scripts/install-deps.sh)",
        f.display()
    );
    require_gnu_tar();
    require_bsdtar();
    let archives = [
        tar_create(tree.dir.path(), &["--format=posix", "--xattrs", "--xattrs-include=*"]),
        bsdtar_create(tree.dir.path(), &["--format=pax", "--xattrs"]),
    ];
    for archive in archives {
        let v = index_all(&archive).unwrap();
        let e = v.iter().find(|e| e.path.ends_with(b"d/one")).unwrap();
        let mut got = e.xattrs.clone();
        got.sort();
        let want = vec![
            (b"user.bin".to_vec(), vec![0, 0xff, b'=', b'A']),
            (name.as_bytes().to_vec(), b"hello".to_vec()),
        ];
        assert_eq!(got, want);
    }
}

// ---- synthetic archives: every dialect feature, hand-made ----

fn one(archive: &[u8]) -> Entry {
    let mut v = index_all(archive).unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

#[test]
fn v7_and_trailing_slash_dirs() {
    let mut a = Ar::new();
    a.file(Fmt::V7, b"plain", b"data!");
    a.header(Hdr::new(Fmt::V7, b"olddir/", 0, 0));
    a.header(Hdr::new(Fmt::V7, b"olddir2/", b'0', 0));
    // v7 has no prefix: junk there must not be joined.
    a.header(Hdr::new(Fmt::V7, b"noprefix", b'0', 0).set(345, b"junk"));
    a.end();
    let v = index_all(&a.0).unwrap();
    let got: Vec<_> = v.iter().map(|e| (e.path.as_slice(), e.kind, e.size)).collect();
    assert_eq!(
        got,
        [
            (&b"plain"[..], EntryKind::File, 5),
            (b"olddir/", EntryKind::Dir, 0),
            (b"olddir2/", EntryKind::Dir, 0),
            (b"noprefix", EntryKind::File, 0),
        ]
    );
    assert_eq!(read_data(&a.0, &v[0]), b"data!");
    assert_eq!(
        (v[0].mode, v[0].uid, v[0].gid, v[0].mtime),
        (0o644, 1000, 1001, 1_700_000_000)
    );
    assert_eq!((v[0].header_offset, v[0].data_offset, v[0].stored_size), (0, 512, 5));
}

#[test]
fn ustar_prefix_and_star_prefix() {
    let h = Hdr::new(Fmt::Ustar, b"name", b'0', 0).set(345, b"some/prefix");
    assert_eq!(one(&h.bytes()).path, b"some/prefix/name");
    let full = [b'p'; 155];
    let h = Hdr::new(Fmt::Ustar, &[b'n'; 100], b'0', 0).set(345, &full);
    assert_eq!(one(&h.bytes()).path.len(), 256);
    // star: 131-byte prefix, atime/ctime after it, "tar\0" at 508.
    let h = Hdr::new(Fmt::Ustar, b"n", b'0', 0)
        .set(345, &[b'q'; 131])
        .set(476, b"12345670123")
        .set(508, b"tar\0");
    let e = one(&h.bytes());
    assert_eq!(e.path, [&[b'q'; 131][..], b"/n"].concat());
    // GNU: the prefix area holds atime etc., never a prefix.
    let h = Hdr::new(Fmt::Gnu, b"g", b'0', 0).set(345, b"14000000000");
    assert_eq!(one(&h.bytes()).path, b"g");
}

#[test]
fn number_encodings() {
    // Octal with leading spaces and trailing space/NUL variants.
    let h = Hdr::new(Fmt::Ustar, b"f", b'0', 3)
        .set(100, b"   755 \0")
        .set(108, b"  1750\0\0")
        .set(116, b"0001751 ")
        .set(124, b"         3 ")
        .set(136, b"\0 1400000000");
    let mut a = Ar(h.bytes().to_vec());
    a.data(b"abc");
    let e = one(&a.0);
    assert_eq!(
        (e.mode, e.uid, e.gid, e.size, e.mtime),
        (0o755, 1000, 1001, 3, 0o1400000000)
    );
    // GNU base-256: size, uid, gid, positive and negative mtime.
    let mut size = [0u8; 12];
    size[0] = 0x80;
    size[11] = 4;
    let mut uid = [0u8; 8];
    uid[0] = 0x80;
    uid[4..].copy_from_slice(&5_000_000u32.to_be_bytes());
    let mut mtime = [0xffu8; 12];
    mtime[4..].copy_from_slice(&(-86_400i64).to_be_bytes());
    let h = Hdr::new(Fmt::Gnu, b"b", b'0', 0)
        .set(124, &size)
        .set(108, &uid)
        .set(116, &uid)
        .set(136, &mtime)
        .set(100, &[0x80, 0, 0, 0, 0, 0, 0o1, 0xed]);
    let mut a = Ar(h.bytes().to_vec());
    a.data(b"abcd");
    let e = one(&a.0);
    assert_eq!(
        (e.size, e.uid, e.gid, e.mtime, e.mode),
        (4, 5_000_000, 5_000_000, -86_400, 0o755)
    );
    // Mode keeps only permission and special bits.
    let e = one(&Hdr::new(Fmt::Ustar, b"m", b'0', 0).num(100..108, 0o106_4755).bytes());
    assert_eq!(e.mode, 0o4755);
}

#[test]
fn devices_and_kinds() {
    let mut a = Ar::new();
    for (name, t) in [
        (&b"c"[..], b'3'),
        (b"b", b'4'),
        (b"p", b'6'),
        (b"d/", b'5'),
        (b"k", b'7'),
    ] {
        a.header(Hdr::new(Fmt::Ustar, name, t, 0).num(329..337, 8).num(337..345, 1));
    }
    a.header(Hdr::new(Fmt::Ustar, b"s", b'2', 0).set(157, b"target"));
    a.header(Hdr::new(Fmt::Ustar, b"h", b'1', 0).set(157, b"k"));
    // Device numbers of non-devices are ignored even if garbage.
    a.header(Hdr::new(Fmt::Ustar, b"f", b'0', 0).set(329, b"garbage!"));
    a.end();
    let v = index_all(&a.0).unwrap();
    let got: Vec<_> = v
        .iter()
        .map(|e| (e.kind, e.dev_major, e.dev_minor, e.link.clone()))
        .collect();
    let t = |s: &str| Some(s.as_bytes().to_vec());
    assert_eq!(
        got,
        [
            (EntryKind::CharDev, 8, 1, None),
            (EntryKind::BlockDev, 8, 1, None),
            (EntryKind::Fifo, 0, 0, None),
            (EntryKind::Dir, 0, 0, None),
            (EntryKind::File, 0, 0, None),
            (EntryKind::Symlink, 0, 0, t("target")),
            (EntryKind::Hardlink, 0, 0, t("k")),
            (EntryKind::File, 0, 0, None),
        ]
    );
    // A device number beyond u32 is an error.
    let h = Hdr::new(Fmt::Gnu, b"c", b'3', 0).set(329, &[0x80, 0, 0, 1, 0, 0, 0, 0]);
    let off = 0;
    assert!(matches!(index_all(&h.bytes()), Err(TarError::BadNumber { offset, field: "devmajor" }) if offset == off));
}

#[test]
fn gnu_long_names_and_links() {
    let long = [b'x'; 300];
    let target = [b'y'; 200];
    let mut a = Ar::new();
    a.gnu_long(b'L', &long);
    a.gnu_long(b'K', &target);
    a.header(Hdr::new(Fmt::Gnu, b"truncated-name", b'2', 0).set(157, b"truncated-link"));
    // 'L' without a NUL terminator: the whole data is the name.
    a.header(Hdr::new(Fmt::Gnu, b"././@LongLink", b'L', 5)).data(b"abcde");
    a.file(Fmt::Gnu, b"short", b"12");
    a.end();
    let v = index_all(&a.0).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[0].path.as_slice(), v[0].link.as_deref()),
        (&long[..], Some(&target[..]))
    );
    assert_eq!(v[0].header_offset, 0);
    assert_eq!(v[1].path, b"abcde");
    assert_eq!(v[1].header_offset, v[0].data_offset);
    assert_eq!(read_data(&a.0, &v[1]), b"12");
}

#[test]
fn pax_local_values() {
    let mut a = Ar::new();
    a.pax(
        b'x',
        &[
            (b"path", b"pax/path\nwith newline"),
            (b"uid", b"123456789012"),
            (b"gid", b"7"),
            (b"mtime", b"-12.5"),
            (b"size", b"10"),
            (b"uname", b"ignored"),
            (b"SCHILY.xattr.user.a", b"1"),
            (b"LIBARCHIVE.xattr.user.b%3D", b"AP8"),
            (b"SCHILY.xattr.user.a", b"2"),
            (b"SCHILY.xattr.security.empty", b""),
            (b"comment", b"anything"),
        ],
    );
    // Header size disagrees with PAX size: PAX wins and decides where the next header is.
    a.header(Hdr::new(Fmt::Ustar, b"hdr-path", b'0', 0)).data(b"0123456789");
    a.pax(b'x', &[(b"linkpath", b"pax-target")]);
    a.header(Hdr::new(Fmt::Ustar, b"sym", b'2', 0).set(157, b"hdr-target"));
    a.end();
    let v = index_all(&a.0).unwrap();
    let e = &v[0];
    assert_eq!(e.path, b"pax/path\nwith newline");
    assert_eq!(
        (e.uid, e.gid, e.mtime, e.mtime_nsec),
        (123_456_789_012, 7, -13, 500_000_000)
    );
    assert_eq!(
        (e.size, e.stored_size, e.data_offset, e.header_offset),
        (10, 10, 1536, 0)
    );
    assert_eq!(read_data(&a.0, e), b"0123456789");
    let x: Vec<(&[u8], &[u8])> = e.xattrs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    assert_eq!(
        x,
        [
            (&b"user.a"[..], &b"2"[..]),
            (b"user.b=", &[0, 0xff]),
            (b"security.empty", b"")
        ]
    );
    assert_eq!(
        (v[1].path.as_slice(), v[1].link.as_deref()),
        (&b"sym"[..], Some(&b"pax-target"[..]))
    );
    assert_eq!(v[1].header_offset, 2048);
}

#[test]
fn pax_global_values() {
    let mut a = Ar::new();
    a.pax(
        b'g',
        &[
            (b"uid", b"42"),
            (b"mtime", b"5.25"),
            (b"SCHILY.xattr.user.g", b"G"),
            (b"comment", b"c"),
        ],
    );
    a.file(Fmt::Ustar, b"a", b"");
    a.pax(b'x', &[(b"uid", b"7"), (b"mtime", b""), (b"SCHILY.xattr.user.g", b"L")]);
    a.file(Fmt::Ustar, b"b", b"");
    a.pax(b'g', &[(b"uid", b""), (b"gid", b"9")]);
    a.file(Fmt::Ustar, b"c", b"");
    a.end();
    let v = index_all(&a.0).unwrap();
    let got: Vec<_> = v
        .iter()
        .map(|e| (e.uid, e.gid, e.mtime, e.mtime_nsec, e.xattrs.clone()))
        .collect();
    let g = |v: &str| vec![(b"user.g".to_vec(), v.as_bytes().to_vec())];
    assert_eq!(
        got,
        [
            (42, 1001, 5, 250_000_000, g("G")),
            // A local empty mtime deletes the global one: back to the header field.
            (7, 1001, 1_700_000_000, 0, g("L")),
            (1000, 9, 5, 250_000_000, g("G")),
        ]
    );
    // A global header is not part of the following member.
    assert_eq!(v[0].header_offset, 1024);
}

#[test]
fn pax_errors_carry_the_header_offset() {
    let cases: &[&[u8]] = &[b"7 a=b\n", b"6 ab\n\n", b"x a=b\n", b"10 size=x\n", b"12 mtime=1.x\n"];
    for data in cases {
        let mut a = Ar::new();
        a.file(Fmt::Ustar, b"first", b"");
        a.pax_raw(b'x', data);
        a.file(Fmt::Ustar, b"f", b"");
        let r = index_all(&a.0);
        assert!(
            matches!(r, Err(TarError::BadPax { offset: 512, .. })),
            "{data:?}: {r:?}"
        );
    }
}

#[test]
fn unknown_types_are_skipped_with_their_data() {
    let mut a = Ar::new();
    a.header(Hdr::new(Fmt::Gnu, b"label", b'V', 0));
    for t in [b'N', b'M', b'X', b'A'] {
        a.header(Hdr::new(Fmt::Gnu, b"odd", t, 700)).data(&[0xaa; 700]);
    }
    // An unknown member still consumes its extension headers.
    a.pax(b'x', &[(b"path", b"ignored")]);
    a.header(Hdr::new(Fmt::Ustar, b"odd", b'Z', 3)).data(b"zzz");
    a.header(Hdr::new(Fmt::Gnu, b"dumpdir/", b'D', 9))
        .data(b"Nfile\0\0\0\0");
    a.file(Fmt::Gnu, b"after", b"ok");
    a.end();
    let v = index_all(&a.0).unwrap();
    let got: Vec<_> = v
        .iter()
        .map(|e| (e.path.as_slice(), e.kind, e.size, e.stored_size))
        .collect();
    assert_eq!(
        got,
        [
            (&b"dumpdir/"[..], EntryKind::Dir, 0, 9),
            (b"after", EntryKind::File, 2, 2)
        ]
    );
    assert_eq!(read_data(&a.0, &v[1]), b"ok");
}

#[test]
fn archive_endings() {
    let mut a = Ar::new();
    a.file(Fmt::Ustar, b"f", b"x");
    let body = a.0.clone();
    let zero = [0u8; 512];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no end marker", body.clone()),
        ("one zero block", [&body[..], &zero].concat()),
        ("two zero blocks", [&body[..], &zero, &zero].concat()),
        ("record padding", [&body[..], &[0; 9216]].concat()),
        (
            "lone zero block then garbage",
            [&body[..], &zero, &[0x55; 700]].concat(),
        ),
        (
            "garbage after the end",
            [&body[..], &zero, &zero, b"trailing junk"].concat(),
        ),
    ];
    for (name, archive) in cases {
        let v = index_all(&archive).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.len(), 1, "{name}");
    }
    assert_eq!(index_all(&[]).unwrap(), vec![]);
    assert_eq!(index_all(&[0; 1024]).unwrap(), vec![]);
    // Extension headers followed by the end marker.
    let mut a = Ar::new();
    a.file(Fmt::Ustar, b"f", b"");
    a.gnu_long(b'L', b"dangling");
    a.end();
    assert!(matches!(
        index_all(&a.0),
        Err(TarError::OrphanExtension { offset: 512 })
    ));
    // ... or by the end of the stream.
    a.0.truncate(1536);
    assert!(matches!(index_all(&a.0), Err(TarError::Truncated { offset: 512 })));
}

// ---- sparse ----

/// An old GNU 'S' header with `runs` (the first four in the header, the rest in extension
/// blocks of 21) and realsize.
fn old_sparse(ar: &mut Ar, name: &[u8], runs: &[(u64, u64)], realsize: u64) {
    let stored: u64 = runs.iter().map(|r| r.1).sum();
    let mut h = Hdr::new(Fmt::Gnu, name, b'S', stored).num(483..495, realsize);
    for (i, &(o, l)) in runs.iter().take(4).enumerate() {
        h = h.num(386 + i * 24..398 + i * 24, o).num(398 + i * 24..410 + i * 24, l);
    }
    let ext: Vec<&[(u64, u64)]> = runs.get(4..).unwrap_or(&[]).chunks(21).collect();
    if !ext.is_empty() {
        h = h.set(482, &[1]);
    }
    ar.header(h);
    for (n, group) in ext.iter().enumerate() {
        let mut b = [0u8; 512];
        for (i, &(o, l)) in group.iter().enumerate() {
            oct(&mut b[i * 24..i * 24 + 12], o);
            oct(&mut b[i * 24 + 12..i * 24 + 24], l);
        }
        b[504] = u8::from(n + 1 < ext.len());
        ar.raw(&b);
    }
}

fn runs(v: &[(u64, u64)]) -> Vec<SparseChunk> {
    v.iter().map(|&(offset, len)| SparseChunk { offset, len }).collect()
}

#[test]
fn old_gnu_sparse_with_extension_blocks() {
    let map: Vec<(u64, u64)> = (0..30).map(|i| (i * 4096, 512)).chain([(30 * 4096, 7)]).collect();
    let mut a = Ar::new();
    old_sparse(&mut a, b"sp", &map, 30 * 4096 + 100);
    let data: Vec<u8> = (0..30 * 512 + 7).map(|i| (i % 251) as u8).collect();
    a.data(&data);
    a.file(Fmt::Gnu, b"next", b"n");
    a.end();
    let v = index_all(&a.0).unwrap();
    let e = &v[0];
    assert_eq!(
        (e.kind, e.size, e.stored_size),
        (EntryKind::File, 30 * 4096 + 100, 30 * 512 + 7)
    );
    assert_eq!(e.data_offset, 3 * 512, "header + 2 extension blocks");
    assert_eq!(e.sparse.as_deref(), Some(&runs(&map)[..]));
    let full = read_data(&a.0, e);
    assert_eq!(&full[4096..4096 + 512], &data[512..1024]);
    assert!(full[512..4096].iter().all(|&b| b == 0));
    assert_eq!(read_data(&a.0, &v[1]), b"n");
}

#[test]
fn old_gnu_sparse_errors() {
    // Extension blocks that never end.
    let mut a = Ar::new();
    a.header(Hdr::new(Fmt::Gnu, b"sp", b'S', 0).num(483..495, 0).set(482, &[1]));
    let mut ext = [0u8; 512];
    ext[504] = 1;
    for _ in 0..2100 {
        a.raw(&ext);
    }
    let r = index_seekable(&a.0);
    assert!(matches!(r, Err(TarError::ExtensionTooLarge { offset: 0, .. })), "{r:?}");
    // ... cut off: truncated.
    a.0.truncate(512 * 3);
    assert!(matches!(index_all(&a.0), Err(TarError::Truncated { offset: 0 })));
    // Runs that do not add up to the stored size, overlap, or pass the real size.
    for (map, stored, real) in [
        (&[(0u64, 512u64)][..], 100u64, 512u64),
        (&[(0, 1024), (512, 512)], 1536, 4096),
        (&[(0, 512)], 512, 100),
        (&[(0, 100), (512, 100)], 200, 4096),
    ] {
        let mut a = Ar::new();
        let mut h = Hdr::new(Fmt::Gnu, b"sp", b'S', stored).num(483..495, real);
        for (i, &(o, l)) in map.iter().enumerate() {
            h = h.num(386 + i * 24..398 + i * 24, o).num(398 + i * 24..410 + i * 24, l);
        }
        a.header(h).data(&vec![1; stored as usize]).end();
        let r = index_all(&a.0);
        assert!(
            matches!(r, Err(TarError::BadSparse { offset: 0, .. })),
            "{map:?}: {r:?}"
        );
    }
    // A bad number in a sparse slot.
    let h = Hdr::new(Fmt::Gnu, b"sp", b'S', 0).set(386, b"zzz");
    assert!(matches!(
        index_all(&h.bytes()),
        Err(TarError::BadNumber {
            offset: 0,
            field: "sparse offset"
        })
    ));
}

#[test]
fn pax_sparse_formats() {
    let data: Vec<u8> = (0..1024 + 10).map(|i| (i % 253) as u8).collect();
    let map = [(4096u64, 1024u64), (10_000, 10), (20_000, 0)];
    let real = b"20000";
    // 0.0: offset/numbytes pairs.
    let mut a = Ar::new();
    let mut recs: Vec<(&[u8], &[u8])> = vec![(b"GNU.sparse.size", real), (b"GNU.sparse.numblocks", b"3")];
    let nums: Vec<(String, String)> = map.iter().map(|(o, l)| (o.to_string(), l.to_string())).collect();
    for (o, l) in &nums {
        recs.push((b"GNU.sparse.offset", o.as_bytes()));
        recs.push((b"GNU.sparse.numbytes", l.as_bytes()));
    }
    a.pax(b'x', &recs);
    a.header(Hdr::new(Fmt::Ustar, b"sp00", b'0', data.len() as u64))
        .data(&data)
        .end();
    // 0.1: comma map and GNU.sparse.name.
    let mut b = Ar::new();
    b.pax(
        b'x',
        &[
            (b"GNU.sparse.size", real),
            (b"GNU.sparse.name", b"real/name01"),
            (b"GNU.sparse.map", b"4096,1024,10000,10,20000,0"),
        ],
    );
    b.header(Hdr::new(Fmt::Ustar, b"GNUSparseFile.1/x", b'0', data.len() as u64))
        .data(&data)
        .end();
    // 1.0: map in the data, spanning two blocks (padded with zeros).
    let mut text = format!("{}\n", map.len() + 80);
    for i in 0..80u64 {
        text += &format!("{}\n0\n", 1000 + i);
    }
    for (o, l) in map {
        text += &format!("{o}\n{l}\n");
    }
    assert!(text.len() > 512 && text.len() < 1024);
    let mut blob = text.clone().into_bytes();
    blob.resize(1024, 0);
    blob.extend_from_slice(&data);
    let mut c = Ar::new();
    c.pax(
        b'x',
        &[
            (b"GNU.sparse.major", b"1"),
            (b"GNU.sparse.minor", b"0"),
            (b"GNU.sparse.name", b"real/name10"),
            (b"GNU.sparse.realsize", real),
        ],
    );
    c.header(Hdr::new(Fmt::Ustar, b"GNUSparseFile.1/x", b'0', blob.len() as u64))
        .data(&blob)
        .end();
    for (ar, path, data_offset) in [
        (&a, &b"sp00"[..], 1536u64),
        (&b, b"real/name01", 1536),
        (&c, b"real/name10", 2560),
    ] {
        let e = one(&ar.0);
        let ctx = String::from_utf8_lossy(path);
        assert_eq!(e.path, path, "{ctx}");
        assert_eq!(
            (e.size, e.stored_size, e.data_offset),
            (20_000, 1034, data_offset),
            "{ctx}"
        );
        assert_eq!(e.sparse.as_deref(), Some(&runs(&map[..2])[..]), "{ctx}");
        let full = read_data(&ar.0, &e);
        assert_eq!(&full[4096..5120], &data[..1024], "{ctx}");
        assert_eq!(&full[10_000..10_010], &data[1024..], "{ctx}");
    }
}

#[test]
fn pax_sparse_errors() {
    type Records<'a> = Vec<(&'a [u8], &'a [u8])>;
    let cases: Vec<(&str, Records, Vec<u8>)> = vec![
        ("no realsize", vec![(b"GNU.sparse.map", b"0,1")], vec![1]),
        (
            "unsupported version",
            vec![
                (b"GNU.sparse.major", b"2"),
                (b"GNU.sparse.minor", b"0"),
                (b"GNU.sparse.realsize", b"1"),
            ],
            vec![1],
        ),
        (
            "dangling offset",
            vec![(b"GNU.sparse.size", b"9"), (b"GNU.sparse.offset", b"0")],
            vec![],
        ),
        (
            "numblocks mismatch",
            vec![
                (b"GNU.sparse.size", b"9"),
                (b"GNU.sparse.numblocks", b"2"),
                (b"GNU.sparse.map", b"0,1"),
            ],
            vec![1],
        ),
        (
            "sum mismatch",
            vec![(b"GNU.sparse.size", b"9"), (b"GNU.sparse.map", b"0,5")],
            vec![1],
        ),
        (
            "1.0 with no data for the map",
            vec![
                (b"GNU.sparse.major", b"1"),
                (b"GNU.sparse.minor", b"0"),
                (b"GNU.sparse.realsize", b"1"),
            ],
            vec![],
        ),
        (
            "1.0 bad map text",
            vec![
                (b"GNU.sparse.major", b"1"),
                (b"GNU.sparse.minor", b"0"),
                (b"GNU.sparse.realsize", b"1"),
            ],
            b"1\nx\n".to_vec(),
        ),
        (
            "1.0 map past the data",
            vec![
                (b"GNU.sparse.major", b"1"),
                (b"GNU.sparse.minor", b"0"),
                (b"GNU.sparse.realsize", b"1"),
            ],
            b"1\n".to_vec(),
        ),
        (
            "1.0 map runs into the next header",
            vec![
                (b"GNU.sparse.major", b"1"),
                (b"GNU.sparse.minor", b"0"),
                (b"GNU.sparse.realsize", b"1"),
            ],
            [&b"1000\n"[..], &b"0\n".repeat(300)].concat(),
        ),
    ];
    for (name, recs, data) in cases {
        let mut a = Ar::new();
        a.file(Fmt::Ustar, b"first", b"").pax(b'x', &recs);
        a.header(Hdr::new(Fmt::Ustar, b"sp", b'0', data.len() as u64))
            .data(&data)
            .end();
        let r = index_all(&a.0);
        assert!(
            matches!(r, Err(TarError::BadSparse { offset: 512, .. })),
            "{name}: {r:?}"
        );
    }
    // GNU.sparse keys on something that is not a regular file are ignored.
    let mut a = Ar::new();
    a.pax(b'x', &[(b"GNU.sparse.size", b"9"), (b"GNU.sparse.map", b"0,5")]);
    a.header(Hdr::new(Fmt::Ustar, b"dir/", b'5', 0)).end();
    assert_eq!(one(&a.0).sparse, None);
}

// ---- members that carry no data whatever their size field says (issue 17) ----

/// Names of what GNU tar extracts from `archive` (`tar -xf`, which must succeed), sorted.
/// Not `tar -tf`: listing skips `size` bytes after a symlink, device or fifo header, where
/// extracting does not.
fn gnu_tar_extracts(archive: &[u8]) -> Vec<Vec<u8>> {
    require_gnu_tar();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar");
    std::fs::write(&file, archive).unwrap();
    let out_dir = dir.path().join("x");
    std::fs::create_dir(&out_dir).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|d| std::os::unix::ffi::OsStrExt::as_bytes(d.unwrap().file_name().as_os_str()).to_vec())
        .collect();
    names.sort();
    names
}

/// Our member names without a trailing '/', sorted (every test member is at the top).
fn sorted_names(v: &[Entry]) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = v
        .iter()
        .map(|e| e.path.strip_suffix(b"/").unwrap_or(&e.path).to_vec())
        .collect();
    names.sort();
    names
}

/// `a` ("hello"), then `header` with no data after it, an empty `c` and `d` ("ddd").
fn around(fmt: Fmt, header: Hdr) -> Vec<u8> {
    let mut a = Ar::new();
    a.file(fmt, b"a", b"hello").header(header);
    a.header(Hdr::new(fmt, b"c", b'0', 0)).file(fmt, b"d", b"ddd").end();
    a.0
}

fn check_header_only(archive: &[u8], what: &str) {
    let v = index_all(archive).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        sorted_names(&v),
        gnu_tar_extracts(archive),
        "{what}: GNU tar extracts other members"
    );
    assert_eq!(v.len(), 4, "{what}: {v:?}");
    let x = &v[1];
    assert_eq!(
        (x.size, x.stored_size, x.data_offset),
        (0, 0, x.header_offset + 512),
        "{what}"
    );
    assert_eq!(read_data(archive, &v[3]), b"ddd", "{what}");
}

/// Typeflags 1-6 (and a regular member named like a directory) store no data records: a
/// size field set anyway must not swallow the next headers. The case: a hardlink with
/// size 5, then an empty file, lost `c` with no error.
#[test]
fn link_device_dir_fifo_sizes_carry_no_data() {
    for fmt in [Fmt::Ustar, Fmt::Gnu, Fmt::V7] {
        for t in *b"123456" {
            for size in [5, 512, 600, 5000] {
                let h = Hdr::new(fmt, b"x", t, size).set(157, b"a");
                check_header_only(&around(fmt, h), &format!("{fmt:?} typeflag {} size {size}", t as char));
            }
        }
        let h = Hdr::new(fmt, b"olddir/", b'0', 600);
        check_header_only(&around(fmt, h), &format!("{fmt:?} old-style directory"));
    }
    // The size may come from PAX too: a symlink with `size=600`.
    let mut a = Ar::new();
    a.file(Fmt::Ustar, b"a", b"hello").pax(b'x', &[(b"size", b"600")]);
    a.header(Hdr::new(Fmt::Ustar, b"x", b'2', 0).set(157, b"a"));
    a.header(Hdr::new(Fmt::Ustar, b"c", b'0', 0))
        .file(Fmt::Ustar, b"d", b"ddd")
        .end();
    let v = index_all(&a.0).unwrap();
    let got: Vec<_> = v.iter().map(|e| (e.path.as_slice(), e.kind, e.stored_size)).collect();
    assert_eq!(
        got,
        [
            (&b"a"[..], EntryKind::File, 5),
            (b"x", EntryKind::Symlink, 0),
            (b"c", EntryKind::File, 0),
            (b"d", EntryKind::File, 3)
        ]
    );
    // A GNU dumpdir ('D') does carry its name list.
    let mut a = Ar::new();
    a.header(Hdr::new(Fmt::Gnu, b"dump/", b'D', 6)).data(b"Yabc\0\0");
    a.file(Fmt::Gnu, b"d", b"ddd").end();
    let v = index_all(&a.0).unwrap();
    assert_eq!((v[0].kind, v[0].stored_size, v.len()), (EntryKind::Dir, 6, 2));
    assert_eq!(read_data(&a.0, &v[1]), b"ddd");
}

/// A hardlink in a pax archive may carry data (POSIX.1-2001): it does when the block after
/// it is neither a header nor the end, as libarchive reads it; a header there means it has
/// none (libarchive would read that header as data; GNU tar does not). Outside pax (no PAX
/// header before it, or a GNU header) a hardlink never has data.
#[test]
fn pax_hardlinks_carry_data_only_when_no_header_follows() {
    let pax_hardlink = |fmt: Fmt, size: u64, data: Option<&[u8]>, end: bool| {
        let mut a = Ar::new();
        a.file(Fmt::Ustar, b"a", b"hello").pax(b'x', &[(b"mtime", b"1.5")]);
        a.file(Fmt::Ustar, b"z", b"");
        a.header(Hdr::new(fmt, b"b", b'1', size).set(157, b"a"));
        if let Some(d) = data {
            a.data(d);
        }
        if end {
            a.header(Hdr::new(Fmt::Ustar, b"c", b'0', 0))
                .file(Fmt::Ustar, b"d", b"ddd")
                .end();
        }
        a.0
    };
    // Data (1000 bytes: two blocks, the first one probed).
    let data = [b'W'; 1000];
    let ar = pax_hardlink(Fmt::Ustar, 1000, Some(&data), true);
    let v = index_all(&ar).unwrap();
    let b = &v[2];
    assert_eq!(
        (&b.path[..], b.kind, b.stored_size, b.size),
        (&b"b"[..], EntryKind::Hardlink, 1000, 1000)
    );
    assert_eq!(read_data(&ar, b), data);
    assert_eq!(
        v.iter().map(|e| &e.path[..]).collect::<Vec<_>>(),
        [&b"a"[..], b"z", b"b", b"c", b"d"]
    );
    assert_eq!(read_data(&ar, &v[4]), b"ddd");
    // A header (or the end of the archive) follows: no data.
    check_pax_link_without_data(&pax_hardlink(Fmt::Ustar, 5, None, true), 5);
    let v = index_all(&pax_hardlink(Fmt::Ustar, 5, None, false)).unwrap();
    assert_eq!((v.len(), v[2].stored_size), (3, 0), "hardlink last, no end marker");
    let mut ended = pax_hardlink(Fmt::Ustar, 5, None, false);
    ended.extend_from_slice(&[0; 1024]);
    let v = index_all(&ended).unwrap();
    assert_eq!((v.len(), v[2].stored_size), (3, 0), "hardlink then end marker");
    // A GNU header, or no PAX header before: never data, so what follows is a header (here
    // a bad one: the references complain too).
    check_pax_link_without_data(&pax_hardlink(Fmt::Gnu, 5, None, true), 5);
    let r = index_all(&pax_hardlink(Fmt::Gnu, 1000, Some(&data), true));
    assert!(matches!(r, Err(TarError::BadChecksum { offset: 3072 })), "{r:?}");
    let mut a = Ar::new();
    a.file(Fmt::Ustar, b"a", b"hello");
    a.header(Hdr::new(Fmt::Ustar, b"b", b'1', 1000).set(157, b"a"))
        .data(&data);
    let r = index_all(&a.0);
    assert!(matches!(r, Err(TarError::BadChecksum { offset: 1536 })), "{r:?}");
    // Truncated inside the data of a hardlink that has data.
    let ar = pax_hardlink(Fmt::Ustar, 1000, Some(&data), false);
    let r = index_all(&ar[..ar.len() - 512]);
    assert!(matches!(r, Err(TarError::Truncated { offset: 2560 })), "{r:?}");
}

fn check_pax_link_without_data(archive: &[u8], size: u64) {
    let v = index_all(archive).unwrap();
    assert_eq!(sorted_names(&v), gnu_tar_extracts(archive));
    assert_eq!(v.len(), 5, "size {size}");
    assert_eq!((v[2].kind, v[2].stored_size), (EntryKind::Hardlink, 0));
    assert_eq!(read_data(archive, &v[4]), b"ddd");
}

// ---- hostile input ----

#[test]
fn hostile_sizes() {
    let eb = 1u64 << 60;
    let mut size = [0u8; 12];
    size[0] = 0x80;
    size[4..].copy_from_slice(&eb.to_be_bytes());
    let mut a = Ar::new();
    a.file(Fmt::Gnu, b"ok", b"fine");
    a.header(Hdr::new(Fmt::Gnu, b"huge", b'0', 0).set(124, &size))
        .data(&[1; 100])
        .end();
    assert!(matches!(index_all(&a.0), Err(TarError::Truncated { offset: 1024 })));
    // 8 GiB in plain octal.
    let a = Hdr::new(Fmt::Ustar, b"big", b'0', 0).set(124, b"77777777777\0").bytes();
    assert!(matches!(index_all(&a), Err(TarError::Truncated { offset: 0 })));
    // Padding the size overflows u64.
    size[4..].copy_from_slice(&(u64::MAX - 3).to_be_bytes());
    let a = Hdr::new(Fmt::Gnu, b"ovf", b'0', 0).set(124, &size).bytes();
    assert!(matches!(index_all(&a), Err(TarError::SizeOverflow { offset: 0 })));
    // More than 64 bits, or negative.
    size[3] = 1;
    let a = Hdr::new(Fmt::Gnu, b"ovf", b'0', 0).set(124, &size).bytes();
    assert!(matches!(
        index_all(&a),
        Err(TarError::BadNumber {
            offset: 0,
            field: "size"
        })
    ));
    let a = Hdr::new(Fmt::Gnu, b"neg", b'0', 0).set(124, &[0xff; 12]).bytes();
    assert!(matches!(
        index_all(&a),
        Err(TarError::BadNumber {
            offset: 0,
            field: "size"
        })
    ));
    // Same through PAX size.
    let mut a = Ar::new();
    a.pax(b'x', &[(b"size", b"18446744073709551000")]);
    a.header(Hdr::new(Fmt::Ustar, b"p", b'0', 0));
    assert!(matches!(index_all(&a.0), Err(TarError::SizeOverflow { offset: 0 })));
    let mut a = Ar::new();
    a.pax(b'x', &[(b"size", b"1152921504606846976")]);
    a.header(Hdr::new(Fmt::Ustar, b"p", b'0', 0)).end();
    assert!(matches!(index_all(&a.0), Err(TarError::Truncated { offset: 0 })));
    // Unknown types with huge sizes too.
    let a = Hdr::new(Fmt::Gnu, b"v", b'V', 0).set(124, b"77777777777\0").bytes();
    assert!(matches!(index_all(&a), Err(TarError::Truncated { offset: 0 })));
}

#[test]
fn extension_size_caps() {
    let over = MAX_EXT + 1;
    for t in [b'x', b'g', b'L', b'K'] {
        let mut a = Ar::new();
        a.file(Fmt::Ustar, b"f", b"");
        a.header(Hdr::new(Fmt::Gnu, b"ext", t, over)).end();
        let r = index_all(&a.0);
        assert!(
            matches!(r, Err(TarError::ExtensionTooLarge { offset: 512, size, .. }) if size == over),
            "{r:?}"
        );
    }
    // Several extension headers for one member add up.
    let mut a = Ar::new();
    let name = vec![b'n'; 600 << 10];
    a.gnu_long(b'L', &name).gnu_long(b'K', &name).file(Fmt::Gnu, b"f", b"");
    let k_header = 512 + padded(name.len() as u64 + 1).unwrap();
    let r = index_all(&a.0);
    assert!(
        matches!(r, Err(TarError::ExtensionTooLarge { offset, .. }) if offset == k_header),
        "{r:?}"
    );
    // A global header may not make every entry carry a lot.
    let mut a = Ar::new();
    let big = vec![b'v'; 5000];
    a.pax(b'g', &[(b"SCHILY.xattr.user.big", &big)]);
    assert!(matches!(index_all(&a.0), Err(TarError::BadPax { offset: 0, .. })));
    // Exactly at the cap is fine.
    let mut a = Ar::new();
    let name = vec![b'n'; MAX_EXT as usize - 1];
    a.gnu_long(b'L', &name).file(Fmt::Gnu, b"f", b"").end();
    assert_eq!(one(&a.0).path.len(), MAX_EXT as usize - 1);
}

const MAX_EXT: u64 = super::super::header::MAX_EXTENSION;

// ---- corruption of a small real-looking archive ----

fn small_archive() -> Vec<u8> {
    let mut a = Ar::new();
    a.header(Hdr::new(Fmt::Ustar, b"dir/", b'5', 0));
    a.file(Fmt::Ustar, b"dir/a", &[7; 1000]);
    a.pax(b'x', &[(b"path", "p".repeat(300).as_bytes()), (b"mtime", b"1.5")]);
    a.header(Hdr::new(Fmt::Ustar, b"short", b'0', 513)).data(&[9; 513]);
    a.gnu_long(b'L', &[b'l'; 200]);
    a.header(Hdr::new(Fmt::Gnu, b"x", b'2', 0).set(157, b"t"));
    a.file(Fmt::Ustar, b"empty", b"");
    a.file(Fmt::Ustar, b"last", b"z");
    a.end();
    a.0
}

/// Where each entry's unit (headers + padded data) ends.
fn unit_end(e: &Entry) -> u64 {
    e.data_offset + padded(e.stored_size).unwrap()
}

#[test]
fn truncation_everywhere() {
    let full = small_archive();
    let entries = index_all(&full).unwrap();
    let last_end = unit_end(entries.last().unwrap());
    let mut cuts: Vec<u64> = (0..=full.len() as u64).step_by(512).collect();
    cuts.extend(
        (0..full.len() as u64)
            .step_by(512)
            .flat_map(|b| [b + 1, b + 100, b + 511]),
    );
    for t in cuts {
        let r = index_all(&full[..t as usize]);
        let inside = entries.iter().find(|e| e.header_offset < t && t < unit_end(e));
        match (inside, r) {
            (Some(e), Err(TarError::Truncated { offset })) => {
                assert_eq!(offset, e.header_offset, "cut {t}")
            }
            (None, Err(TarError::Truncated { offset })) => {
                // Only a partial end-of-archive block.
                assert!(t > last_end && t < last_end + 512, "cut {t}");
                assert_eq!(offset, last_end);
            }
            (None, Ok(v)) => {
                let n = entries.iter().filter(|e| unit_end(e) <= t).count();
                assert_eq!(v, entries[..n], "cut {t}");
            }
            (i, r) => panic!("cut {t}: {i:?} {r:?}"),
        }
    }
}

#[test]
fn flipped_checksums() {
    let full = small_archive();
    let entries = index_all(&full).unwrap();
    let mut headers = 0;
    for b in (0..full.len()).step_by(512) {
        let block: &[u8; 512] = full[b..b + 512].try_into().unwrap();
        if super::super::header::Header::new(block, 0).is_err() || block.iter().all(|&x| x == 0) {
            continue; // data or end block
        }
        headers += 1;
        for (at, xor) in [(148, 1u8), (153, 4), (0, 0x20), (156, 1), (300, 0x80)] {
            let mut bad = full.clone();
            bad[b + at] ^= xor;
            let r = index_all(&bad);
            assert!(
                matches!(r, Err(TarError::BadChecksum { offset }) if offset == b as u64),
                "block {b} byte {at}: {r:?}"
            );
        }
    }
    assert_eq!(headers, entries.len() + 2, "x and L headers included");
}

/// Archives the mutation tests start from: every header kind, sparse maps included.
fn fuzz_bases() -> Vec<Vec<u8>> {
    let mut old = Ar::new();
    let map: Vec<(u64, u64)> = (0..26).map(|i| (i * 4096, 512)).collect();
    old_sparse(&mut old, b"sp", &map, 26 * 4096);
    old.data(&vec![5; 26 * 512]).file(Fmt::Gnu, b"after", b"x").end();
    let mut v1 = Ar::new();
    let recs: [(&[u8], &[u8]); 4] = [
        (b"GNU.sparse.major", b"1"),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.name", b"real"),
        (b"GNU.sparse.realsize", b"9000"),
    ];
    let mut blob = b"2\n0\n512\n8000\n10\n".to_vec();
    blob.resize(512, 0);
    blob.extend_from_slice(&[6; 522]);
    v1.pax(b'x', &recs)
        .header(Hdr::new(Fmt::Ustar, b"GNUSparseFile.0/real", b'0', 1034));
    v1.data(&blob)
        .pax(b'g', &[(b"mtime", b"1.5")])
        .file(Fmt::Ustar, b"z", b"")
        .end();
    vec![small_archive(), old.0, v1.0]
}

/// Deterministic xorshift mutations, aimed mostly at header blocks whose checksums are then
/// repaired so parsing goes deep: never a panic, drivers agree (index_all checks), and
/// every entry satisfies the invariants readers rely on.
fn mutate_loop(base: &[u8], iters: usize, mut rng: u64) {
    let headers: Vec<usize> = (0..base.len() / 512)
        .map(|i| i * 512)
        .filter(|&b| {
            let block: &[u8; 512] = base[b..b + 512].try_into().unwrap();
            super::super::header::Header::new(block, 0).is_ok() && block.iter().any(|&x| x != 0)
        })
        .collect();
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const BYTES: [u8; 8] = [0, b' ', b'0', b'7', b'9', 0x80, 0xff, b'\n'];
    for _ in 0..iters {
        let mut a = base.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = match next() % 4 {
                0 => (next() % a.len() as u64) as usize,
                _ => headers[(next() % headers.len() as u64) as usize] + (next() % 512) as usize,
            };
            a[at] = match next() % 2 {
                0 => BYTES[(next() % 8) as usize],
                _ => next() as u8,
            };
        }
        if next() % 4 != 0 {
            for &b in &headers {
                let h = Hdr(a[b..b + 512].try_into().unwrap()).bytes();
                a[b..b + 512].copy_from_slice(&h);
            }
        }
        if next() % 4 == 0 {
            a.truncate((next() % a.len() as u64) as usize);
        }
        check_invariants(&a);
    }
}

fn check_invariants(a: &[u8]) {
    let Ok(v) = index_all(a) else { return };
    for e in v {
        assert!(
            e.data_offset.checked_add(e.stored_size).unwrap() <= a.len() as u64,
            "{e:?}"
        );
        assert!(e.header_offset < e.data_offset, "{e:?}");
        assert!(e.mtime_nsec < 1_000_000_000, "{e:?}");
        assert!(e.mode <= 0o7777, "{e:?}");
        if let Some(s) = &e.sparse {
            assert_eq!(s.iter().map(|c| c.len).sum::<u64>(), e.stored_size, "{e:?}");
            assert!(s.iter().all(|c| c.offset + c.len <= e.size), "{e:?}");
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    for (i, base) in fuzz_bases().iter().enumerate() {
        mutate_loop(base, 700, 0x9e37_79b9_7f4a_7c15 + i as u64);
    }
}

/// Longer run: `TARINDEX_FUZZ_ITERS=100000 cargo test --release -- --ignored fuzz_long`.
#[test]
#[ignore]
fn fuzz_long() {
    let iters = std::env::var("TARINDEX_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed = std::env::var("TARINDEX_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for (i, base) in fuzz_bases().iter().enumerate() {
        mutate_loop(base, iters, seed * 7919 + i as u64);
    }
}

/// A blob that returns short reads and reports a length longer than its data.
struct Liar(Vec<u8>);
impl ReadAt for Liar {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = buf.len().min(100);
        self.0.read_at(&mut buf[..n], offset)
    }
    fn len(&self) -> u64 {
        self.0.len() as u64 + 4096
    }
}

#[test]
fn short_reads_and_lying_lengths() {
    let full = small_archive();
    let want = index_all(&full).unwrap();
    // Short reads are retried; the archive ends at its end marker before the lie matters.
    assert_eq!(index_seekable(&Liar(full.clone())).unwrap(), want);
    // Without an end marker the missing bytes show up as truncation.
    let cut = unit_end(&want[1]) as usize;
    let r = index_seekable(&Liar(full[..cut].to_vec()));
    assert!(
        matches!(r, Err(TarError::Truncated { offset }) if offset == cut as u64),
        "{r:?}"
    );
}

/// A PAX key given twice: the last record wins (POSIX), in both drivers. The tar crate takes
/// the first, which the fuzz target's comparison has to allow for
/// (fuzz/regressions/tarindex/pax-path-twice).
#[test]
fn pax_key_twice_last_wins() {
    let mut a = Ar::new();
    a.pax(b'x', &[(b"path", b"first/name"), (b"path", b"second")]);
    a.file(Fmt::Ustar, b"header-name", b"data");
    a.end();
    let v = index_all(&a.0).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].path, b"second");
    let fuzzed = include_bytes!("../../../fuzz/regressions/tarindex/pax-path-twice");
    let v = index_all(&fuzzed[1..]).unwrap();
    assert_eq!(v[0].path, b"17179869184");
}
