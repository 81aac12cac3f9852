//! Tests of the gzip access-point index, builder and reader.

use super::build::{sparse_window, PendingPoint};
use super::*;
use crate::blob::chunk_cache::CacheConfig;
use crate::blob::codec_io::test_util::{check_random_reads, check_read, test_data, Rng, ShortReads};
use std::io::Write;

/// An edit of an encoded index.
type Edit<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;

const SMALL_SPACING: u64 = 64 << 10;

/// Options of a hand-made gzip member.
#[derive(Default)]
struct Opts<'a> {
    level: u32,
    name: Option<&'a [u8]>,
    comment: Option<&'a [u8]>,
    extra: Option<&'a [u8]>,
    hcrc: bool,
}

/// One gzip member, header fields and all, built by hand.
fn member(data: &[u8], o: &Opts<'_>) -> Vec<u8> {
    let mut flags = 0;
    for (set, bit) in [
        (o.hcrc, FHCRC),
        (o.extra.is_some(), FEXTRA),
        (o.name.is_some(), FNAME),
        (o.comment.is_some(), FCOMMENT),
    ] {
        if set {
            flags |= bit;
        }
    }
    let mut out = vec![GZIP_ID1, GZIP_ID2, GZIP_CM_DEFLATE, flags, 1, 2, 3, 4, 0, 3];
    if let Some(x) = o.extra {
        out.extend_from_slice(&(x.len() as u16).to_le_bytes());
        out.extend_from_slice(x);
    }
    for s in [o.name, o.comment].into_iter().flatten() {
        out.extend_from_slice(s);
        out.push(0);
    }
    if o.hcrc {
        let mut c = Crc::new();
        c.update(&out);
        out.extend_from_slice(&(c.sum() as u16).to_le_bytes());
    }
    let level = flate2::Compression::new(if o.level == 0 { 6 } else { o.level });
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), level);
    enc.write_all(data).unwrap();
    out.extend_from_slice(&enc.finish().unwrap());
    let mut c = Crc::new();
    c.update(data);
    out.extend_from_slice(&c.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn gz(data: &[u8]) -> Vec<u8> {
    member(data, &Opts::default())
}

/// Runs an external compressor on `data`; `None` when it is not installed.
fn tool(cmd: &str, args: &[&str], data: &[u8]) -> Option<Vec<u8>> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    out.status.success().then_some(out.stdout)
}

fn index(comp: &[u8], spacing: u64) -> Result<(GzipIndex, Vec<u8>)> {
    let mut plain = Vec::new();
    let idx = build_index(comp, spacing, &mut |b: &[u8]| {
        plain.extend_from_slice(b);
        Ok(())
    })?;
    Ok((idx, plain))
}

/// Builds the index, checks it against `plain`, round-trips it and reads it at random
/// through a short-reading blob. Returns the index.
fn roundtrip(comp: &[u8], plain: &[u8], spacing: u64, reads: usize) -> GzipIndex {
    let (idx, got) = index(comp, spacing).unwrap();
    assert!(got == plain, "build_index output differs");
    assert_eq!(idx.uncompressed_len(), plain.len() as u64);
    assert_eq!(idx.compressed_len(), comp.len() as u64);
    let sha: [u8; 32] = sha2::Sha256::digest(comp).into();
    assert_eq!(idx.compressed_sha256(), sha);
    let decoded = GzipIndex::from_bytes(&idx.to_bytes()).unwrap();
    assert_eq!(decoded, idx);
    let config = CacheConfig {
        chunk_size: 64 << 10,
        cache_bytes: 512 << 10,
        max_decoders: 3,
    };
    let r = GzipReader::with_config(ShortReads::new(comp.to_vec()), Arc::new(idx.clone()), config).unwrap();
    check_random_reads(&r, plain, reads, plain.len() as u64 + 7);
    idx
}

use sha2::Digest;

