#!/usr/bin/env bash
# Benchmark of `bdia prepare` on an unsorted input against `sort` + `gzip` of
# the same input, in the same run (only the ratio is meaningful).
#
#   bash bench/prepare.sh [ROWS]      (default 5,000,000 rows)
#
# Needs hyperfine and GNU time (`apt-get install hyperfine time`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-5000000}
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
IN="$WORK/unsorted-$ROWS.csv"
if [ ! -f "$IN" ]; then
  # Four time-ordered exports over the same period, concatenated: the result
  # is out of time order and mixes visitors, as an unsorted export would.
  PART=$((ROWS / 4))
  for s in 1 2 3 4; do
    "$BDIA" generate --plain --rows "$PART" --visitors 200000 --seed "$s" \
      --suites acme.prod,acme.dev --invalid-rate 0.005 -o "$WORK/part-$s.csv"
  done
  { cat "$WORK/part-1.csv"; for s in 2 3 4; do tail -n +2 "$WORK/part-$s.csv"; done; } > "$IN"
  rm -f "$WORK"/part-*.csv
fi
IN_BYTES=$(stat -c %s "$IN")
OUT="$WORK/prepared"

hyperfine --runs "${RUNS:-2}" --export-json "$WORK/prepare.json" \
  --prepare "rm -rf $OUT $WORK/sorted.csv.gz" \
  -n "sort + gzip" "LC_ALL=C sort -t, -k1,1 -S 256M $IN | gzip -6 > $WORK/sorted.csv.gz" \
  -n "bdia prepare" "$BDIA prepare $IN --groups 8 --out $OUT" >/dev/null

rm -rf "$OUT"
RSS_KB=$( { /usr/bin/time -v "$BDIA" prepare "$IN" --groups 8 --out "$OUT" >/dev/null; } 2>&1 | awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}')
rm -f "$WORK/sorted.csv.gz"
SORT_RSS_KB=$( { /usr/bin/time -v sh -c "LC_ALL=C sort -t, -k1,1 -S 256M $IN | gzip -6 > $WORK/sorted.csv.gz"; } 2>&1 | awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}')
FILES=$(find "$OUT" -name '*.csv.gz' | wc -l)

python3 - "$WORK/prepare.json" "$ROWS" "$IN_BYTES" "$RSS_KB" "$SORT_RSS_KB" "$FILES" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
rows, in_bytes, rss_kb, sort_rss_kb, files = map(int, sys.argv[2:7])
s, b = res["sort + gzip"], res["bdia prepare"]
print(f"input: {rows} rows, {in_bytes/1e6:.0f} MB of unsorted CSV; bdia wrote {files} files in 8 groups")
print("| command | mean (s) | ± σ | rows/s | peak RSS |")
print("|---|---|---|---|---|")
print(f"| `sort + gzip` | {s['mean']:.1f} | {s['stddev']:.1f} | {rows/s['mean']:,.0f} | {sort_rss_kb/1024:.0f} MiB (sort's largest process) |")
print(f"| `bdia prepare` | {b['mean']:.1f} | {b['stddev']:.1f} | {rows/b['mean']:,.0f} | {rss_kb/1024:.0f} MiB |")
print(f"\nratio bdia prepare / (sort + gzip), wall time: {b['mean']/s['mean']:.2f}")
PY
