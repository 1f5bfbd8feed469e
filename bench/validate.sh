#!/usr/bin/env bash
# Benchmark of `bdia validate` against `gzip -dc` on the same generated file,
# in the same run (the machines are noisy: only the ratio is meaningful).
#
#   bash bench/validate.sh [ROWS]      (default 1,000,000 rows)
#
# Needs hyperfine and GNU time (`apt-get install hyperfine time`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
command -v hyperfine >/dev/null || { echo "hyperfine is needed: apt-get install hyperfine" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install time" >&2; exit 2; }

# BDIA_BIN: a release binary already built (skips the build).
if [ -z "${BDIA_BIN:-}" ]; then
  cargo build --release -q -p bdia-cli
  BDIA_BIN="${CARGO_TARGET_DIR:-target}/release/bdia"
fi
BDIA=$(realpath "$BDIA_BIN")
FILE="$WORK/validate-$ROWS.csv.gz"
if [ ! -f "$FILE" ]; then
  "$BDIA" generate --rows "$ROWS" --visitors 50000 --suites acme.prod,acme.dev \
    --invalid-rate 0.01 --seed 7 -o "$FILE"
fi
GZ_BYTES=$(stat -c %s "$FILE")
CSV_BYTES=$(gzip -dc "$FILE" | wc -c)

# `bdia validate` exits 1 here (the file has invalid rows on purpose): -i.
hyperfine --warmup 1 --runs "${RUNS:-7}" -N -i --export-json "$WORK/validate.json" \
  -n "gzip -dc" "gzip -dc $FILE" \
  -n "bdia validate" "$BDIA validate --quiet $FILE" >/dev/null

RSS_KB=$( { /usr/bin/time -v "$BDIA" validate --quiet "$FILE" >/dev/null || true; } 2>&1 | awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}')
GZIP_RSS_KB=$( { /usr/bin/time -v gzip -dc "$FILE" >/dev/null; } 2>&1 | awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}')

python3 - "$WORK/validate.json" "$ROWS" "$CSV_BYTES" "$GZ_BYTES" "$RSS_KB" "$GZIP_RSS_KB" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
rows, csv_bytes, gz_bytes, rss_kb, gzip_rss_kb = map(int, sys.argv[2:7])
g, b = res["gzip -dc"], res["bdia validate"]
print(f"file: {rows} rows, {gz_bytes/1e6:.1f} MB gzip, {csv_bytes/1e6:.1f} MB CSV")
print("| command | mean (s) | ± σ | MB/s of CSV | rows/s | peak RSS |")
print("|---|---|---|---|---|---|")
for name, r, rss in (("gzip -dc", g, gzip_rss_kb), ("bdia validate", b, rss_kb)):
    m = r["mean"]
    print(f"| `{name}` | {m:.3f} | {r['stddev']:.3f} | {csv_bytes/1e6/m:.0f} | {rows/m:,.0f} | {rss/1024:.1f} MiB |")
print(f"\nratio bdia validate / gzip -dc (wall time): {b['mean']/g['mean']:.2f}")
PY