#[test]
fn roundtrip_sizes_and_levels() {
    for (i, &size) in [0usize, 1, 32767, 32768, 32769, 200_000, 3 << 20].iter().enumerate() {
        let plain = test_data(size, i as u64);
        for level in [1, 6, 9] {
            let idx = roundtrip(
                &member(
                    &plain,
                    &Opts {
                        level,
                        ..Opts::default()
                    },
                ),
                &plain,
                SMALL_SPACING,
                150,
            );
            // (zlib-rs level 1 writes ~1 MiB blocks, so points can only be that dense.)
            if size >= 1 << 20 && level > 1 {
                let n = idx.points().len() as u64;
                assert!(n >= size as u64 / SMALL_SPACING / 2, "{n} points for {size} bytes");
                assert!(idx.points().iter().any(|p| p.bits != 0));
                assert!(idx.points().iter().any(|p| p.window_len() > 0));
            }
        }
    }
}

#[test]
fn random_incompressible_data_uses_stored_blocks() {
    let mut rng = Rng(99);
    let plain: Vec<u8> = (0..(1 << 20)).map(|_| rng.next() as u8).collect();
    let idx = roundtrip(&gz(&plain), &plain, SMALL_SPACING, 100);
    assert!(idx.points().len() > 4);
}

#[test]
fn header_fields_are_parsed() {
    let plain = test_data(100_000, 5);
    let extra = [b'A', b'B', 4, 0, 1, 2, 3, 4];
    let o = Opts {
        level: 6,
        name: Some(b"file.tar"),
        comment: Some(b"a comment"),
        extra: Some(&extra),
        hcrc: true,
    };
    let comp = member(&plain, &o);
    roundtrip(&comp, &plain, SMALL_SPACING, 50);
    // A wrong header CRC is caught, with its offset.
    let hcrc_at = 10 + 2 + extra.len() + 9 + 10;
    let mut bad = comp.clone();
    bad[hcrc_at] ^= 1;
    match index(&bad, SMALL_SPACING) {
        Err(Error::Corrupt { offset, msg, .. }) => {
            assert_eq!(offset, hcrc_at as u64);
            assert!(msg.contains("header CRC"), "{msg}");
        }
        other => panic!("expected a header CRC error, got {other:?}"),
    }
    // Reserved flags, unknown method.
    for (at, v) in [(3, 0x20u8), (2, 7)] {
        let mut bad = comp.clone();
        bad[at] = v;
        assert!(matches!(index(&bad, SMALL_SPACING), Err(Error::Corrupt { .. })));
    }
}

#[test]
fn multi_member_with_empty_members_and_padding() {
    let parts: Vec<Vec<u8>> = [0usize, 70_000, 0, 1, 300_000, 32768, 0, 150_000]
        .iter()
        .enumerate()
        .map(|(i, &n)| test_data(n, 100 + i as u64))
        .collect();
    let mut comp = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let o = Opts {
            level: 1 + (i as u32 % 9),
            name: (i % 2 == 0).then_some(b"n".as_slice()),
            hcrc: i % 3 == 0,
            ..Opts::default()
        };
        comp.extend(member(p, &o));
    }
    let plain = parts.concat();
    let idx = roundtrip(&comp, &plain, SMALL_SPACING, 300);
    assert!(idx.points().iter().filter(|p| p.member_start).count() > 1);
    // Zero padding after the last member is fine.
    let mut padded = comp.clone();
    padded.extend(std::iter::repeat_n(0u8, 5000));
    roundtrip(&padded, &plain, SMALL_SPACING, 100);
    // Anything else after it is not, and the error says where.
    for tail in [&[0u8, 0, 7][..], b"x", &[GZIP_ID1][..], &[GZIP_ID1, GZIP_ID2][..]] {
        let mut bad = comp.clone();
        bad.extend_from_slice(tail);
        match index(&bad, SMALL_SPACING) {
            Err(Error::Corrupt { offset, .. }) => {
                assert!(offset >= comp.len() as u64 && offset <= bad.len() as u64)
            }
            other => panic!("tail {tail:?}: expected an error, got {other:?}"),
        }
    }
}

