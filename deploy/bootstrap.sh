#!/usr/bin/env bash
# Prepare a fresh machine for Kuaijing: Debian packages, the Python virtualenv, the Kafka jars.
# Idempotent and quiet when there is nothing to do; `make up` and `make test` call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
# The dashboard and console tests render the pages in a real headless browser, Chinese text with a CJK font.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK-* >/dev/null 2>&1 \
  || need_apt+=(fonts-noto-cjk)
# The hot paths' inner loops are C (setup.py: the JT/T 808 and JSON ping decoders, the nearest search's walk, the
# index's updates), compiled against the interpreter's own headers.
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
"$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  || need_apt+=(python3-dev)
# The console's map library comes from npm (services/dispatcher/console/package-lock.json).
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The image test builds with Debian's podman on a base made with debootstrap (no image registry is reachable).
command -v podman >/dev/null 2>&1 || need_apt+=(podman uidmap fuse-overlayfs)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if [ "${1:-}" = "--bench" ]; then
  # The dispatcher benchmark's anchor: PostGIS KNN, from Debian's packages, for the installed PostgreSQL major.
  for bindir in /usr/lib/postgresql/*/bin; do
    major=$(basename "$(dirname "$bindir")")
    [ -f "/usr/share/postgresql/$major/extension/postgis.control" ] || need_apt+=("postgresql-$major-postgis-3")
  done
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 \
    || { echo "bootstrap: apt-get install ${need_apt[*]} failed" >&2; exit 1; }
fi
# The Debian package starts a cluster of its own on 5432; Kuaijing runs its own cluster and does not need it.

stamp=.venv/.kuaijing-deps
# setup.py and the C sources are in the stamp: an editable install compiles the extensions in place, once per change.
want=$(cat pyproject.toml setup.py $(find shared services -name '*.c' | sort) deploy/requirements-dev.lock \
  | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python dependencies into .venv"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  log=$(mktemp)
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -c deploy/requirements-dev.lock -e '.[dev]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "bootstrap: pip install failed" >&2
    exit 1
  fi
  rm -f "$log"
  echo "$want" > "$stamp"
fi

# The console's MapLibre GL JS: installed from the lock file outside the served directory, the built files copied
# into services/dispatcher/console/vendor/ (not in git).
console=services/dispatcher/console
want=$(cat "$console/package.json" "$console/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$console/vendor/.stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing the console's npm packages"
  build=build/console-npm
  rm -rf "$build" "$console/vendor"
  mkdir -p "$build" "$console/vendor"
  cp "$console/package.json" "$console/package-lock.json" "$build/"
  npm ci --prefix "$build" --no-audit --no-fund --loglevel=error >/dev/null \
    || { echo "bootstrap: npm ci failed" >&2; exit 1; }
  cp "$build/node_modules/maplibre-gl/dist/"{maplibre-gl.js,maplibre-gl.css,LICENSE.txt} "$console/vendor/"
  echo "$want" > "$console/vendor/.stamp"
fi

.venv/bin/python -c "from shared.infra.embedded.kafka import ensure_jars; ensure_jars()"
