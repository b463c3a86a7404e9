#!/usr/bin/env bash
# Build the Kuaijing image with Debian's podman and no image registry: a Debian bookworm base made here with
# debootstrap (once; reused while it exists), the locked dependencies and the project as wheels built on the host
# (pip inside a build cannot reach the package index), then `podman build --isolation chroot` in Docker format (the
# OCI format has no HEALTHCHECK).
#   deploy/build-image.sh [--check] [--tag NAME]
# builds the shipped image as NAME (default kuaijing:0.1.0); --check then builds the check stage on it as NAME-check
# (the unit tests run inside, against what the image installed), from the same wheels, so podman reuses the layers.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
tag=kuaijing:0.1.0
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=true; shift ;;
    --tag) tag=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
BASE=${BASE:-localhost/kuaijing-base:bookworm}
PYTHON=.venv/bin/python

if [ "$BASE" = "localhost/kuaijing-base:bookworm" ] && ! podman image exists "$BASE"; then
  echo "build-image: making the Debian bookworm base with debootstrap"
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null
fi

echo "build-image: wheels of deploy/requirements.lock and of the project"
rm -rf build/wheels build/wheels-dev
mkdir -p build/wheels build/wheels-dev
"$PYTHON" -m pip wheel -q --no-deps -r deploy/requirements.lock -w build/wheels
"$PYTHON" -m pip wheel -q --no-deps . -w build/wheels
cp deploy/requirements.lock build/wheels/
if [ "$check" = true ]; then
  "$PYTHON" -m pip wheel -q --no-deps -r deploy/requirements-dev.lock -w build/wheels-dev
  cp deploy/requirements-dev.lock build/wheels-dev/
fi

build() {
  echo "build-image: podman build --target $1 -t $2"
  podman build --isolation chroot --format docker --build-arg "BASE=$BASE" --target "$1" -f deploy/Dockerfile -t "$2" .
}
build runtime "$tag"
if [ "$check" = true ]; then
  build check "$tag-check"
fi