#[test]
fn every_spacing_gives_the_same_bytes() {
    let plain = test_data(700_000, 8);
    let comp = [gz(&plain[..300_000]), gz(&plain[300_000..])].concat();
    for spacing in [1, 1000, 32 << 10, 100_000, 1 << 20, u64::MAX] {
        roundtrip(&comp, &plain, spacing, 60);
    }
}

#[test]
fn external_tools_output() {
    // Every producer is required (scripts/install-deps.sh installs them): a missing tool
    // fails the test instead of leaving it to check nothing.
    let plain = test_data(2_500_000, 21);
    let mut outputs = Vec::new();
    for (cmd, args) in [
        ("gzip", &["-c", "-6"][..]),
        ("gzip", &["-c", "-1", "--rsyncable"][..]),
        ("pigz", &["-c", "-p", "2", "-b", "128"][..]),
        ("pigz", &["-c", "-i", "-9"][..]),
    ] {
        let c = tool(cmd, args, &plain).unwrap_or_else(|| panic!("{cmd} {args:?} failed or is not installed"));
        outputs.push(c);
    }
    for c in &outputs {
        roundtrip(c, &plain, SMALL_SPACING, 100);
    }
    // `cat a.gz b.gz`
    let cat = [outputs[0].clone(), outputs[2].clone()].concat();
    roundtrip(&cat, &[plain.clone(), plain.clone()].concat(), SMALL_SPACING, 100);
    // python3's gzip module writes FNAME and an mtime.
    let py = "import gzip,sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), 5))";
    let c = tool("python3", &["-c", py], &plain).expect("python3 failed or is not installed");
    roundtrip(&c, &plain, SMALL_SPACING, 50);
}

#[test]
fn truncations_are_errors_with_offsets() {
    let plain = test_data(60_000, 3);
    let comp = [gz(&plain[..20_000]), gz(&plain[20_000..])].concat();
    let boundary = gz(&plain[..20_000]).len();
    // Every cut near the header, the member boundary and the end; a sample elsewhere.
    let near = |c: usize| c < 64 || c.abs_diff(boundary) < 64 || comp.len() - c < 64;
    for cut in (0..comp.len()).filter(|&c| near(c) || c % 41 == 0) {
        match index(&comp[..cut], 16 << 10) {
            Err(Error::Corrupt { offset, .. }) => assert!(offset <= cut as u64, "cut {cut}"),
            Ok(_) if cut == boundary => {}
            other => panic!("cut {cut}: expected an error, got {other:?}"),
        }
    }
}

#[test]
fn corruption_is_an_error() {
    let plain = test_data(200_000, 4);
    let comp = gz(&plain);
    let mut rng = Rng(77);
    for _ in 0..300 {
        let at = 10 + rng.below(comp.len() as u64 - 10) as usize;
        let mut bad = comp.clone();
        bad[at] ^= 1 << rng.below(8);
        match index(&bad, SMALL_SPACING) {
            Err(Error::Corrupt { offset, .. }) => assert!(offset < comp.len() as u64),
            other => panic!("flip at {at}: expected an error, got {:?}", other.map(|_| ())),
        }
    }
    for junk in [&b""[..], b"\0\0\0", b"hello world", &[0x1f, 0x8b, 8, 0][..]] {
        assert!(matches!(index(junk, SMALL_SPACING), Err(Error::Corrupt { .. })));
    }
}

#[test]
fn sink_errors_abort() {
    let plain = test_data(1 << 20, 6);
    let mut seen = 0;
    let r = build_index(&gz(&plain)[..], SMALL_SPACING, &mut |b: &[u8]| {
        seen += b.len();
        match seen > 300_000 {
            true => Err(io::Error::other("stop")),
            false => Ok(()),
        }
    });
    assert!(matches!(r, Err(Error::Sink(_))));
}

