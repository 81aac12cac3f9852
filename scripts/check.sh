#!/usr/bin/env bash
# The checks that need no root, no /dev/fuse and no container tool: formatting, lints, the module
# graph, the unit tests, the benchmark report's tests, a build of the fuzz targets, and the
# root-free tier (tests/rootfree: every source format made in Rust, opened through the mount's code,
# compared with golden trees).
# scripts/test.sh runs this first; anyone can run it alone.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== check: %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check

step "module graph is acyclic and docs/architecture.md shows it (scripts/module-graph.py)"
python3 scripts/module-graph.py --doc docs/architecture.md >/dev/null

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --release --all-targets --quiet -- -D warnings

step "unit tests"
cargo test --release --lib --quiet

step "benchmark report tests (scripts/test_bench_report.py)"
python3 -m unittest discover -s scripts -p 'test_*.py'

step "fuzz targets build (fuzz/)"
cargo check --release --quiet --manifest-path fuzz/Cargo.toml --bins

step "root-free tier, unprivileged, empty environment"
bin=$(cargo test --release --test rootfree --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "rootfree" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "check: cannot find the rootfree test binary" >&2; exit 1; }
# A copy in a directory anyone can read: the checkout may live where an unprivileged user cannot.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/rootfree"
cp -r tests/rootfree/golden "$work/golden"
chmod -R a+rX "$work"
run=("$work/rootfree" --test-threads=2)
if [ "$(id -u)" -eq 0 ]; then
  # nobody, no groups, no PATH: the tier must not need root or any outside program.
  run=(setpriv --reuid=65534 --regid=65534 --clear-groups -- "${run[@]}")
fi
env -i TMPDIR=/tmp IMGFS_GOLDEN_DIR="$work/golden" "${run[@]}"
