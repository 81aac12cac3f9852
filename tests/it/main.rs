//! The imgfs integration tests: one test binary (`cargo test --test it`).
//!
//! - `util`: fixtures (built once per run by tests/fixtures/make-images.sh), the `Mount` guard,
//!   commands with timeouts, hashing and tree dumps.
//! - `sources`: every source format mounts and shows docs/layout.md's tree; skopeo and umoci
//!   accept the mount; the same image reads the same from every format; the CLI without FUSE;
//!   real archives from shared/fixtures.
//! - `errors`: broken inputs and bad mount points fail quickly with one clear line.
//! - `rootfs`: merged rootfs and layer trees against `umoci unpack` of an edge-case image.
//! - `layers`: layers indexed once, the index cache, corrupt layers and caches, pre-1.0 layouts.
//! - `fs_semantics`: read-only, mount options, stable inodes, attributes, statfs, mount.fuse3.
//! - `bench_layer`: a realistic ~160 MiB gzip layer of this machine's /usr reads back, every file
//!   and path, exactly like `tar -xzf` of it (cold and warm index).
//!
//! See docs/testing.md.

mod bench_layer;
mod errors;
mod fs_semantics;
mod layers;
mod nfs;
mod rootfs;
mod sources;
mod util;
