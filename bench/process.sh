#!/usr/bin/env bash
# Benchmark of the processing stage: rows per second from UPLOADED to
# COMPLETE for ROWS rows in 4 visitor groups (throttle off), next to DuckDB
# converting the same gzipped CSV files to Parquet in the same run (the
# machines are noisy: only ratios are meaningful).
#
#   bash bench/process.sh [ROWS]        (default 1,000,000 rows; RUNS=3;
#                                        NO_DUCKDB=1 leaves DuckDB out;
#                                        BDIA_BIN=path skips the release build;
#                                        PERF_OUT=path records the processing
#                                        server with `perf record` (options
#                                        from PERF_ARGS, default
#                                        `--call-graph dwarf -p SERVER`): use a
#                                        `profiling` build, and ignore the
#                                        times of such a run;
#                                        KEEP_DATA=1 keeps each run's data
#                                        dir, lake included, and names it)
#
# Per run:
#   bdia:   the files are uploaded to a server with processing off, which is
#           stopped; a server with processing on is started on that data dir
#           and timed from its start until every file is COMPLETE
#           (validation, visitor state, visits, partitioned Parquet,
#           publication, commits); the end is the last `file complete`
#           line of the server's log, to the microsecond.
#   (the files are all valid rows: DuckDB stops at an invalid one)
#   DuckDB: COPY (SELECT * FROM read_csv(FILE, header=true, all_varchar=true))
#           TO OUT (FORMAT parquet), the 4 files one after the other.
# Peak RSS: VmHWM of the processing server; ru_maxrss of the DuckDB process.
# Needs curl and the duckdb Python package (`pip install duckdb`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
RUNS=${RUNS:-3}
GROUPS_N=4
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
python3 -c 'import duckdb' 2>/dev/null || { echo "duckdb is needed: pip install duckdb" >&2; exit 2; }

# BDIA_BIN: a release binary already built (skips the build).
if [ -z "${BDIA_BIN:-}" ]; then
  cargo build --release -q -p bdia-cli
  BDIA_BIN="${CARGO_TARGET_DIR:-target}/release/bdia"
fi
BDIA=$(realpath "$BDIA_BIN")
FILES=()
for g in $(seq 0 $((GROUPS_N - 1))); do
  f="$WORK/process-$ROWS-g$g.csv.gz"
  if [ ! -f "$f" ]; then
    # --group keeps one group's visitors: ROWS / 4 rows each, ROWS in all.
    "$BDIA" generate --rows $((ROWS / GROUPS_N)) --visitors $((ROWS / 20)) --group "$g/$GROUPS_N" \
      --suites acme.prod,acme.dev --seed 11 -o "$f"
  fi
  FILES+=("$f")
done

wait_ready() {
  for _ in $(seq 300); do
    curl -sf "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server did not start" >&2
  exit 1
}

