//! Checkpoints against full decodes: every checkpoint of multi-block frames, resumed and read to
//! the end of its frame, gives the bytes a full decode gives.

use super::*;
use crate::blob::codec_io::test_util::{check_random_reads, test_data, Rng};

/// Data with matches near and far: a few MiB of mixed text and binary, then parts of it
/// again, so later segments copy from well before their checkpoint.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let base = test_data(len / 2, seed);
    let mut out = base.clone();
    let mut i = 0;
    while out.len() < len {
        let from = (i * 7919 * 613) % (base.len() - 70_000);
        out.extend_from_slice(&base[from..from + 1000 + (i * 37) % 60_000]);
        out.extend_from_slice(&test_data(3000, seed + i as u64));
        i += 1;
    }
    out.truncate(len);
    out
}

fn compress(plain: &[u8], level: i32, checksum: bool, long: bool) -> Vec<u8> {
    let mut enc = ::zstd::stream::Encoder::new(Vec::new(), level).unwrap();
    enc.include_checksum(checksum).unwrap();
    if long {
        enc.long_distance_matching(true).unwrap();
        enc.window_log(27).unwrap();
    }
    std::io::Write::write_all(&mut enc, plain).unwrap();
    enc.finish().unwrap()
}

fn index_with(comp: &[u8], spacing: u64) -> (ZstdIndex, Vec<u8>) {
    let mut plain = Vec::new();
    let idx = build_index_with(comp, Some(spacing), &mut |b: &[u8]| {
        plain.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    (idx, plain)
}

/// Resumes at every checkpoint and reads to the end of the stream.
fn resume_everywhere(comp: &[u8], plain: &[u8], spacing: u64) -> ZstdIndex {
    let (idx, got) = index_with(comp, spacing);
    assert!(got == plain);
    assert_eq!(ZstdIndex::from_bytes(&idx.to_bytes()).unwrap(), idx);
    let idx = Arc::new(idx);
    let blob: Arc<dyn ReadAt> = Arc::new(comp.to_vec());
    let source = ZstdIndex::source(Arc::clone(&blob), Arc::clone(&idx));
    for c in idx.checkpoints() {
        let mut d = source.open(c.out_off).unwrap();
        assert_eq!(d.position(), c.out_off);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 100_000];
        loop {
            let n = d.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let want = &plain[c.out_off as usize..];
        assert!(
            out == want,
            "resumed at {}: {} bytes, want {}",
            c.out_off,
            out.len(),
            want.len()
        );
    }
    idx.as_ref().clone()
}

#[test]
fn every_checkpoint_resumes_exactly() {
    let plain = data(6 << 20, 1);
    for (level, checksum, long) in [(1, false, false), (3, true, false), (3, false, true), (19, true, false)] {
        let plain = match level {
            19 => &plain[..3 << 20],
            _ => &plain[..],
        };
        let comp = compress(plain, level, checksum, long);
        let idx = resume_everywhere(&comp, plain, 256 << 10);
        let n = idx.checkpoints().len();
        assert!(
            n as u64 >= plain.len() as u64 / (256 << 10) - 2,
            "level {level}: {n} checkpoints"
        );
        // The kept windows are a small part of the stream.
        let kept: usize = idx.checkpoints().iter().map(Checkpoint::encoded_len).sum();
        eprintln!(
            "level {level} long {long}: {} -> {} bytes, {n} checkpoints, {kept} bytes of checkpoints",
            plain.len(),
            comp.len()
        );
    }
}

#[test]
fn random_reads_use_checkpoints() {
    let plain = data(5 << 20, 2);
    let comp = compress(&plain, 3, true, false);
    let (idx, _) = index_with(&comp, 512 << 10);
    assert!(idx.checkpoints().len() >= 8);
    let config = CacheConfig {
        chunk_size: 64 << 10,
        cache_bytes: 256 << 10,
        max_decoders: 2,
    };
    let r = ZstdReader::with_config(Arc::new(comp), Arc::new(idx), config).unwrap();
    check_random_reads(&r, &plain, 300, plain.len() as u64);
    // Each miss decodes at most one segment plus a chunk from its checkpoint.
    let s = r.stats();
    assert!(s.decompressed_bytes < 300 * ((512 << 10) + (256 << 10)), "{s:?}");
}

#[test]
fn cli_frames_resume() {
    use std::process::{Command, Stdio};
    let plain = data(5 << 20, 3);
    for args in [
        &["-c", "-q", "-3"][..],
        &["-c", "-q", "--long", "-T2"][..],
        &["-c", "-q", "-19", "--no-check"][..],
    ] {
        let mut child = Command::new("zstd")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("zstd CLI (scripts/install-deps.sh)");
        let mut stdin = child.stdin.take().unwrap();
        let input = plain.clone();
        let w = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let out = child.wait_with_output().unwrap();
        w.join().unwrap().unwrap();
        assert!(out.status.success());
        let idx = resume_everywhere(&out.stdout, &plain, 512 << 10);
        assert!(idx.checkpoints().len() >= 6, "{args:?}");
    }
}

/// The sequence follower sees the bytes libzstd consumed, which may belong to a block that
/// libzstd rejects later: damaged frames give an index or an error, never a panic, and any
/// index they give reads the bytes libzstd decodes.
#[test]
fn damaged_frames_never_panic_the_follower() {
    let plain = data(1 << 20, 9);
    let comp = compress(&plain, 19, false, false);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next();
    let (mut indexed, mut rejected) = (0, 0);
    for _ in 0..150 {
        let mut bad = comp.clone();
        // One to eight damaged bytes past the frame header, in the sequences more often than not.
        for _ in 0..1 + next() % 8 {
            let at = 16 + (next() as usize) % (bad.len() - 16);
            bad[at] ^= 1 << (next() % 8);
        }
        let mut out = Vec::new();
        let built = build_index_with(&bad[..], Some(64 << 10), &mut |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        });
        let Ok(idx) = built else {
            rejected += 1;
            continue;
        };
        indexed += 1;
        let source = ZstdIndex::source(Arc::new(bad.clone()), Arc::new(idx.clone()));
        for c in idx.checkpoints().iter().take(4) {
            if let Ok(got) = read_from(&source, c, &out) {
                assert!(got == out[c.out_off as usize..]);
            }
        }
    }
    eprintln!("{indexed} damaged frames indexed (libzstd took them), {rejected} rejected");
    assert!(rejected > 0);
}

/// Reads from checkpoint `c` to the end of the stream.
fn read_from(source: &ZstdSource, c: &Checkpoint, plain: &[u8]) -> io::Result<Vec<u8>> {
    let mut d = source.open(c.out_off)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 100_000];
    loop {
        let at = d.position() as usize;
        let n = d.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        // Whatever fails later, no byte served so far may differ from the frame's.
        assert!(
            at + n <= plain.len() && buf[..n] == plain[at..at + n],
            "other bytes served at {at}"
        );
        out.extend_from_slice(&buf[..n]);
    }
}

