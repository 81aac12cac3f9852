#!/usr/bin/env bash
# The whole test suite: system packages, then the checks that need no root (scripts/check.sh:
# fmt, clippy, module graph, unit tests, fuzz build, the root-free tier as an unprivileged user),
# then the integration tests that really mount with FUSE (need root and /dev/fuse). CI runs
# exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/check.sh
cargo test --release --test it -- --test-threads=2