#[test]
fn read_errors_on_damaged_blob() {
    let plain = test_data(2 << 20, 9);
    let comp = gz(&plain);
    let (idx, _) = index(&comp, SMALL_SPACING).unwrap();
    let idx = Arc::new(idx);
    // Wrong length is refused up front.
    let short: Arc<dyn ReadAt> = Arc::new(comp[..comp.len() - 1].to_vec());
    assert!(GzipReader::new(short, Arc::clone(&idx)).is_err());
    // Garbage in the middle: reads through it fail cleanly, other reads still work.
    let mut bad = comp.clone();
    let mid = comp.len() / 2;
    bad[mid..mid + 4000].fill(0xff);
    let r = GzipReader::new(Arc::new(bad), Arc::clone(&idx)).unwrap();
    let mut errors = 0;
    let mut buf = vec![0u8; 128 << 10];
    for off in (0..plain.len()).step_by(buf.len()) {
        match r.read_at(&mut buf, off as u64) {
            Ok(n) => assert!(n > 0),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                assert!(e.to_string().contains("compressed offset"), "{e}");
                errors += 1;
            }
        }
    }
    assert!(errors > 0);
    check_read(&r, &plain, 0, 1000);
    // A truncated tail (same length, zeroed) fails at the end instead of returning short.
    let mut tail = comp.clone();
    let n = tail.len();
    tail[n - 3000..].fill(0);
    let r = GzipReader::new(Arc::new(tail), idx).unwrap();
    let mut buf = vec![0u8; 1000];
    assert!(r.read_at(&mut buf, plain.len() as u64 - 1000).is_err());
}

#[test]
fn sequential_reads_are_linear() {
    let plain = test_data(12 << 20, 10);
    let comp = gz(&plain);
    let (idx, _) = index(&comp, DEFAULT_SPACING).unwrap();
    let idx = Arc::new(idx);
    let configs = [
        CacheConfig::default(),
        CacheConfig {
            chunk_size: 128 << 10,
            cache_bytes: 0,
            max_decoders: 2,
        },
    ];
    for config in configs {
        let r = GzipReader::with_config(Arc::new(comp.clone()), Arc::clone(&idx), config).unwrap();
        let mut buf = vec![0u8; 128 << 10];
        let mut off = 0;
        while off < plain.len() {
            let n = r.read_at(&mut buf, off as u64).unwrap();
            assert!(buf[..n] == plain[off..off + n]);
            off += n;
        }
        let s = r.stats();
        assert_eq!(s.decompressed_bytes, plain.len() as u64, "{config:?}: {s:?}");
        assert_eq!(s.decoders_opened, 1, "{s:?}");
    }
}

#[test]
fn random_reads_cost_at_most_one_spacing() {
    let plain = test_data(8 << 20, 12);
    let comp = gz(&plain);
    let (idx, _) = index(&comp, DEFAULT_SPACING).unwrap();
    let config = CacheConfig {
        cache_bytes: 0,
        max_decoders: 0,
        ..CacheConfig::default()
    };
    let r = GzipReader::with_config(Arc::new(comp), Arc::new(idx), config).unwrap();
    let mut rng = Rng(5);
    for _ in 0..50 {
        let before = r.stats().decompressed_bytes;
        let off = rng.below(plain.len() as u64);
        check_read(&r, &plain, off, 1);
        let cost = r.stats().decompressed_bytes - before;
        // Blocks are at most ~64 KiB of output at these levels, so a point lies within.
        assert!(
            cost <= DEFAULT_SPACING + (256 << 10) + config.chunk_size as u64,
            "{cost}"
        );
    }
}