/// A change made to a checkpoint.
type Edit = Box<dyn Fn(&mut Checkpoint)>;

#[test]
fn a_checkpoint_that_disagrees_with_the_frame_is_never_trusted() {
    let plain = data(3 << 20, 4);
    let comp = compress(&plain, 3, false, false);
    let (idx, _) = index_with(&comp, 256 << 10);
    let blob: Arc<dyn ReadAt> = Arc::new(comp.clone());
    let k = idx.checkpoints.len() / 2;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "window bytes wiped",
            Box::new(|c| {
                let (_, raw) = c.sparse_runs().unwrap();
                let (runs, _) = c.sparse_runs().unwrap();
                let mut zeroed = raw.clone();
                for (_, r) in runs {
                    zeroed[r].fill(0);
                }
                c.sparse = crate::cache::Bytes::owned(::zstd::bulk::compress(&zeroed, 3).unwrap());
            }),
        ),
        (
            "repeat offset changed",
            Box::new(|c| {
                let n = c.entropy.len();
                c.entropy[n - 12] ^= 1;
            }),
        ),
        ("tables changed", Box::new(|c| c.entropy[10] ^= 0x20)),
        ("checkpoint moved by a block", Box::new(|c| c.out_off += 1)),
        ("block check changed", Box::new(|c| c.block_crcs[0] ^= 1)),
        // The same window at the same place and the same blocks, only said to be elsewhere in
        // the output or the blob: every decoded byte is right, but it would be served at the
        // wrong offset.
        (
            "output offset moved with its window",
            Box::new(|c| {
                c.out_off -= 4096;
                c.content_len -= 4096;
            }),
        ),
        ("compressed offset moved", Box::new(|c| c.comp_off -= 1)),
        ("content shorter", Box::new(|c| c.content_len /= 2)),
    ];
    for (what, edit) in edits {
        let mut bad = idx.clone();
        edit(&mut bad.checkpoints[k]);
        // Damage without a matching CRC is rejected when the index is decoded...
        let mut enc = idx.clone();
        edit(&mut enc.checkpoints[k]);
        let body = enc.to_bytes();
        let c = &enc.checkpoints[k];
        let crc = c.crc().to_le_bytes();
        let at = body.windows(4).rposition(|w| w == crc).unwrap();
        let mut broken = body.clone();
        broken[at] ^= 1;
        let n = broken.len() - 32;
        let sum: [u8; 32] =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&broken[..n])).into();
        broken[n..].copy_from_slice(&sum);
        assert!(ZstdIndex::from_bytes(&broken).is_err(), "{what}: bad CRC accepted");
        // ... and with its CRC recomputed (a forged or buggy checkpoint) reads through it fail
        // rather than serve other bytes.
        let source = ZstdIndex::source(Arc::clone(&blob), Arc::new(bad.clone()));
        let c = &bad.checkpoints[k];
        match read_from(&source, c, &plain) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}"),
            Ok(got) => panic!("{what}: read {} bytes through a wrong checkpoint", got.len()),
        }
        // A decoder started before it crosses it: it fails there, or (when what it takes from
        // the checkpoint, the window bytes, is intact) reads the true bytes.
        let before = &bad.checkpoints[k - 1];
        if let Ok(got) = read_from(&source, before, &plain) {
            assert!(
                got == plain[before.out_off as usize..],
                "{what}: crossing gave other bytes"
            );
        }
    }
}

