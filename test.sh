#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh Debian machine:
#
#   ./test.sh            (extra arguments go to `cargo test`, e.g. -p bdia-format)
#
# It installs what the tests need and is missing, then runs
# `cargo test --workspace`. What it installs (Debian packages, with apt-get;
# through sudo when not root):
#   - chromium, chromium-driver   the console's browser test drives a real
#                                 headless Chromium over WebDriver
#   - postgresql                  the metadata conformance suite and the
#                                 multi-node tests run on a real PostgreSQL
#   - nodejs, npm                 the single-hit API is tested with Adobe's
#                                 public Node.js client, adobe-analytics-di
# and, with npm, adobe-analytics-di (pinned below) into target/npm-di
# (BDIA_TEST_DI_CLIENT); with pip (PyPI), when python3 cannot import it:
#   - duckdb (pinned below)       an independent engine reads the hit lake
#   - deltalake, pyarrow (pinned below)  Python delta-rs reads the lake's Delta tables
#   - schemathesis (pinned below) fuzzes the API against its /openapi.json
#   - moto[s3] (pinned below)     an S3-compatible server for the object-store tests
# Then it starts a throwaway PostgreSQL cluster and an S3 server on loopback
# ports (scripts/test-services.sh) for the length of the run.
# Everything else the tests use is built by cargo or started by the tests
# themselves (servers on loopback ports, temp data dirs).
set -euo pipefail
cd "$(dirname "$0")"

need_pkgs=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_pkgs+=(chromium)
command -v chromedriver >/dev/null || need_pkgs+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v node >/dev/null || need_pkgs+=(nodejs)
command -v npm >/dev/null || need_pkgs+=(npm)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "== installing ${need_pkgs[*]} (Debian packages)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install ${need_pkgs[*]}" >&2; exit 2; }
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

DUCKDB_VERSION=2.0.1
if command -v python3 >/dev/null && ! python3 -c 'import duckdb' 2>/dev/null; then
  echo "== installing duckdb==$DUCKDB_VERSION (PyPI)"
  python3 -m pip install -q "duckdb==$DUCKDB_VERSION" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "duckdb==$DUCKDB_VERSION"
fi

DELTALAKE_VERSION=1.6.6
PYARROW_VERSION=26.0.1
if command -v python3 >/dev/null && ! python3 -c 'import deltalake, pyarrow' 2>/dev/null; then
  echo "== installing deltalake==$DELTALAKE_VERSION pyarrow==$PYARROW_VERSION (PyPI)"
  python3 -m pip install -q "deltalake==$DELTALAKE_VERSION" "pyarrow==$PYARROW_VERSION" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "deltalake==$DELTALAKE_VERSION" "pyarrow==$PYARROW_VERSION"
fi

SCHEMATHESIS_VERSION=4.32.5
if command -v python3 >/dev/null \
   && ! python3 -m schemathesis.cli --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "== installing schemathesis==$SCHEMATHESIS_VERSION (PyPI)"
  python3 -m pip install -q "schemathesis==$SCHEMATHESIS_VERSION" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "schemathesis==$SCHEMATHESIS_VERSION"
fi

MOTO_VERSION=5.2.1
if ! python3 -c "import moto, flask, flask_cors; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
  echo "== installing moto[s3]==$MOTO_VERSION flask flask-cors (PyPI)"
  python3 -m pip install -q "moto[s3]==$MOTO_VERSION" flask flask-cors 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "moto[s3]==$MOTO_VERSION" flask flask-cors
fi

DI_CLIENT_VERSION=1.3.6
DI_DIR="$PWD/target/npm-di"
if [ ! -f "$DI_DIR/node_modules/adobe-analytics-di/package.json" ] \
   || ! grep -q "\"version\": \"$DI_CLIENT_VERSION\"" "$DI_DIR/node_modules/adobe-analytics-di/package.json"; then
  echo "== installing adobe-analytics-di@$DI_CLIENT_VERSION (npm)"
  mkdir -p "$DI_DIR"
  npm install --silent --no-audit --no-fund --prefix "$DI_DIR" "adobe-analytics-di@$DI_CLIENT_VERSION"
fi
export BDIA_TEST_DI_CLIENT="$DI_DIR/node_modules"

echo "== starting PostgreSQL and an S3 server (scripts/test-services.sh)"
eval "$(scripts/test-services.sh start)"
trap 'scripts/test-services.sh stop "$SVC_DIR"' EXIT

echo "== cargo test --workspace $*"
cargo test --workspace "$@"
