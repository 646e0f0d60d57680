#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3.11 without any image registry: debootstrap fetches the
# packages from the Debian mirror apt already uses, and `docker import` turns the tree into an image.
# Used where the official python:3.11-slim cannot be pulled (offline machines); the Dockerfiles take it
# through their BASE_IMAGE build argument.  Usage: docker/local-base.sh [TAG]   (needs root and debootstrap)
set -euo pipefail
tag="${1:-vocalis-base:bookworm}"
if docker image inspect "$tag" > /dev/null 2>&1; then
  echo "local base image $tag already present"
  exit 0
fi
# the mirror apt uses (deb822 sources first, then the one-line format), else Debian's default
mirror="$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')"
[ -n "$mirror" ] || mirror="$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')"
mirror="${mirror:-http://deb.debian.org/debian}"
root="$(mktemp -d /tmp/vocalis-base.XXXXXX)"
cleanup() {
  # debootstrap mounts /proc and /sys inside the tree; never delete through a mount that is still there
  for m in proc sys dev/pts; do mountpoint -q "$root/$m" 2> /dev/null && umount -l "$root/$m"; done
  rm -rf --one-file-system "$root" "$root.log"
}
trap cleanup EXIT
echo "debootstrap bookworm from $mirror into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" > "$root.log" 2>&1 \
  || { tail -n 20 "$root.log"; exit 1; }
# keep the image small: no apt lists, caches, docs or man pages
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" --exclude=./proc/* --exclude=./sys/* -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$tag" > /dev/null
echo "built local base image $tag"
