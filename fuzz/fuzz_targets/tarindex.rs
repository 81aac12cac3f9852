//! Tar header index (`imgfs::tarindex`): the seek driver and the stream driver over arbitrary bytes.
//!
//! Input: byte 0 picks the chunk size the stream driver is fed in; the rest is the archive.
//!
//! Invariants:
//! - every entry either driver returns lies inside the archive (`data_offset + stored_size <= len`,
//!   header before data, sparse runs sorted, inside the logical size, adding up to `stored_size`);
//! - both drivers agree: both fail, or both return the same entries;
//! - where the `tar` crate also reads the whole archive (every member and all data) without error,
//!   our index has the same members in the same order with the same path, kind, link target, size,
//!   data offset and data bytes. Only archives both read the same way are compared: every member
//!   the tar crate yields is plain (see `plain_kind`), and there is no PAX sparse or duplicated
//!   key (POSIX: the last wins; the tar crate takes the first), no NUL inside a long name (the tar
//!   crate keeps what follows it; imgfs and GNU tar end the name there), no ustar magic with a
//!   version other than "00" (the tar crate then ignores the prefix field), and no link, device,
//!   directory or fifo with a non-zero size (the tar crate skips that many bytes after it; POSIX,
//!   GNU tar, libarchive and imgfs store no data for them). See docs/robustness.md.

#![no_main]

use imgfs::tarindex::{index_seekable, Entry, EntryKind, StreamIndexer};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

/// Chunk sizes the stream driver is fed in (one is picked per input).
const CHUNKS: [usize; 8] = [1, 7, 511, 512, 513, 1000, 4096, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, archive)) = data.split_first() else {
        return;
    };
    let archive = archive.to_vec();
    let len = archive.len() as u64;

    let seek = index_seekable(&archive);
    let stream = index_stream(&archive, CHUNKS[pick as usize % CHUNKS.len()]);
    if let Ok(entries) = &seek {
        check_inside(entries, len);
    }
    if let Ok(entries) = &stream {
        check_inside(entries, len);
    }
    match (&seek, &stream) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "seek and stream drivers disagree"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "one driver failed: seek {:?}, stream {:?}",
            a.as_ref().err(),
            b.as_ref().err()
        ),
    }
    if let Ok(entries) = &seek {
        if let Some(want) = read_with_tar_crate(&archive) {
            compare_with_tar_crate(&archive, entries, &want);
        }
    }
});

fn index_stream(archive: &[u8], chunk: usize) -> imgfs::tarindex::Result<Vec<Entry>> {
    let mut s = StreamIndexer::new();
    for piece in archive.chunks(chunk) {
        s.feed(piece)?;
    }
    s.finish()
}

fn check_inside(entries: &[Entry], len: u64) {
    for e in entries {
        let end = e.data_offset.checked_add(e.stored_size);
        assert!(end.is_some_and(|end| end <= len), "entry outside the archive: {e:?}");
        assert!(e.header_offset < e.data_offset, "header not before data: {e:?}");
        assert!(e.mtime_nsec < 1_000_000_000, "{e:?}");
        if let Some(chunks) = &e.sparse {
            let mut at = 0u64;
            let mut stored = 0u64;
            for c in chunks {
                assert!(c.offset >= at && c.len > 0, "sparse runs unsorted or empty: {e:?}");
                at = c.offset.checked_add(c.len).expect("sparse run overflows");
                stored += c.len;
            }
            assert!(at <= e.size, "sparse runs past the logical size: {e:?}");
            assert_eq!(stored, e.stored_size, "sparse runs vs stored size: {e:?}");
        } else if e.kind == EntryKind::File {
            assert_eq!(e.size, e.stored_size, "{e:?}");
        }
        if matches!(e.kind, EntryKind::Symlink | EntryKind::Hardlink) {
            assert!(e.link.is_some(), "link without a target: {e:?}");
        }
    }
}

/// One member as the `tar` crate reads it.
struct TarMember {
    path: Vec<u8>,
    kind: EntryKind,
    link: Option<Vec<u8>>,
    size: u64,
    data_offset: u64,
    data: Vec<u8>,
}

