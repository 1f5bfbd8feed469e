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
# and, with pip (PyPI), when python3 cannot import it:
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

echo "== starting PostgreSQL and an S3 server (scripts/test-services.sh)"
eval "$(scripts/test-services.sh start)"
trap 'scripts/test-services.sh stop "$SVC_DIR"' EXIT

echo "== cargo test --workspace $*"
cargo test --workspace "$@"
