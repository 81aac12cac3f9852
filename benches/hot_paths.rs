//! In-process benchmarks of the hot paths, with no root, mount or outside tool:
//! `cargo bench --bench hot_paths`. They complement `scripts/bench*` (whole-system figures side
//! by side with the peers, which need root): these isolate one stage each, so a change to it can
//! be measured in seconds.
//!
//! - `gzip_index_build`: one pass over a gzip layer recording access points (`blob::gzip`).
//! - `gzip_random_read`: a 4 KiB read at a random offset, from the nearest access point.
//! - `tar_stream_index`: the push-driven tar indexer over a layer of small files.
//! - `merge_layers`: the OCI merge of three layers of entries.
//! - `verified_chunk_read`: a first read through `blob::verified` (one chunk read and hashed),
//!   for the chunk sizes of compressed (64 KiB) and uncompressed (16 KiB) blobs.

use flate2::{write::GzEncoder, Compression};
use imgfs::blob::gzip::{build_index, GzipReader};
use imgfs::blob::ReadAt;
use imgfs::tarindex::StreamIndexer;
use std::io::Write;
use std::sync::{Arc, OnceLock};

fn main() {
    divan::main();
}

/// A tar of `files` small text-like files in 100 directories, like a distribution layer.
fn layer_tar(files: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..files {
        let body = format!("file {i}\n").repeat(1 + i % 200);
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_650_000_000);
        b.append_data(&mut h, format!("usr/share/d{}/file-{i}.txt", i % 100), body.as_bytes())
            .expect("tar");
    }
    b.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// ~32 MiB of tar and its gzip, built once for every benchmark.
fn corpus() -> &'static (Vec<u8>, Vec<u8>) {
    static C: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    C.get_or_init(|| {
        let tar = layer_tar(40_000);
        let gz = gzip(&tar);
        (tar, gz)
    })
}

/// Access-point spacing used by the layer indexer (about 1 MiB of output).
const SPACING: u64 = 1 << 20;

#[divan::bench(sample_count = 10)]
fn gzip_index_build(bencher: divan::Bencher) {
    let (tar, gz) = corpus();
    bencher
        .counter(divan::counter::BytesCount::new(tar.len()))
        .bench(|| build_index(&gz[..], SPACING, &mut |_| Ok(())).expect("index"));
}

#[divan::bench(sample_count = 200)]
fn gzip_random_read(bencher: divan::Bencher) {
    let (tar, gz) = corpus();
    let index = Arc::new(build_index(&gz[..], SPACING, &mut |_| Ok(())).expect("index"));
    let compressed: Arc<dyn ReadAt> = Arc::new(gz.clone());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let len = tar.len() as u64;
    bencher
        .with_inputs(|| {
            // A fresh reader each time: no chunk cached, so every read inflates from its point.
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let reader = GzipReader::new(compressed.clone(), index.clone()).expect("reader");
            (reader, (state >> 11) % (len - 4096))
        })
        .bench_local_values(|(reader, offset)| {
            let mut buf = [0u8; 4096];
            reader.read_at(&mut buf, offset).expect("read")
        });
}

#[divan::bench(sample_count = 10)]
fn tar_stream_index(bencher: divan::Bencher) {
    let (tar, _) = corpus();
    bencher.counter(divan::counter::BytesCount::new(tar.len())).bench(|| {
        let mut s = StreamIndexer::new();
        // 64 KiB pieces, as an inflater hands them over.
        for piece in tar.chunks(64 << 10) {
            s.feed(piece).expect("feed");
        }
        s.finish().expect("finish")
    });
}

#[divan::bench(sample_count = 10)]
fn merge_layers(bencher: divan::Bencher) {
    let index = |tar: &[u8]| {
        let mut s = StreamIndexer::new();
        s.feed(tar).expect("feed");
        s.finish().expect("finish")
    };
    let (tar, _) = corpus();
    let base = index(tar);
    let middle = index(&layer_tar(10_000));
    let top = index(&layer_tar(2_000));
    bencher
        .counter(divan::counter::ItemsCount::new(base.len() + middle.len() + top.len()))
        .bench(|| imgfs::merge::merge(&[&base, &middle, &top]));
}

#[divan::bench(args = [imgfs::blob::verified::RAW_CHUNK_SHIFT, imgfs::blob::verified::CHUNK_SHIFT], sample_count = 200)]
fn verified_chunk_read(bencher: divan::Bencher, shift: u8) {
    use imgfs::blob::verified::{ChunkHasher, VerifiedBlob};
    let (tar, _) = corpus();
    let mut hasher = ChunkHasher::new(shift);
    hasher.update(tar);
    let digests = Arc::new(hasher.finish());
    let blob: Arc<dyn ReadAt> = Arc::new(tar.clone());
    let layer = imgfs::digest::Digest::sha256_of(tar);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let len = tar.len() as u64;
    bencher
        .with_inputs(|| {
            // A fresh blob each time: no chunk verified yet.
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let v = VerifiedBlob::new(blob.clone(), digests.clone(), layer.clone()).expect("blob");
            (v, (state >> 11) % (len - 4096))
        })
        .bench_local_values(|(v, offset)| {
            let mut buf = [0u8; 4096];
            v.read_at(&mut buf, offset).expect("read")
        });
}