#[test]
fn frames_of_a_stream_get_their_own_checkpoints() {
    // An empty frame and a small one (no checkpoints: too small) between two large frames: the
    // recording thread must number frames as the frame table does (empty frames are not in it)
    // and follow the second large frame although it gave up on the ones before.
    let a = data(3 << 20, 5);
    let b = test_data(100_000, 6);
    let c = data(2 << 20, 7);
    let comp = [
        compress(&[], 3, true, false),
        compress(&a, 3, true, false),
        compress(&b, 1, false, false),
        compress(&[], 1, false, false),
        compress(&c, 19, true, false),
    ]
    .concat();
    let plain = [a.clone(), b, c].concat();
    let idx = resume_everywhere(&comp, &plain, 256 << 10);
    let frames: Vec<u64> = idx.checkpoints().iter().map(|c| c.frame).collect();
    assert!(frames.iter().filter(|&&f| f == 0).count() >= 8, "{frames:?}");
    assert!(frames.iter().filter(|&&f| f == 2).count() >= 5, "{frames:?}");
    assert!(frames.iter().all(|&f| f == 0 || f == 2), "{frames:?}");
}

#[test]
fn an_index_loaded_from_a_mapped_file_keeps_its_sparse_windows_there_and_reads_the_same() {
    let plain = data(3 << 20, 8);
    let comp = compress(&plain, 3, true, false);
    let (idx, _) = index_with(&comp, 256 << 10);
    assert!(idx.checkpoints().len() >= 8);
    // An index inside a mapped cache file, after other bytes, as in a layer cache file.
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::cache::Cache::new(Some(dir.path().to_path_buf()));
    // Written as the layer cache writes it: streamed, never whole in memory.
    let body = idx.to_bytes();
    assert_eq!(body.len(), idx.encoded_len());
    cache.store_with("t", "k", |w| {
        w.write_all(&[7u8; 1000])?;
        idx.write_to(w)
    });
    let (map, payload) = cache.map("t", "k").unwrap();
    let at = payload.start + 1000;
    assert_eq!(&map[at..at + body.len()], &body[..]);
    let mapped = ZstdIndex::from_mapped(&map, at..at + body.len()).unwrap();
    assert_eq!(mapped, idx);
    assert!(mapped.checkpoints().iter().all(|c| c.sparse.is_mapped()));
    assert!(ZstdIndex::from_mapped(&map, at..at + body.len() + 1).is_err());
    let blob: Arc<dyn ReadAt> = Arc::new(comp);
    let r = ZstdReader::new(blob, Arc::new(mapped)).unwrap();
    check_random_reads(&r, &plain, 200, 60_000);
}

