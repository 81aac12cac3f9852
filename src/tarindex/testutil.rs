//! Test helpers: a tiny tar writer for synthetic (and deliberately broken) archives, fixture
//! trees archived with the real GNU tar, and cross-checks against the `tar` crate and the
//! filesystem.

use super::{index_seekable, Entry, EntryKind, Result, StreamIndexer};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Chunk sizes the stream driver is fed with.
pub const CHUNKS: &[usize] = &[1, 7, 512, 513, 65536];

/// Header dialects the test writer can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    V7,
    Ustar,
    Gnu,
}

/// Writes `v` as zero-padded octal filling all but the last byte of `field` (NUL-terminated).
pub fn oct(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    assert!(s.len() <= w, "{v} does not fit");
    field[..w].copy_from_slice(s.as_bytes());
    field[w] = 0;
}

/// A synthetic header block; `bytes()` fills in the checksum.
#[derive(Clone)]
pub struct Hdr(pub [u8; 512]);

impl Hdr {
    pub fn new(fmt: Fmt, name: &[u8], typeflag: u8, size: u64) -> Self {
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name);
        oct(&mut b[100..108], 0o644);
        oct(&mut b[108..116], 1000);
        oct(&mut b[116..124], 1001);
        oct(&mut b[124..136], size);
        oct(&mut b[136..148], 1_700_000_000);
        b[156] = typeflag;
        match fmt {
            Fmt::V7 => {}
            Fmt::Ustar => b[257..265].copy_from_slice(b"ustar\x0000"),
            Fmt::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
        }
        Self(b)
    }
    /// Overwrites raw bytes at `at`.
    pub fn set(mut self, at: usize, bytes: &[u8]) -> Self {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
        self
    }
    /// Writes an octal number into the field `range`.
    pub fn num(mut self, range: std::ops::Range<usize>, v: u64) -> Self {
        oct(&mut self.0[range], v);
        self
    }
    pub fn bytes(mut self) -> [u8; 512] {
        self.0[148..156].fill(b' ');
        let sum: u32 = self.0.iter().map(|&x| u32::from(x)).sum();
        self.0[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.0
    }
}

/// One PAX record with its self-counting length prefix.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body_len + 1;
    while format!("{len}").len() + body_len != len {
        len += 1;
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// An archive under construction.
#[derive(Default, Clone)]
pub struct Ar(pub Vec<u8>);

impl Ar {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn header(&mut self, h: Hdr) -> &mut Self {
        self.raw(&h.bytes())
    }
    /// Data padded to a block boundary.
    pub fn data(&mut self, d: &[u8]) -> &mut Self {
        self.raw(d);
        let pad = (512 - d.len() % 512) % 512;
        self.raw(&vec![0; pad])
    }
    pub fn file(&mut self, fmt: Fmt, name: &[u8], data: &[u8]) -> &mut Self {
        self.header(Hdr::new(fmt, name, b'0', data.len() as u64)).data(data)
    }
    /// A PAX header ('x' or 'g') holding `records`.
    pub fn pax(&mut self, typeflag: u8, records: &[(&[u8], &[u8])]) -> &mut Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.pax_raw(typeflag, &data)
    }
    pub fn pax_raw(&mut self, typeflag: u8, data: &[u8]) -> &mut Self {
        let h = Hdr::new(Fmt::Ustar, b"./PaxHeaders/x", typeflag, data.len() as u64);
        self.header(h).data(data)
    }
    /// A GNU 'L' or 'K' header holding `name` plus its NUL terminator.
    pub fn gnu_long(&mut self, typeflag: u8, name: &[u8]) -> &mut Self {
        let mut d = name.to_vec();
        d.push(0);
        let h = Hdr::new(Fmt::Gnu, b"././@LongLink", typeflag, d.len() as u64);
        self.header(h).data(&d)
    }
    pub fn end(&mut self) -> &mut Self {
        self.raw(&[0; 1024])
    }
}

/// Feeds `archive` to a fresh stream indexer in `chunk`-sized pieces.
pub fn index_stream(archive: &[u8], chunk: usize) -> Result<Vec<Entry>> {
    let mut s = StreamIndexer::new();
    for piece in archive.chunks(chunk) {
        s.feed(piece)?;
    }
    s.finish()
}

