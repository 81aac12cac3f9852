//! The on-disk cache (`imgfs::cache::Cache`) and the decoders of what it holds.
//!
//! Input: byte 0 = mode, the rest depends on it. Modes (byte 0 % 3):
//! - 0, envelope: bytes 1..3 = position, byte 3 = xor mask, byte 4 = truncation flag, the rest =
//!   payload. The target stores the payload with `Cache::store`, checks `Cache::load` and
//!   `Cache::map` (the mapped loader warm mounts use) return it, then flips one byte of the file
//!   (or cuts the file at that position) and checks both refuse it. Invariant: ANY one-byte
//!   change and any truncation is rejected.
//! - 1, layer index (`imgfs::layer::format::decode`): bytes 1..9 = blob length, the rest = the
//!   encoding. Invariant: no panic, no allocation beyond what the input can hold; every accessor
//!   of every member answers without panicking (members are decoded on access: damaged ones give
//!   `None`); a decoded index re-encodes to bytes that decode and re-encode identically.
//! - 2, merged tree (`imgfs::view::persist::decode`): byte 1 =
//!   layer count (0..4), byte 2 = members per layer; the rest = the encoding. Invariant: no
//!   panic; a decoded tree passes `fsck` and every entry reference exists; it round-trips through
//!   `encode`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

use imgfs::view::persist;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => envelope(rest),
        1 => layer_index(rest),
        _ => merged_tree(rest),
    }
});

/// A cache directory for this process, on tmpfs when there is one (stores fsync).
fn cache_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = ["/dev/shm", "/tmp"]
            .into_iter()
            .find(|d| std::path::Path::new(d).is_dir())
            .unwrap_or(".");
        let dir = PathBuf::from(base).join(format!("imgfs-fuzz-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fn envelope(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let pos = u16::from_le_bytes([data[0], data[1]]) as usize;
    let mask = if data[2] == 0 { 1 } else { data[2] };
    let truncate = data[3] & 1 == 1;
    let payload = &data[4..];
    let cache = imgfs::cache::Cache::new(Some(cache_dir().clone()));
    cache.store("fuzz", "k", payload);
    assert_eq!(
        cache.load("fuzz", "k").as_deref(),
        Some(payload),
        "stored payload not loaded back"
    );
    let mapped = cache.map("fuzz", "k").map(|(m, r)| m[r].to_vec());
    assert_eq!(mapped.as_deref(), Some(payload), "map differs");
    let file = cache_dir().join("fuzz-k");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = pos % bytes.len();
    if truncate {
        bytes.truncate(at);
    } else {
        bytes[at] ^= mask;
    }
    std::fs::write(&file, &bytes).unwrap();
    let what = if truncate { "cut" } else { "flip" };
    assert!(
        cache.load("fuzz", "k").is_none(),
        "{what} at byte {at} of {} accepted",
        bytes.len()
    );
    let n = bytes.len();
    assert!(
        cache.map("fuzz", "k").is_none(),
        "map: {what} at byte {at} of {n} accepted"
    );
}

fn layer_index(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let blob_len = u64::from_le_bytes(data[..8].try_into().unwrap());
    let Ok(index) = imgfs::layer::format::decode(&data[8..], blob_len) else {
        return;
    };
    let e = &index.entries;
    for i in 0..e.len() + 1 {
        let _ = (e.entry(i), e.meta(i), e.path(i), e.kind(i), e.link(i));
    }
    let once = imgfs::layer::format::encode(&index, blob_len);
    let back = imgfs::layer::format::decode(&once, blob_len).expect("re-encoded index decodes");
    assert!(
        back.entries == index.entries && back.diff_id == index.diff_id,
        "round trip changed the index"
    );
    assert_eq!(
        imgfs::layer::format::encode(&back, blob_len),
        once,
        "encoding is not stable"
    );
}

fn merged_tree(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let (layers, members) = (data[0] as usize % 5, data[1] as usize % 8);
    let mut all = Vec::new();
    for _ in 0..layers {
        let mut e = imgfs::layer::entries::Entries::new();
        for m in 0..members {
            let name = format!("m{m}");
            e.push(&file_entry(name.as_bytes())).unwrap();
        }
        all.push(e);
    }
    let refs: Vec<&imgfs::layer::entries::Entries> = all.iter().collect();
    let Ok(tree) = persist::decode(&data[2..], &refs) else {
        return;
    };
    tree.fsck().expect("decode returned a tree that fails fsck");
    for node in tree.inodes() {
        if let Some(r) = node.entry() {
            assert!(
                (r.layer as usize) < layers && (r.entry as usize) < members,
                "dangling {r:?}"
            );
        }
    }
    // Varints may be over-long in the input, so compare trees, not bytes.
    let back = persist::decode(&persist::encode(&tree), &refs).expect("re-encoded tree decodes");
    assert_eq!(back, tree, "round trip changed the tree");
}

fn file_entry(path: &[u8]) -> imgfs::tarindex::Entry {
    imgfs::tarindex::Entry {
        path: path.to_vec(),
        kind: imgfs::tarindex::EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
        size: 0,
        data_offset: 0,
        stored_size: 0,
        link: None,
        dev_major: 0,
        dev_minor: 0,
        xattrs: vec![],
        sparse: None,
        header_offset: 0,
    }
}
