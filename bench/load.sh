#!/usr/bin/env bash
# Load benchmark: 64 concurrent uploaders of mixed sizes (100, 10,000 and
# 100,000 rows; 6:3:1) against one `bdia serve` for several minutes, with
# processing on, over 8 companies (8 uploaders each). Clients retry a
# 429/503/507 after its Retry-After, like `bdia upload`. The baseline, in
# the same run, is one uploader alone: latencies are reported as ratios to
# it. The server's RSS is sampled every second to show it stays flat.
#
#   bash bench/load.sh                 (SECONDS_LOAD=180 UPLOADERS=64)
#   BDIA_BIN=path/to/release/bdia bash bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
UPLOADERS=${UPLOADERS:-64}
SECONDS_LOAD=${SECONDS_LOAD:-180}
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
if [ -z "${BDIA_BIN:-}" ]; then
  cargo build --release -q -p bdia-cli
  BDIA_BIN="${CARGO_TARGET_DIR:-target}/release/bdia"
fi
BDIA=$(realpath "$BDIA_BIN")
FILES="$WORK/load-files"
mkdir -p "$FILES"
"$BDIA" generate --rows 100 --visitors 20 --suites load.prod --seed 1 -o "$FILES/small.csv.gz"
"$BDIA" generate --rows 10000 --visitors 2000 --suites load.prod --seed 2 -o "$FILES/medium.csv.gz"
"$BDIA" generate --rows 100000 --visitors 20000 --suites load.prod --seed 3 -o "$FILES/large.csv.gz"

DATA=$(mktemp -d "$WORK/load-data.XXXXXX")
TENANTS="$WORK/load-tenants.json"
echo "[" >"$TENANTS"
for c in $(seq 0 7); do
  "$BDIA" admin --data-dir "$DATA" company create "load$c" --rate-limit off >/dev/null
  "$BDIA" admin --data-dir "$DATA" client create --company "load$c" --client-id "load$c-etl" >/dev/null
  TOKEN=$("$BDIA" admin --data-dir "$DATA" token "load$c-etl")
  [ "$c" -gt 0 ] && echo "," >>"$TENANTS"
  printf '{"client_id": "load%s-etl", "token": "%s"}' "$c" "$TOKEN" >>"$TENANTS"
done
echo "]" >>"$TENANTS"
PORT=${PORT:-$((20000 + RANDOM % 20000))}
"$BDIA" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$WORK/load-server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 bench/load.py --base "http://127.0.0.1:$PORT" --tenants "$TENANTS" --pid "$SERVER" \
  --files "$FILES" --uploaders "$UPLOADERS" --seconds "$SECONDS_LOAD" | tee "$WORK/load-result.json"
echo "server peak RSS (VmHWM): $(grep VmHWM /proc/$SERVER/status)" >&2