/// The kinds compared: typeflags both readers treat the same way. Everything else (GNU sparse 'S',
/// dumpdir 'D', global 'g', volume labels, unknown flags, L/K/x in a non-ustar header, which the
/// tar crate yields as members) makes the archive not comparable.
fn plain_kind(flag: u8) -> Option<EntryKind> {
    Some(match flag {
        b'0' | 0 | b'7' => EntryKind::File,
        b'1' => EntryKind::Hardlink,
        b'2' => EntryKind::Symlink,
        b'3' => EntryKind::CharDev,
        b'4' => EntryKind::BlockDev,
        b'5' => EntryKind::Dir,
        b'6' => EntryKind::Fifo,
        _ => return None,
    })
}

/// All members and their data, or `None` if the tar crate fails anywhere or the archive holds
/// anything but plain members.
fn read_with_tar_crate(archive: &[u8]) -> Option<Vec<TarMember>> {
    let mut ar = tar::Archive::new(archive);
    let mut out = Vec::new();
    for e in ar.entries().ok()? {
        let mut e = e.ok()?;
        let mut kind = plain_kind(e.header().entry_type().as_byte())?;
        let magic = &e.header().as_bytes()[257..265];
        if magic.starts_with(b"ustar") && magic != b"ustar\x0000" && magic != b"ustar  \x00" {
            // The tar crate reads the ustar prefix only with version "00"; imgfs, like GNU tar,
            // for any version after "ustar\0".
            return None;
        }
        if let Ok(Some(pax)) = e.pax_extensions() {
            let mut keys = Vec::new();
            for field in pax {
                let key = field.ok()?.key_bytes().to_vec();
                // A key given twice: POSIX says the last wins (imgfs), the tar crate takes the first.
                if key.starts_with(b"GNU.sparse") || keys.contains(&key) {
                    return None;
                }
                keys.push(key);
            }
        }
        let path = e.path_bytes().into_owned();
        if path.contains(&0) || e.link_name_bytes().is_some_and(|l| l.contains(&0)) {
            // The tar crate keeps bytes after a NUL in a GNU long name or PAX value; imgfs (like
            // GNU tar) ends the name at the NUL.
            return None;
        }
        if kind == EntryKind::File && e.header().entry_type().as_byte() != b'7' && path.ends_with(b"/") {
            kind = EntryKind::Dir; // old-style directory: a regular member named "x/"
        }
        if kind != EntryKind::File && e.size() != 0 {
            // The tar crate reads `size` bytes of data after any header; typeflags 1-6 (and a
            // regular member named "x/") have none, whatever the size field says, except a pax
            // hardlink followed by data (header.rs): imgfs reads the next header there.
            return None;
        }
        let link = matches!(kind, EntryKind::Symlink | EntryKind::Hardlink)
            .then(|| e.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default());
        let size = e.size();
        let data_offset = e.raw_file_position();
        let mut data = Vec::new();
        e.read_to_end(&mut data).ok()?;
        if data.len() as u64 != size {
            return None;
        }
        out.push(TarMember {
            path,
            kind,
            link,
            size,
            data_offset,
            data,
        });
    }
    Some(out)
}

fn compare_with_tar_crate(archive: &[u8], ours: &[Entry], want: &[TarMember]) {
    let names =
        |v: &mut dyn Iterator<Item = &[u8]>| v.map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>();
    assert_eq!(
        ours.len(),
        want.len(),
        "member count differs: ours {:?}, tar crate {:?}",
        names(&mut ours.iter().map(|e| &e.path[..])),
        names(&mut want.iter().map(|m| &m.path[..])),
    );
    for (e, m) in ours.iter().zip(want) {
        assert_eq!(e.path, m.path, "path differs");
        assert_eq!(
            e.kind,
            m.kind,
            "kind differs for {:?}",
            String::from_utf8_lossy(&e.path)
        );
        assert_eq!(
            e.link,
            m.link,
            "link differs for {:?}",
            String::from_utf8_lossy(&e.path)
        );
        if e.kind == EntryKind::File {
            assert_eq!(
                e.size,
                m.size,
                "size differs for {:?}",
                String::from_utf8_lossy(&e.path)
            );
            assert_eq!(e.data_offset, m.data_offset, "data offset differs");
            let start = e.data_offset as usize;
            let ours = &archive[start..start + e.stored_size as usize];
            assert!(
                ours == &m.data[..],
                "data differs for {:?}",
                String::from_utf8_lossy(&e.path)
            );
        }
    }
}
