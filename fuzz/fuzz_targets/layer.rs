//! One layer end to end (`imgfs::layer::build_index`: hash, decompress with access points, index
//! the tar stream in one pass; then `imgfs::layer::file::FileData` reads, sparse-aware, through
//! the gzip/zstd readers the way a mount serves file contents).
//!
//! Input: byte 0 = mode (% 3: 0 = the payload is the layer blob as it is, 1 = the target gzips
//! the payload, 2 = the target zstd-compresses it), byte 1 = access point spacing / read seed;
//! the rest is the payload (a tar stream, or anything).
//!
//! Invariants: indexing gives an error or an index (the blob's digest is computed by the target,
//! so indexing never stops at a digest mismatch); every member decodes from the index; the data
//! of every regular file reads back in full through `FileData` (the index guarantees it lies in
//! the stream and that sparse runs add up to the stored data): for a plain file it equals the
//! same bytes of the uncompressed stream, for a sparse file every byte outside the runs is zero.

#![no_main]

use imgfs::blob::chunk_cache::{CacheConfig, MIN_CHUNK_SIZE};
use imgfs::blob::gzip::GzipReader;
use imgfs::blob::zstd::ZstdReader;
use imgfs::blob::{read_exact_at, ReadAt};
use imgfs::digest::Digest;
use imgfs::layer::file::FileData;
use imgfs::layer::{build_index, SeekIndex};
use imgfs::tarindex::EntryKind;
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::sync::Arc;

/// Logical bytes read per file, at most (sparse files may claim terabytes).
const MAX_READ: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (mode, param) = (data[0] % 3, data[1]);
    let payload = &data[2..];
    let blob: Vec<u8> = match mode {
        0 => payload.to_vec(),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(u32::from(param % 10)));
            for piece in payload.chunks(1 + param as usize * 37) {
                e.write_all(piece).unwrap();
                e.flush().unwrap(); // block boundaries, so access points are dense
            }
            e.finish().unwrap()
        }
        _ => zstd::encode_all(payload, 1 + i32::from(param % 3)).unwrap(),
    };
    let digest = Digest::sha256_of(&blob);
    let blob: Arc<dyn ReadAt> = Arc::new(blob);
    let spacing = 1 + (u64::from(param) << 8);
    let Ok(index) = build_index(blob.as_ref(), &digest, None, spacing, false, None) else {
        return;
    };
    let config = CacheConfig {
        chunk_size: MIN_CHUNK_SIZE,
        cache_bytes: 32 << 10,
        max_decoders: usize::from(param % 3),
    };
    let stream: Arc<dyn ReadAt> = match &index.seek {
        SeekIndex::None => blob.clone(),
        SeekIndex::Gzip(g) => Arc::new(GzipReader::with_config(blob.clone(), g.clone(), config).expect("reader")),
        SeekIndex::Zstd(z) => Arc::new(ZstdReader::with_config(blob.clone(), z.clone(), config).expect("reader")),
    };
    for i in 0..index.entries.len() {
        let meta = index
            .entries
            .meta(i)
            .unwrap_or_else(|| panic!("member {i} does not decode"));
        if meta.kind != EntryKind::File {
            continue;
        }
        let file = FileData::new(stream.clone(), &meta);
        assert_eq!(file.len(), meta.size);
        let n = meta.size.min(MAX_READ) as usize;
        // Read from an offset chosen by the input, so the ends of sparse files are read too.
        let start = if meta.size > MAX_READ { meta.size - n as u64 } else { 0 };
        let start = if param & 1 == 0 { 0 } else { start };
        let mut got = vec![0u8; n];
        read_exact_at(&file, &mut got, start)
            .unwrap_or_else(|e| panic!("member {i} ({} bytes at {start}): {e}", meta.size));
        match meta.sparse {
            None => {
                let mut want = vec![0u8; n];
                read_exact_at(stream.as_ref(), &mut want, meta.data_offset + start).expect("stream read");
                assert!(got == want, "member {i}: file data differs from the stream");
            }
            Some(runs) => {
                let end = start + n as u64;
                let mut at = start;
                for r in runs.iter().filter(|r| r.offset + r.len > start && r.offset < end) {
                    let hole = at..r.offset.max(at).min(end);
                    assert!(got[(hole.start - start) as usize..(hole.end - start) as usize]
                        .iter()
                        .all(|&b| b == 0));
                    at = (r.offset + r.len).min(end);
                }
                assert!(
                    got[(at - start) as usize..].iter().all(|&b| b == 0),
                    "member {i}: hole not zero"
                );
            }
        }
    }
});