/// Indexes with the seek driver and the stream driver at every chunk size (1-byte chunks only
/// for archives up to 4 MiB, to keep debug builds quick), asserts they agree, and returns the
/// seek result.
pub fn index_all(archive: &[u8]) -> Result<Vec<Entry>> {
    let seek = index_seekable(&archive.to_vec());
    let want = format!("{seek:?}");
    for &chunk in CHUNKS {
        if chunk == 1 && archive.len() > 4 << 20 {
            continue;
        }
        let got = format!("{:?}", index_stream(archive, chunk));
        assert!(
            got == want,
            "stream (chunk {chunk}) disagrees with seek:\n{got}\nvs\n{want}"
        );
    }
    seek
}

/// The logical content of a file entry: its stored bytes expanded through the sparse map.
pub fn read_data(archive: &[u8], e: &Entry) -> Vec<u8> {
    let start = e.data_offset as usize;
    let stored = &archive[start..start + e.stored_size as usize];
    let Some(chunks) = &e.sparse else {
        return stored.to_vec();
    };
    let mut out = vec![0u8; e.size as usize];
    let mut pos = 0usize;
    for c in chunks {
        let (o, l) = (c.offset as usize, c.len as usize);
        out[o..o + l].copy_from_slice(&stored[pos..pos + l]);
        pos += l;
    }
    assert_eq!(pos, stored.len());
    out
}

/// Fails the test unless `tar` is GNU tar (the fixtures need its options): tests never skip.
pub fn require_gnu_tar() {
    let gnu = Command::new("tar")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"));
    assert!(gnu, "GNU tar is required as `tar` (bash scripts/install-deps.sh)");
}

/// Runs a shell-free command, returning whether it succeeded.
pub fn run(cmd: &str, args: &[&OsStr]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Fails the test unless libarchive's `bsdtar` is installed: tests never skip.
pub fn require_bsdtar() {
    let there = Command::new("bsdtar")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        there,
        "bsdtar is required (package libarchive-tools: bash scripts/install-deps.sh)"
    );
}

/// Archives everything under `dir` with GNU tar and `args` (e.g. `--format=posix`).
pub fn tar_create(dir: &Path, args: &[&str]) -> Vec<u8> {
    archive_with("tar", &["--sort=name"], dir, args)
}

/// Archives everything under `dir` with `bsdtar` and `args` (e.g. `--format=pax`).
pub fn bsdtar_create(dir: &Path, args: &[&str]) -> Vec<u8> {
    archive_with("bsdtar", &[], dir, args)
}

