//! The imgfs integration tests: one test binary (`cargo test --test it`).
//!
//! - `util`: fixtures (built once per run by tests/fixtures/make-images.sh), the `Mount` guard,
//!   commands with timeouts, hashing and tree dumps.
//! - `sources`: every source format mounts and shows docs/layout.md's tree; skopeo and umoci
//!   accept the mount; the same image reads the same from every format; the CLI without FUSE;
//!   real archives from shared/fixtures.
//! - `clients`: every image tool accepts the mount, for every source kind: skopeo, umoci,
//!   `tar | docker load` (dockerd 20.10), `ctr images import`, `oci-image-tool validate` on a
//!   `--layout-only` mount (issue 16).
//! - `errors`: broken inputs and bad mount points fail quickly with one clear line.
//! - `rootfs`: merged rootfs and layer trees against `umoci unpack` of an edge-case image.
//! - `layers`: layers indexed once, the index cache, corrupt layers and caches, pre-1.0 layouts.
//! - `fs_semantics`: read-only, mount options, stable inodes, attributes, statfs, mount.fuse3.
//! - `cli`: the everyday CLI: typo suggestions, `ls -l` like ls(1), `cat` through symlinks
//!   inside the image.
//! - `tar_corpus`: 232 real-world tar archives (shared/fixtures/tar-corpus) as one-layer images,
//!   uncompressed and gzip, cold and warm, against GNU tar, bsdtar and `umoci unpack`.
//! - `bench_layer`: a realistic ~160 MiB gzip layer of this machine's /usr reads back, every file
//!   and path, exactly like `tar -xzf` of it (cold and warm index).
//! - `hostile`: the hostile corpus (tests/fixtures/hostile) mounted for real: safe results or one
//!   clear line, EIO for what cannot be served, nothing written outside, bounded memory; the
//!   security claims of docs/security.md.
//! - `load`: 16 readers for 60 s, readers during the first index build, umount / fusermount3 /
//!   SIGTERM / SIGKILL under load, kill during a cache write, the source changing while mounted,
//!   a full cache disk.
//! - `registry`: `docker://` references against a real registry on 127.0.0.1: media types,
//!   platforms, digests, auth (basic over TLS, tokens, credential files and helpers), laziness
//!   and the cache, and faults (stopped/killed registry, wrong bytes, redirects, 5xx, 404).
//! - `overlay`: `images/<ref>/overlay/<n>/` stacked by the kernel's overlayfs equals `rootfs/`
//!   (root and `userxattr` mounts) on two edge-case images (issue 19).
//! - `podman`: podman runs the edge image from an imgfs mount's `containers-storage/` (OCI layout,
//!   docker-archive, registry) and `podman image inspect` equals a `podman pull` (issue 19).
//! - `published`: `imgfs index push` publishes layer indexes as a referrer artifact, and
//!   `--published-index` mounts on an empty cache read only Range blocks of the layers (the
//!   registry's access log); tampered, corrupt and absent indexes fall back to indexing; a
//!   single-frame zstd layer published with checkpoints is read from the one before a file.
//! - `operations`: the daemon as an operator meets it: umount safety, credentials, logs, status,
//!   healing layers, interrupts, the cache commands (docs/operations.md).
//! - `verified`: a warm cache never serves unverified bytes: layers read from changed copies of
//!   a source (docker-archive, OCI layout, registry; tar, gzip, zstd) fail only the reads that
//!   touch changed chunks, damaged cache files are rebuilt.
//! - `zstd_checkpoints`: `imgfs ls` / `cat --zstd-checkpoints` build and reuse checkpoint indexes
//!   of a single-frame zstd layer (the image `published` also publishes with checkpoints).
//!
//! See docs/testing.md.

// The tests call the kernel directly (open_by_handle_at, O_PATH walks, signals) to check what a
// client of the mount sees; the crate's deny(unsafe_code) is for the code the tests check.
#![allow(unsafe_code)]

mod bench_layer;
mod cache_and_progress;
mod cli;
mod clients;
mod errors;
mod fs_semantics;
mod hostile;
mod layers;
mod load;
mod nfs;
mod operations;
mod overlay;
mod podman;
mod published;
mod registry;
mod rootfs;
mod sources;
mod tar_corpus;
mod util;
mod verified;
mod zstd_checkpoints;
