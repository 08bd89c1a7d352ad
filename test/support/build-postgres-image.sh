#!/usr/bin/env bash
# Builds the test image of PostgreSQL from Debian's packages alone (no image registry needed):
# debootstrap a minimal Debian root with the server installed, `docker import` it as a base, then
# `docker build` postgres-image/ on it, whose entrypoint behaves as the official postgres image
# does for Testcontainers. The root is cached as a tarball, so a rebuild only redoes the last part.
#
#   test/support/build-postgres-image.sh                 # runbooks-postgres:15 (bookworm)
#   test/support/build-postgres-image.sh --pg 17         # runbooks-postgres:17 (trixie): a server
#                                                        # newer than bookworm's client tools
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), RUNBOOKS_IMAGE_CACHE (default
# ~/.cache/runbooks-postgres), --rebuild ignores the cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

pg=15
rebuild=0
while [ $# -gt 0 ]; do
  case "$1" in
    --pg) pg="$2"; shift 2 ;;
    --rebuild) rebuild=1; shift ;;
    *) echo "usage: $0 [--pg 15|17] [--rebuild]" >&2; exit 2 ;;
  esac
done
case "$pg" in
  15) suite=bookworm ;;
  17) suite=trixie ;;
  *) echo "PostgreSQL $pg: no Debian release ships it (15: bookworm, 17: trixie)" >&2; exit 2 ;;
esac
tag="runbooks-postgres:$pg"
base="runbooks-postgres-base:$suite-pg$pg"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${RUNBOOKS_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbooks-postgres}"
rootfs="$cache/$suite-minbase-postgresql-$pg.tar"
start=$SECONDS

command -v docker >/dev/null || { echo "docker is not installed (Debian: apt-get install docker.io)" >&2; exit 1; }
docker version >/dev/null 2>&1 || { echo "No Docker engine answers (is dockerd running?)" >&2; exit 1; }

if [ "$rebuild" = 1 ] || [ ! -s "$rootfs" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  mkdir -p "$cache"
  root="$(mktemp -d "$cache/root.XXXXXX")"
  chmod 755 "$root" # it becomes the image's /
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap --variant=minbase $suite (then postgresql-$pg) into $root"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # No cluster from the package (the entrypoint makes its own) and no services started in the chroot.
  mkdir -p "$root/etc/postgresql-common"
  echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-$pg >/dev/null && apt-get clean" ||
    { echo "installing postgresql-$pg in the $suite root failed" >&2; exit 1; }
  rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d"
  tar -C "$root" -cf "$rootfs.tmp" . && mv "$rootfs.tmp" "$rootfs"
  rm -rf "$root"
  trap - EXIT
  echo "root cached in $rootfs ($(du -h "$rootfs" | cut -f1)) after $((SECONDS - start)) s"
else
  echo "using the cached root $rootfs"
fi

# Import the root again only when the cached tarball changed since the base image was made.
stamp="$(stat -c %Y "$rootfs")"
if [ "$(docker image inspect -f '{{index .Config.Labels "rootfs.mtime"}}' "$base" 2>/dev/null)" != "$stamp" ]; then
  docker import --change "LABEL rootfs.mtime=$stamp" "$rootfs" "$base" >/dev/null
  echo "imported $base"
fi

docker build -q --build-arg "BASE=$base" --build-arg "PG_MAJOR=$pg" -t "$tag" "$here/postgres-image" >/dev/null
echo "built $tag ($(docker run --rm --entrypoint postgres "$tag" --version)) in $((SECONDS - start)) s"
