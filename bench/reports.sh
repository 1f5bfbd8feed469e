#!/usr/bin/env bash
# Report latency: bdia's report engine (DataFusion over the committed
# Parquet parts) next to DuckDB running the equivalent SQL on the same
# files, in the same run (compare the ratio, not the absolute times).
#
#   bash bench/reports.sh [HITS] [ITERATIONS]   (default 10,000,000 hits, 5 runs)
#
# Needs DuckDB's Python package (`pip install duckdb`). The lake is written
# once by bdia's own writer into $BENCH_DIR (default target/bench/reports).
set -euo pipefail
cd "$(dirname "$0")/.."
HITS=${1:-10000000}
ITER=${2:-5}
WORK=${BENCH_DIR:-target/bench}/reports-$HITS
python3 -c "import duckdb" 2>/dev/null || { echo "DuckDB is needed: pip install duckdb" >&2; exit 2; }

# REPORT_BENCH_BIN: the report_bench example already built (skips the build).
if [ -z "${REPORT_BENCH_BIN:-}" ]; then
  cargo build --release -q -p bdia-report --example report_bench
  REPORT_BENCH_BIN="${CARGO_TARGET_DIR:-target}/release/examples/report_bench"
fi
BIN=$(realpath "$REPORT_BENCH_BIN")
# A lake cached by a release without companies in the layout is written again.
if [ -d "$WORK/lake" ] && [ ! -d "$WORK/lake/hits/company=bench" ]; then
  rm -rf "$WORK/lake"
fi
if [ ! -d "$WORK/lake/_commits" ]; then
  mkdir -p "$WORK"
  "$BIN" gen "$WORK" "$HITS"
fi
BDIA_JSON=$("$BIN" run "$WORK" "$ITER")
echo "bdia:   $BDIA_JSON"
python3 bench/reports_duckdb.py "$WORK/parts.txt" "$ITER" "$BDIA_JSON"
