#!/usr/bin/env bash
# The whole test suite: system packages, unit tests, and the integration tests that really mount
# with FUSE (needs root and /dev/fuse). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --release -- --test-threads=2