RESULTS="$WORK/process-results.txt"
: >"$RESULTS"
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true' EXIT
for run in $(seq "$RUNS"); do
  DATA=$(mktemp -d "$WORK/process-data.XXXXXX")
  PORT=$((20000 + RANDOM % 20000))
  BASE="http://127.0.0.1:$PORT"
  BDIA_RATE_LIMIT_ENABLED=false BDIA_PROCESSING_ENABLED=false \
    "$BDIA" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$WORK/process-server.log" 2>&1 &
  SERVER=$!
  wait_ready "$BASE"
  CLIENT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$DATA/credentials.json")
  TOKEN=$("$BDIA" admin --data-dir "$DATA" token "$CLIENT")
  H=(-H "Authorization: Bearer $TOKEN" -H "x-api-key: $CLIENT")
  for g in $(seq 0 $((GROUPS_N - 1))); do
    curl -sf -o /dev/null "${H[@]}" -H "x-adobe-vgid: group-$g" -F "file=@${FILES[$g]}" \
      "$BASE/aa/collect/v1/events"
  done
  kill -TERM $SERVER; wait $SERVER || true

  # Processing: from the start of a server with processing on to every file COMPLETE.
  t0=$(date +%s.%N)
  BDIA_RATE_LIMIT_ENABLED=false BDIA_PROCESSING_POLL_MS=20 \
    "$BDIA" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >>"$WORK/process-server.log" 2>&1 &
  SERVER=$!
  PERF=
  if [ -n "${PERF_OUT:-}" ]; then
    perf record -q ${PERF_ARGS:---call-graph dwarf -p $SERVER} -F ${PERF_FREQ:-1999} -o "$PERF_OUT.$run" 2>/dev/null &
    PERF=$!
  fi
  wait_ready "$BASE"
  # A light poll (curl + grep, 5 per second) so the measuring loop takes
  # next to no CPU from the server.
  while true; do
    n=$(curl -sf "${H[@]}" "$BASE/aa/collect/v1/events?status=COMPLETE&limit=100" \
      | { grep -o '"status_code":"COMPLETE"' || true; } | wc -l)
    [ "$n" -ge "$GROUPS_N" ] && break
    sleep 0.2
  done
  # The end: the last file's commit, as the server logged it (to the
  # microsecond; the poll above only sees it to within 0.2 s).
  t1=$(python3 - "$WORK/process-server.log" <<'PY'
import re, sys
from datetime import datetime, timezone
ends = [m.group(1) for m in (re.match(r"(\S+?)Z .*file complete", l) for l in open(sys.argv[1])) if m]
print(max(datetime.strptime(e, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp() for e in ends))
PY
)
  [ -n "$PERF" ] && { kill -INT "$PERF"; wait "$PERF" || true; }
  HWM_KB=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)
  # CPU seconds of the server (user + system), a steadier figure than
  # the wall time on a noisy machine.
  CPU_S=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' /proc/$SERVER/stat)
  TOTAL=$(curl -sf "${H[@]}" "$BASE/aa/collect/v1/events?limit=100" \
    | python3 -c 'import json,sys; print(sum(f["rows"] for f in json.load(sys.stdin)["files"]))')
  LAKE_MB=$(du -sm "$DATA/lake" | cut -f1)
  # The file records (start, reader complete, end), for a closer look.
  curl -sf "${H[@]}" "$BASE/aa/collect/v1/events?limit=100" > "$WORK/process-records.json"
  kill -TERM $SERVER; wait $SERVER || true
  [ -n "${KEEP_DATA:-}" ] && echo "data kept: $DATA" >&2 || rm -rf "$DATA"

  # DuckDB on the same files, in the same run (NO_DUCKDB=1: not run, its
  # columns are 0; for comparing bdia builds with each other).
  OUT=$(mktemp -d "$WORK/process-duckdb.XXXXXX")
  if [ -n "${NO_DUCKDB:-}" ]; then DUCK="0 0"; else
  DUCK=$(python3 - "$OUT" "${FILES[@]}" <<'PY'
import resource, sys, time
import duckdb
out, files = sys.argv[1], sys.argv[2:]
con = duckdb.connect()
t0 = time.perf_counter()
for i, f in enumerate(files):
    con.execute(f"COPY (SELECT * FROM read_csv('{f}', header=true, all_varchar=true)) "
                f"TO '{out}/g{i}.parquet' (FORMAT parquet)")
t1 = time.perf_counter()
print(f"{t1 - t0:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
PY
)
  fi
  rm -rf "$OUT"
  echo "$run $(python3 -c "print($t1 - $t0)") $HWM_KB $TOTAL $LAKE_MB $DUCK $CPU_S" | tee -a "$RESULTS"
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
bt = [float(r[1]) for r in rows]; bk = [int(r[2]) for r in rows]; n = int(rows[0][3])
dt = [float(r[5]) for r in rows]; dk = [int(r[6]) for r in rows]
b, d = statistics.median(bt), statistics.median(dt)
print(f"rows: {n} in 4 groups; lake: {rows[0][4]} MB")
print("| | median time (s) | rows/s | peak RSS (MiB) |")
print("|---|---|---|---|")
print(f"| bdia processing (UPLOADED -> COMPLETE) | {b:.2f} | {n / b:,.0f} | {max(bk) / 1024:.0f} |")
cpu = statistics.median(float(r[7]) for r in rows)
if d > 0:
    print(f"| DuckDB CSV -> Parquet | {d:.2f} | {n / d:,.0f} | {max(dk) / 1024:.0f} |")
print(f"bdia server CPU time (user + system), median: {cpu:.2f} s")
if d > 0:
    print(f"time ratio bdia/DuckDB: {b / d:.2f} (target <= 1.0)")
    print(f"peak RSS ratio bdia/DuckDB: {max(bk) / max(dk):.2f} (target < 0.5)")
PY
