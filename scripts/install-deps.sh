#!/usr/bin/env bash
# Install every Debian 12 package the imgfs tests and benchmarks need.
# Idempotent: when every binary is already there, apt is not touched at all.
# Quiet; exits non-zero (with apt's messages) on failure.
set -euo pipefail

# package -> one binary (absolute path or name on PATH) proving it is installed
PKGS=(
  "fuse3:fusermount3"
  "umoci:umoci"
  "skopeo:skopeo"
  "jq:jq"
  "attr:getfattr"
  "libcap2-bin:setcap"
  "zstd:zstd"
  "pigz:pigz"
  "curl:curl"
  "openssl:openssl"
  "docker-registry:docker-registry"
  "apache2-utils:htpasswd"
  "docker.io:/usr/sbin/dockerd"
  "containerd:/usr/bin/containerd"
  "oci-image-tool:oci-image-tool"
  "busybox-static:/bin/busybox"
  "nfs-ganesha:ganesha.nfsd"
  "nfs-ganesha-vfs:/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so"
  "libnfs-utils:nfs-ls"
  "libnfs-dev:/usr/include/nfsc/libnfs.h"
  "gcc:cc"
  "python3-venv:dpkg"
  "archivemount:archivemount"
  "time:/usr/bin/time"
  "libarchive-tools:bsdtar"
  "xz-utils:xz"
  "bzip2:bzip2"
  "man-db:man"
  "zsh:zsh"
  "fish:fish"
  "podman:podman"
  "runc:runc"
)

present() {
  case "$1" in
    dpkg) return 1 ;;  # no binary of its own: dpkg decides
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for entry in "${PKGS[@]}"; do
  pkg=${entry%%:*}
  bin=${entry#*:}
  if ! present "$bin"; then
    # the binary path may differ between architectures/versions: ask dpkg too
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all tools present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}) and not root: run as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps: apt-get update failed" >&2
  exit 1
fi
# Install the whole list (not only the missing ones): apt skips what is there,
# and this pulls in anything a partial earlier install left out.
all=()
for entry in "${PKGS[@]}"; do all+=("${entry%%:*}"); done
if ! apt-get install -y -qq "${all[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps: apt-get install failed" >&2
  exit 1
fi

# check again: a package that installed but gave no binary is a failure too
fail=0
for entry in "${PKGS[@]}"; do
  pkg=${entry%%:*}
  bin=${entry#*:}
  if ! present "$bin" && ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    echo "install-deps: $pkg still missing after install" >&2
    fail=1
  fi
done
[ $fail -eq 0 ] || exit 1
# cargo-deb builds the Debian package (scripts/build-deb.sh, tests/it/cli.rs) from crates.io.
if ! command -v cargo-deb >/dev/null 2>&1 && command -v cargo >/dev/null 2>&1; then
  cargo install cargo-deb --locked >"$log" 2>&1 || { echo "install-deps: cargo install cargo-deb failed" >&2; exit 1; }
fi
echo "install-deps: done"
