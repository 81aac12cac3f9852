#!/bin/bash
# Builds the Debian package with cargo-deb: target/debian/imgfs_<version>_<arch>.deb.
# Installs cargo-deb from crates.io when it is missing. The man page and shell completions are
# generated from the clap definitions by the binary just built (imgfs man, imgfs completions).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
[ -n "${IMGFS_DEB_NO_BUILD:-}" ] || cargo build --release   # the test suite packages the binary it tests
mkdir -p target/assets
target/release/imgfs man > target/assets/imgfs.1
target/release/imgfs completions bash > target/assets/imgfs.bash
target/release/imgfs completions zsh > target/assets/_imgfs
target/release/imgfs completions fish > target/assets/imgfs.fish
cargo deb --no-build --no-strip "$@"