#[test]
fn concurrent_readers() {
    let plain = Arc::new(test_data(6 << 20, 13));
    let comp = gz(&plain);
    let (idx, _) = index(&comp, SMALL_SPACING).unwrap();
    let config = CacheConfig {
        chunk_size: 64 << 10,
        cache_bytes: 1 << 20,
        max_decoders: 4,
    };
    let r = Arc::new(GzipReader::with_config(ShortReads::new(comp), Arc::new(idx), config).unwrap());
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (r, plain) = (Arc::clone(&r), Arc::clone(&plain));
            std::thread::spawn(move || match t % 2 {
                0 => check_random_reads(r.as_ref(), &plain, 200, t + 1),
                _ => {
                    let mut off = (t as usize) * 10_000;
                    while off < plain.as_slice().len() {
                        check_read(r.as_ref(), &plain, off as u64, 128 << 10);
                        off += 128 << 10;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Re-signs an edited encoding so only the structural checks can reject it.
fn resign(mut enc: Vec<u8>) -> Vec<u8> {
    let n = enc.len() - 32;
    let sum: [u8; 32] = sha2::Sha256::digest(&enc[..n]).into();
    enc[n..].copy_from_slice(&sum);
    enc
}

#[test]
fn encoding_rejects_damage_and_inconsistency() {
    let plain = test_data(400_000, 14);
    let comp = [gz(&plain[..100_000]), gz(&plain[100_000..])].concat();
    let (idx, _) = index(&comp, SMALL_SPACING).unwrap();
    assert!(idx.points().len() >= 4);
    let enc = idx.to_bytes();
    for i in 0..enc.len() {
        let mut bad = enc.clone();
        bad[i] ^= 1 << (i % 8);
        assert!(GzipIndex::from_bytes(&bad).is_err(), "flip at {i}");
        assert!(GzipIndex::from_bytes(&enc[..i]).is_err(), "cut at {i}");
    }
    let mut longer = enc.clone();
    longer.push(0);
    assert!(GzipIndex::from_bytes(&longer).is_err());

    // Structural damage behind a valid checksum.
    let header = 8 + 4 + 8 + 8 + 8 + 32;
    // Encoded offset of the first point that has a window.
    let with_window = idx.points().iter().position(|p| p.window_len() > 0).unwrap();
    let p1 = header
        + 8
        + idx.points()[..with_window]
            .iter()
            .map(|p| MIN_POINT_BYTES + p.window.len())
            .sum::<usize>();
    let edits: Vec<(&str, Edit<'_>)> = vec![
        (
            "huge count",
            Box::new(|e| e[header..header + 8].copy_from_slice(&u64::MAX.to_le_bytes())),
        ),
        ("zero count", Box::new(|e| e[header..header + 8].fill(0))),
        ("point out of order", Box::new(move |e| e[p1..p1 + 8].fill(0))),
        ("bits > 7", Box::new(move |e| e[p1 + 16] = 9)),
        ("unknown flag", Box::new(move |e| e[p1 + 17] |= 0x80)),
        ("short compressed_len", Box::new(|e| e[12..20].fill(0))),
        (
            "short uncompressed_len",
            Box::new(|e| e[20..28].copy_from_slice(&5u64.to_le_bytes())),
        ),
        ("magic", Box::new(|e| e[0] = b'X')),
        ("version", Box::new(|e| e[8] = 2)),
    ];
    for (what, edit) in edits {
        let mut bad = enc.clone();
        edit(&mut bad);
        assert!(GzipIndex::from_bytes(&resign(bad)).is_err(), "{what}");
    }
    // A damaged window is found when its point is first used (windows are not inflated
    // while loading): reads through it fail, they never return wrong bytes.
    let window_edits: Vec<(&str, Edit<'_>)> = vec![
        ("window length", Box::new(move |e| e[p1 + 18] ^= 1)),
        ("window data", Box::new(move |e| e[p1 + 26] ^= 0xff)),
    ];
    let at = idx.points()[with_window].out;
    for (what, edit) in window_edits {
        let mut bad = enc.clone();
        edit(&mut bad);
        let Ok(bad_idx) = GzipIndex::from_bytes(&resign(bad)) else {
            continue;
        };
        let blob: Arc<dyn ReadAt> = Arc::new(comp.clone());
        let reader = GzipReader::new(blob, Arc::new(bad_idx)).unwrap();
        let mut buf = vec![0u8; 4096];
        match reader.read_at(&mut buf, at) {
            Err(_) => {}
            Ok(n) => assert_eq!(&buf[..n], &plain[at as usize..at as usize + n], "{what}: wrong bytes"),
        }
    }
}

#[test]
fn index_size_is_small() {
    // ~3x compressible data at 64 KiB spacing: windows are stored compressed.
    let plain = test_data(8 << 20, 15);
    let (idx, _) = index(&gz(&plain), SMALL_SPACING).unwrap();
    let per_point = idx.to_bytes().len() / idx.points().len();
    assert!(per_point < 20_000, "{per_point} bytes per point");
}

#[test]
fn reference_scan_finds_every_window_reference() {
    let mut rng = Rng(31);
    let noise: Vec<u8> = (0..300_000).map(|_| rng.next() as u8).collect();
    let text = test_data(1_500_000, 32);
    let zeros = vec![0u8; 400_000];
    let plain = [text.clone(), noise, zeros, text].concat();
    let mut streams: Vec<(String, Vec<u8>)> = [2, 4, 6, 9]
        .iter()
        .map(|&level| {
            (
                format!("zlib-rs -{level}"),
                member(
                    &plain,
                    &Opts {
                        level,
                        ..Opts::default()
                    },
                ),
            )
        })
        .collect();
    for level in ["-1", "-3", "-9"] {
        if let Some(c) = tool("gzip", &["-c", level], &plain) {
            streams.push((format!("gzip {level}"), c));
        }
    }
    for (level, comp) in streams {
        let (idx, _) = index(&comp, 40_000).unwrap();
        let mut scanned = 0;
        for p in idx.points().iter().filter(|p| !p.member_start) {
            let out = p.out as usize;
            let window = &plain[out.saturating_sub(WINDOW_SIZE)..out];
            let (data, start_bit) = match p.bits {
                0 => (&comp[p.inp as usize..], 0),
                b => (&comp[p.inp as usize - 1..], usize::from(8 - b)),
            };
            let marks = refscan::referenced(data, start_bit, window.len())
                .unwrap_or_else(|| panic!("level {level}: scan failed at {out}"));
            let pending = PendingPoint {
                out: p.out,
                inp: p.inp,
                bits: p.bits,
                window: window.to_vec(),
                comp: data.to_vec(),
                after: plain[out..(out + WINDOW_SIZE).min(plain.len())].to_vec(),
            };
            let sparse = sparse_window(window, &marks);
            assert!(pending.reproduces(&sparse), "level {level}: sparse window at {out}");
            // The stored window is that sparse one.
            assert_eq!(p.window().unwrap(), sparse);
            // Dropping one referenced byte breaks it, so the marks are not overly generous.
            if let Some(i) = sparse.iter().rposition(|&b| b != 0) {
                let mut broken = sparse.clone();
                broken[i] ^= 0x55;
                assert!(!pending.reproduces(&broken), "level {level}: byte {i} at {out}");
            }
            scanned += 1;
        }
        assert!(scanned > 10, "level {level}: {scanned} points");
    }
}

#[test]
fn sparse_windows_shrink_the_index() {
    let plain = test_data(4 << 20, 33);
    let (idx, _) = index(&gz(&plain), SMALL_SPACING).unwrap();
    let full = idx.points().iter().filter(|p| p.window_len() == WINDOW_SIZE).count();
    let stored: usize = idx.points().iter().map(|p| p.compressed_window_len()).sum();
    let n = idx.points().len();
    assert!(stored / n < 8 << 10, "{} bytes per window", stored / n);
    assert!(full < n, "{full} of {n} windows are full");
}

#[test]
fn reader_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GzipReader>();
    let _as_blob = |r: GzipReader| -> Arc<dyn ReadAt> { Arc::new(r) };
}