fn archive_with(tool: &str, first: &[&str], dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .arg("-C")
        .arg(dir)
        .args(first)
        .args(["-cf", "-"])
        .args(args)
        .arg(".")
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What the fixture tree contains, so each format only gets what it can store.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeOpts {
    /// fifo and (as root) a character device.
    pub special: bool,
    /// A path of 100..255 bytes that ustar splits into prefix/name.
    pub prefix: bool,
    /// Paths over 255 bytes, a 120-byte name, a 150-byte symlink target, a hardlink to a long
    /// name.
    pub long: bool,
    /// mtimes before 1970 and past 2242 (base-256 in GNU format).
    pub odd_times: bool,
    /// Sparse files (archive them with `--sparse`).
    pub sparse: bool,
    /// A 9 GiB sparse file (realsize in base-256 for GNU).
    pub huge_sparse: bool,
    /// user.* xattrs (if the filesystem and setfattr allow).
    pub xattrs: bool,
}

/// A fixture directory; `xattrs` / `huge` say whether setting xattrs / making the 9 GiB
/// sparse file worked.
pub struct Tree {
    pub dir: tempfile::TempDir,
    pub xattrs: bool,
    pub huge: bool,
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn touch(path: &Path, when: &str) {
    let ok = run(
        "touch",
        &["-h".as_ref(), "-d".as_ref(), when.as_ref(), path.as_os_str()],
    );
    assert!(ok, "touch {path:?}");
}

/// Writes `data` at `offset` into a file of `len` bytes that is otherwise a hole.
pub fn sparse_file(path: &Path, len: u64, parts: &[(u64, &[u8])]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    for (off, data) in parts {
        f.write_all_at(data, *off).unwrap();
    }
}

/// Builds the fixture tree.
pub fn make_tree(o: TreeOpts) -> Tree {
    use std::fs;
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let d = r.join("d");
    fs::create_dir(&d).unwrap();
    for (name, n) in [("empty", 0), ("one", 1), ("b511", 511), ("b512", 512), ("b513", 513)] {
        fs::write(d.join(name), pattern(n, n as u8)).unwrap();
    }
    fs::write(d.join("big"), pattern(100_000, 7)).unwrap();
    fs::write(d.join(OsStr::from_bytes(b"caf\xe9-\xff")), b"latin1 name").unwrap();
    std::os::unix::fs::symlink("one", d.join("link")).unwrap();
    fs::hard_link(d.join("b513"), d.join("hard")).unwrap();
    fs::write(d.join("suid"), b"#!/bin/sh\n").unwrap();
    let perm = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap()
    };
    perm(&d.join("suid"), 0o4755);
    fs::create_dir(d.join("sticky")).unwrap();
    perm(&d.join("sticky"), 0o1777);
    touch(&d.join("one"), "@1700000000.123456789");
    touch(&d.join("b511"), "@1600000000.5");
    touch(&d.join("link"), "@1500000000.000000001");
    if o.special {
        assert!(run("mkfifo", &[d.join("fifo").as_os_str()]));
        // Only root may create devices; without it the tree simply has none.
        let _ = run(
            "mknod",
            &[d.join("null").as_os_str(), "c".as_ref(), "1".as_ref(), "3".as_ref()],
        );
    }
    if o.prefix {
        let p = r.join("m").join("p".repeat(90));
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("q".repeat(50)), b"prefixed").unwrap();
    }
    if o.long {
        let long = r.join("long");
        fs::create_dir(&long).unwrap();
        fs::write(long.join("a".repeat(120)), b"long name").unwrap();
        let mut deep = long.clone();
        for i in 0..5 {
            deep = deep.join(format!("{i}{}", "b".repeat(59)));
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("c".repeat(80)), pattern(3000, 3)).unwrap();
        fs::hard_link(deep.join("c".repeat(80)), long.join("hard-to-deep")).unwrap();
        std::os::unix::fs::symlink("t/".repeat(75), long.join("longtarget")).unwrap();
    }
    if o.odd_times {
        fs::write(d.join("neg"), b"before 1970").unwrap();
        touch(&d.join("neg"), "@-1000000.25");
        fs::write(d.join("future"), b"after 2242").unwrap();
        touch(&d.join("future"), "@9000000000");
    }
    let mut xattrs = false;
    if o.xattrs {
        let f = d.join("attrs");
        fs::write(&f, b"has xattrs").unwrap();
        xattrs = run(
            "setfattr",
            &[
                "-n".as_ref(),
                "user.foo".as_ref(),
                "-v".as_ref(),
                "bar".as_ref(),
                f.as_os_str(),
            ],
        ) && run(
            "setfattr",
            &[
                "-n".as_ref(),
                "user.bin".as_ref(),
                "-v".as_ref(),
                "0x00ff3d41".as_ref(),
                f.as_os_str(),
            ],
        );
    }
    if o.sparse {
        let s = r.join("s");
        fs::create_dir(&s).unwrap();
        sparse_file(
            &s.join("holes"),
            3 << 20,
            &[(100_000, b"hello"), (2_000_000, &pattern(10_000, 1))],
        );
        sparse_file(&s.join("tail"), 1 << 20, &[((1 << 20) - 3, b"end")]);
        sparse_file(&s.join("allhole"), 1 << 20, &[]);
        sparse_file(&s.join("head"), 200_000, &[(0, &pattern(5000, 9))]);
        // Many runs: more than the 4 slots of an old GNU header, so extension blocks appear.
        let parts: Vec<(u64, Vec<u8>)> = (0..60).map(|i| (i * 65536, pattern(100, i as u8))).collect();
        let parts: Vec<(u64, &[u8])> = parts.iter().map(|(o, d)| (*o, d.as_slice())).collect();
        sparse_file(&s.join("many"), 60 * 65536, &parts);
    }
    let mut huge = false;
    if o.huge_sparse {
        let at = 8u64 << 30;
        let path = r.join("huge");
        sparse_file(&path, 9 << 30, &[(at, b"far away")]);
        // On a filesystem without holes this would be 9 GiB of real zeros: drop it.
        huge = std::fs::metadata(&path).unwrap().blocks() < 32 << 10;
        if !huge {
            eprintln!("no sparse files on this filesystem: skipping the 9 GiB file");
            std::fs::remove_file(&path).unwrap();
        }
    }
    touch(&d, "@1650000000");
    Tree { dir, xattrs, huge }
}