#[test]
fn sparse_windows_spilled_during_the_pass_are_mapped_back_and_read_the_same() {
    let plain = data(3 << 20, 9);
    let comp = compress(&plain, 19, false, false);
    let (in_memory, _) = index_with(&comp, 256 << 10);
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::cache::Cache::new(Some(dir.path().to_path_buf()));
    let spill = cache.spill().expect("O_TMPFILE in a temporary directory");
    let mut got = Vec::new();
    let spilled = build_index_spilling(&comp[..], Some(256 << 10), Some(spill), &mut |b: &[u8]| {
        got.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert!(got == plain);
    assert!(spilled.checkpoints().len() >= 8);
    assert!(spilled.checkpoints().iter().all(|c| c.sparse.is_mapped()));
    // The same index, byte for byte, and the spill file left no name behind.
    assert_eq!(spilled, in_memory);
    assert_eq!(spilled.to_bytes(), in_memory.to_bytes());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let blob: Arc<dyn ReadAt> = Arc::new(comp);
    let r = ZstdReader::new(blob, Arc::new(spilled)).unwrap();
    check_random_reads(&r, &plain, 200, 61_000);
}

/// Manual measurement: CPU of the index pass, and of decoding a layer's segments from their
/// checkpoints (one thread, two threads at once as read-ahead runs them, one decoder through
/// all) against libzstd's streaming decode of the whole frame.
/// `IMGFS_DECODE_COST=layer.zst [IMGFS_DECODE_RANGE=from,to] cargo test --release --lib --
/// --ignored decode_cost --nocapture` (the range, in output bytes, picks the segments of one file).
#[test]
#[ignore]
fn decode_cost() {
    let path = std::env::var("IMGFS_DECODE_COST").expect("set IMGFS_DECODE_COST to a zstd layer");
    let comp = std::fs::read(&path).unwrap();
    // This process's CPU seconds (clock ticks of 10 ms: enough for runs of tenths of seconds).
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let f: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
    };
    let mb_per = |bytes: u64, secs: f64| bytes as f64 / 1e6 / secs;

    let t = cpu();
    let mut dec = ::zstd::stream::Decoder::new(&comp[..]).unwrap();
    dec.window_log_max(31).unwrap();
    let len = std::io::copy(&mut dec, &mut std::io::sink()).unwrap();
    eprintln!("stream decode: {:.0} MB/s per CPU-s", mb_per(len, cpu() - t));

    let (t, wall) = (cpu(), std::time::Instant::now());
    let idx = build_index_with(&comp[..], Some(DEFAULT_CHECKPOINT_SPACING), &mut |_| Ok(())).unwrap();
    eprintln!(
        "index pass: {:.2} CPU-s, {:.2} s",
        cpu() - t,
        wall.elapsed().as_secs_f64()
    );

    let range = std::env::var("IMGFS_DECODE_RANGE").map_or((0, len), |r| {
        let (a, b) = r.split_once(',').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    });
    let c = idx.checkpoints();
    let segs: Vec<(u64, u64)> = (0..c.len())
        .map(|i| (c[i].out_off, c.get(i + 1).map_or(len, |n| n.out_off)))
        .filter(|&(a, b)| b > range.0 && a < range.1)
        .collect();
    let bytes = segs.last().unwrap().1 - segs[0].0;
    let source = ZstdIndex::source(Arc::new(comp.clone()), Arc::new(idx.clone()));
    let read = |from: u64, n: u64| {
        let mut d = source.open(from).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = n as usize;
        while left > 0 {
            let k = d.read(&mut buf[..left.min(1 << 20)]).unwrap();
            assert!(k > 0);
            left -= k;
        }
    };

    let t = cpu();
    segs.iter().for_each(|&(a, b)| read(a, b - a));
    let one = mb_per(bytes, cpu() - t);
    let (t, wall) = (cpu(), std::time::Instant::now());
    std::thread::scope(|sc| {
        for k in 0..2 {
            let (segs, read) = (&segs, &read);
            sc.spawn(move || segs.iter().skip(k).step_by(2).for_each(|&(a, b)| read(a, b - a)));
        }
    });
    let (two, two_wall) = (mb_per(bytes, cpu() - t), mb_per(bytes, wall.elapsed().as_secs_f64()));
    let t = cpu();
    read(segs[0].0, bytes);
    let run = mb_per(bytes, cpu() - t);
    eprintln!(
        "{} segments, {:.0} MB: one thread {one:.0} MB/s per CPU-s; two threads {two:.0} MB/s per CPU-s, \
         {two_wall:.0} MB/s; one decoder through all {run:.0} MB/s per CPU-s",
        segs.len(),
        bytes as f64 / 1e6
    );
}
