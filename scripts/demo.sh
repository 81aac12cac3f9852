#!/usr/bin/env bash
# Mount a small example image and show it: installs what is needed, builds imgfs, makes an OCI
# image with umoci (busybox plus a few files), mounts it, lists and reads it, unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet
imgfs=$PWD/target/release/imgfs
work=$(mktemp -d /tmp/imgfs-demo.XXXXXX)
mnt=$work/mnt
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then "$imgfs" umount "$mnt" || fusermount3 -u -z "$mnt"; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building an example image with umoci in $work/oci"
umoci init --layout "$work/oci"
umoci new --image "$work/oci:base" >/dev/null
umoci unpack --image "$work/oci:base" "$work/bundle" >/dev/null
root=$work/bundle/rootfs
mkdir -p "$root/bin" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
echo "hello from imgfs" > "$root/etc/motd"
umoci repack --image "$work/oci:demo" "$work/bundle" >/dev/null
# A second layer: unpack the first again, change it, repack (deleting a file makes a whiteout).
rm -rf "$work/bundle"
umoci unpack --image "$work/oci:demo" "$work/bundle" >/dev/null
echo "second layer" > "$root/etc/layer2"
rm "$root/etc/motd"
umoci repack --image "$work/oci:demo" "$work/bundle" >/dev/null
skopeo copy --quiet "oci:$work/oci:demo" "docker-archive:$work/demo.tar:imgfs/demo:latest"

echo "== imgfs mount $work/demo.tar (a docker-archive) $mnt"
mkdir "$mnt"
"$imgfs" mount "$work/demo.tar" "$mnt"
( cd "$mnt" && ls -l . images images/imgfs/demo:latest/ )
echo "== merged rootfs (etc/motd was deleted in layer 2: a whiteout)"
ls -l "$mnt"/images/imgfs/demo:latest/rootfs/ "$mnt"/images/imgfs/demo:latest/rootfs/etc/
cat "$mnt"/images/imgfs/demo:latest/rootfs/etc/layer2
echo "== each layer as stored (layer 1 holds the whiteout .wh.motd)"
ls -la "$mnt"/images/imgfs/demo:latest/layers/*/etc/
echo "== blobs verify against their names"
( cd "$mnt/blobs/sha256" && for b in *; do echo "$b  $b"; done | sha256sum -c --quiet ) && echo "all blobs ok"
"$imgfs" umount "$mnt"
echo "== unmounted"
