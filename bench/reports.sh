#!/usr/bin/env bash
# Report latency: bdia's report engine (DataFusion over the files of the
# company's Delta table snapshot) next to DuckDB running the equivalent SQL
# on the same files, in the same run (compare the ratio, not the absolute
# times), before and after compacting the table.
#
#   bash bench/reports.sh [HITS] [ITERATIONS]   (default 10,000,000 hits, 5 runs)
#   FILES=1000 bash bench/reports.sh            (the hits in 1,000 uploads: many small files)
#
# Needs DuckDB's Python package (`pip install duckdb`). The lake is written
# once by bdia's own writer (one Delta commit per file) into $BENCH_DIR
# (default target/bench), then copied for the compacted run.
set -euo pipefail
cd "$(dirname "$0")/.."
HITS=${1:-10000000}
ITER=${2:-5}
FILES=${FILES:-50}
WORK=${BENCH_DIR:-target/bench}/reports-$HITS-$FILES
python3 -c "import duckdb" 2>/dev/null || { echo "DuckDB is needed: pip install duckdb" >&2; exit 2; }

# REPORT_BENCH_BIN: the report_bench example already built (skips the build).
if [ -z "${REPORT_BENCH_BIN:-}" ]; then
  cargo build --release -q -p bdia-report --example report_bench
  REPORT_BENCH_BIN="${CARGO_TARGET_DIR:-target}/release/examples/report_bench"
fi
BIN=$(realpath "$REPORT_BENCH_BIN")
# A lake cached by a release before Delta tables is written again.
if [ -d "$WORK/lake" ] && [ ! -d "$WORK/lake/hits/company=bench/_delta_log" ]; then
  rm -rf "$WORK/lake"
fi
if [ ! -d "$WORK/lake/hits/company=bench/_delta_log" ]; then
  mkdir -p "$WORK"
  "$BIN" gen "$WORK" "$HITS" "$FILES"
fi
echo "== as written ($FILES files)"
BDIA_JSON=$("$BIN" run "$WORK" "$ITER")
echo "bdia:   $BDIA_JSON"
python3 bench/reports_duckdb.py "$WORK/parts.txt" "$ITER" "$BDIA_JSON"

COMPACTED="$WORK-compacted"
rm -rf "$COMPACTED" && mkdir -p "$COMPACTED" && cp -a "$WORK/lake" "$COMPACTED/lake"
echo "== compacted"
echo "compact: $("$BIN" compact "$COMPACTED")"
BDIA_JSON=$("$BIN" run "$COMPACTED" "$ITER")
echo "bdia:   $BDIA_JSON"
python3 bench/reports_duckdb.py "$COMPACTED/parts.txt" "$ITER" "$BDIA_JSON"