/// What the `tar` crate says about one member (only indexable kinds are kept).
#[derive(Debug)]
struct Theirs {
    path: Vec<u8>,
    kind: EntryKind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    size: u64,
    file_pos: u64,
    link: Option<Vec<u8>>,
    dev: (u32, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pax_sparse: bool,
    gnu_sparse: bool,
    data: Option<Vec<u8>>,
}

/// Independent reading of a PAX time as (floor seconds, nanoseconds) via total nanoseconds.
fn pax_time(v: &str) -> (i64, u32) {
    let (neg, v) = v.strip_prefix('-').map_or((false, v), |r| (true, r));
    let (s, f) = v.split_once('.').unwrap_or((v, ""));
    let f = format!("{:0<9}", &f[..f.len().min(9)]);
    let total = s.parse::<i128>().unwrap() * 1_000_000_000 + f.parse::<i128>().unwrap();
    let total = if neg { -total } else { total };
    (
        total.div_euclid(1_000_000_000) as i64,
        total.rem_euclid(1_000_000_000) as u32,
    )
}

fn theirs(archive: &[u8]) -> Vec<Theirs> {
    use tar::EntryType as T;
    let mut ar = tar::Archive::new(archive);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut path = e.path_bytes().to_vec();
        let link = e.link_name_bytes().map(|l| l.to_vec());
        let mut mtime = (h.mtime().unwrap() as i64, 0);
        let (mut xattrs, mut pax_sparse) = (Vec::new(), false);
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                let (k, v) = (x.key_bytes(), x.value_bytes());
                if let Some(n) = k.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((n.to_vec(), v.to_vec()));
                } else if k == b"mtime" {
                    mtime = pax_time(std::str::from_utf8(v).unwrap());
                } else if k.starts_with(b"GNU.sparse.") {
                    pax_sparse = true;
                    if k == b"GNU.sparse.name" {
                        path = v.to_vec();
                    }
                }
            }
        }
        let mut kind = match h.entry_type() {
            T::Regular | T::Continuous | T::GNUSparse => EntryKind::File,
            T::Link => EntryKind::Hardlink,
            T::Symlink => EntryKind::Symlink,
            T::Char => EntryKind::CharDev,
            T::Block => EntryKind::BlockDev,
            T::Directory => EntryKind::Dir,
            T::Fifo => EntryKind::Fifo,
            _ => continue,
        };
        if kind == EntryKind::File && path.ends_with(b"/") {
            kind = EntryKind::Dir;
        }
        let size = e.size();
        let data = match kind {
            EntryKind::File if size <= 64 << 20 && !pax_sparse => {
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                Some(d)
            }
            _ => None,
        };
        let dev = match kind {
            EntryKind::CharDev | EntryKind::BlockDev => (
                h.device_major().unwrap().unwrap_or(0),
                h.device_minor().unwrap().unwrap_or(0),
            ),
            _ => (0, 0),
        };
        out.push(Theirs {
            path,
            kind,
            mode: h.mode().unwrap() & 0o7777,
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime,
            size,
            file_pos: e.raw_file_position(),
            link: matches!(kind, EntryKind::Symlink | EntryKind::Hardlink).then(|| link.unwrap_or_default()),
            dev,
            xattrs,
            pax_sparse,
            gnu_sparse: h.entry_type() == T::GNUSparse,
            data,
        });
    }
    out
}

/// Linux `dev_t` split.
fn major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// How much of the filesystem metadata an archive format preserves.
#[derive(Debug, Clone, Copy)]
pub struct Keeps {
    /// Sub-second mtimes (PAX only).
    pub nsec: bool,
    /// Owner ids (false when tar was told to override them).
    pub ids: bool,
}

/// Indexes `archive` (both drivers, all chunk sizes), then checks every entry against the
/// `tar` crate and against the source tree it was made from. Returns the entries.
pub fn cross_check(archive: &[u8], src: &Path, keeps: Keeps) -> Vec<Entry> {
    let ours = index_all(archive).unwrap_or_else(|e| panic!("index failed: {e}"));
    let theirs = theirs(archive);
    let paths = |v: Vec<&[u8]>| {
        v.iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        paths(ours.iter().map(|e| e.path.as_slice()).collect()),
        paths(theirs.iter().map(|e| e.path.as_slice()).collect()),
    );
    for (o, t) in ours.iter().zip(&theirs) {
        let ctx = String::from_utf8_lossy(&o.path).into_owned();
        assert_eq!(o.kind, t.kind, "{ctx}");
        assert_eq!(o.mode, t.mode, "{ctx}");
        assert_eq!((o.uid, o.gid), (t.uid, t.gid), "{ctx}");
        assert_eq!((o.mtime, o.mtime_nsec), t.mtime, "{ctx}");
        assert_eq!(o.link, t.link, "{ctx}");
        assert_eq!((o.dev_major, o.dev_minor), t.dev, "{ctx}");
        assert_eq!(o.xattrs, t.xattrs, "{ctx}");
        assert!(o.data_offset + o.stored_size <= archive.len() as u64, "{ctx}");
        assert_eq!(o.sparse.is_some(), t.pax_sparse || t.gnu_sparse, "{ctx}");
        if !t.pax_sparse {
            assert_eq!(o.size, if o.kind == EntryKind::Dir { 0 } else { t.size }, "{ctx}");
        }
        if o.sparse.is_none() {
            assert_eq!(o.data_offset, t.file_pos, "{ctx}");
        }
        if let Some(d) = &t.data {
            assert!(read_data(archive, o) == *d, "{ctx}: data differs from the tar crate's");
        }
        check_against_fs(archive, o, src, keeps);
    }
    ours
}

fn check_against_fs(archive: &[u8], o: &Entry, src: &Path, keeps: Keeps) {
    let ctx = String::from_utf8_lossy(&o.path).into_owned();
    let p = src.join(OsStr::from_bytes(&o.path));
    let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    if o.kind == EntryKind::Hardlink {
        let target = std::fs::symlink_metadata(src.join(OsStr::from_bytes(o.link.as_ref().unwrap()))).unwrap();
        assert_eq!(target.ino(), md.ino(), "{ctx}");
        return;
    }
    assert_eq!(o.mode, md.mode() & 0o7777, "{ctx}");
    if keeps.ids {
        assert_eq!((o.uid, o.gid), (u64::from(md.uid()), u64::from(md.gid())), "{ctx}");
    }
    let nsec = if keeps.nsec { md.mtime_nsec() as u32 } else { 0 };
    assert_eq!((o.mtime, o.mtime_nsec), (md.mtime(), nsec), "{ctx}");
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = match () {
        _ if ft.is_file() => EntryKind::File,
        _ if ft.is_dir() => EntryKind::Dir,
        _ if ft.is_symlink() => EntryKind::Symlink,
        _ if ft.is_char_device() => EntryKind::CharDev,
        _ if ft.is_block_device() => EntryKind::BlockDev,
        _ => EntryKind::Fifo,
    };
    assert_eq!(o.kind, kind, "{ctx}");
    match kind {
        EntryKind::File => {
            assert_eq!(o.size, md.len(), "{ctx}");
            if o.size <= 64 << 20 {
                assert!(
                    read_data(archive, o) == std::fs::read(&p).unwrap(),
                    "{ctx}: data differs from the file"
                );
            } else {
                check_chunks_against_file(archive, o, &p);
            }
        }
        EntryKind::Symlink => {
            let t = std::fs::read_link(&p).unwrap();
            assert_eq!(o.link.as_deref(), Some(t.as_os_str().as_bytes()), "{ctx}");
        }
        EntryKind::CharDev | EntryKind::BlockDev => {
            assert_eq!((o.dev_major, o.dev_minor), major_minor(md.rdev()), "{ctx}");
        }
        _ => {}
    }
}

/// For files too big to expand in memory: each stored run equals the file at its offset.
fn check_chunks_against_file(archive: &[u8], o: &Entry, p: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(p).unwrap();
    let mut pos = o.data_offset as usize;
    for c in o.sparse.as_ref().expect("huge files are sparse") {
        let mut buf = vec![0; c.len as usize];
        f.read_exact_at(&mut buf, c.offset).unwrap();
        assert!(buf == archive[pos..pos + c.len as usize]);
        pos += c.len as usize;
    }
}
