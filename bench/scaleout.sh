#!/usr/bin/env bash
# Cost of shared infrastructure on one node: ROWS rows in FILES files over
# 8 visitor groups processed by one node on the embedded default (SQLite +
# local disk) and on PostgreSQL + an S3 server (moto), alternating in the
# same run (the machines are noisy: only ratios are meaningful); and the
# coordination cost per file: PostgreSQL statements (counted from the
# server's statement log) and the metadata commit's milliseconds.
#
#   bash bench/scaleout.sh [ROWS] [FILES]   (default 1,000,000 rows in 100
#                                            files; RUNS=3; BDIA_BIN=path
#                                            skips the release build)
#
# Per run and mode: the files are uploaded to a server with processing off,
# which is stopped; a server with processing on is started and timed until
# every file is COMPLETE (default poll interval: an idle scheduler asks for
# work once a second). Needs root (the PostgreSQL cluster runs as the
# postgres user), curl, PostgreSQL and moto (./test.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
FILES_N=${2:-100}
RUNS=${RUNS:-3}
GROUPS_N=8
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
WORK=$(realpath "$WORK")

if [ -z "${BDIA_BIN:-}" ]; then
  cargo build --release -q -p bdia-cli
  BDIA_BIN="${CARGO_TARGET_DIR:-target}/release/bdia"
fi
BDIA=$(realpath "$BDIA_BIN")

# The corpus: one export, prepared into FILES files over 8 groups.
CORPUS="$WORK/scaleout-$ROWS-$FILES_N"
if [ ! -f "$CORPUS/prepared/manifest.json" ]; then
  rm -rf "$CORPUS"; mkdir -p "$CORPUS"
  "$BDIA" generate --plain --rows "$ROWS" --visitors $((ROWS / 20)) \
    --suites acme.prod,acme.dev --seed 11 -o "$CORPUS/export.csv"
  "$BDIA" prepare "$CORPUS/export.csv" --groups "$GROUPS_N" \
    --max-rows $((ROWS / FILES_N)) --out "$CORPUS/prepared" --json >/dev/null
  rm "$CORPUS/export.csv"
fi
# (group, path) in upload order.
python3 - "$CORPUS/prepared" >"$CORPUS/order.txt" <<'PY'
import json, sys, os
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
for g in m["groups"]:
    for f in g["files"]:
        print(g["id"], os.path.join(d, f["path"]))
PY
NFILES=$(wc -l <"$CORPUS/order.txt")

eval "$(PG_EXTRA_OPTS='-c log_statement=all' scripts/test-services.sh start)"
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; scripts/test-services.sh stop "$SVC_DIR"' EXIT

wait_ready() {
  for _ in $(seq 600); do
    curl -sf "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server did not start" >&2
  exit 1
}

statements() { grep -cE 'LOG:  (statement|execute)' "$SVC_DIR/pg/log" || true; }
transactions() { grep -cE 'LOG:  statement: (COMMIT|ROLLBACK)' "$SVC_DIR/pg/log" || true; }

RESULTS="$WORK/scaleout-results.txt"
: >"$RESULTS"
for run in $(seq "$RUNS"); do
  for mode in embedded shared; do
    DATA=$(mktemp -d "$WORK/scaleout-data.XXXXXX")
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    BASE="http://127.0.0.1:$PORT"
    ENV=(BDIA_RATE_LIMIT_ENABLED=false BDIA_LAKE_COMPACTION_ENABLED=false BDIA_NODE_ID=bench)
    if [ "$mode" = shared ]; then
      DB="bench_${run}_$RANDOM"
      psql "$BDIA_TEST_POSTGRES_URL" -q -c "CREATE DATABASE $DB"
      ENV+=(BDIA_METADATA_URL="${BDIA_TEST_POSTGRES_URL%/*}/$DB"
            BDIA_STORAGE_URL="s3://$BDIA_TEST_S3_BUCKET/bench-$run-$RANDOM")
    fi
    env "${ENV[@]}" BDIA_PROCESSING_ENABLED=false \
      "$BDIA" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$WORK/scaleout-server.log" 2>&1 &
    SERVER=$!
    wait_ready "$BASE"
    CLIENT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$DATA/credentials.json")
    TOKEN=$(env "${ENV[@]}" "$BDIA" admin --data-dir "$DATA" token "$CLIENT")
    H=(-H "Authorization: Bearer $TOKEN" -H "x-api-key: $CLIENT")
    while read -r group path; do
      curl -sf -o /dev/null "${H[@]}" -H "x-adobe-vgid: $group" -F "file=@$path" \
        "$BASE/aa/collect/v1/events"
    done <"$CORPUS/order.txt"
    kill -TERM $SERVER; wait $SERVER || true

    s0=$(statements); x0=$(transactions)
    t0=$(date +%s.%N)
    env "${ENV[@]}" \
      "$BDIA" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$WORK/scaleout-$mode.log" 2>&1 &
    SERVER=$!
    wait_ready "$BASE"
    while true; do
      n=$(curl -sf "${H[@]}" "$BASE/aa/collect/v1/events?status=COMPLETE&limit=1000" \
        | { grep -o '"status_code":"COMPLETE"' || true; } | wc -l)
      [ "$n" -ge "$NFILES" ] && break
      sleep 0.2
    done
    t1=$(date +%s.%N)
    s1=$(statements); x1=$(transactions)
    kill -TERM $SERVER; wait $SERVER || true
    # Per file, from the `file complete` lines: median ms of the stages
    # (encode: read, check, enrich, Parquet; publish: parts to the store and
    # the Delta commit; commit: COMPLETE and the visitor state).
    stage() { grep -o "$1_ms=[0-9]*" "$WORK/scaleout-$mode.log" | cut -d= -f2 \
      | python3 -c 'import statistics,sys; v=[int(l) for l in sys.stdin]; print(statistics.median(v) if v else 0)'; }
    COMMIT_MS=$(stage commit); ENCODE_MS=$(stage encode); PUBLISH_MS=$(stage publish)
    # Statements during processing (the readiness and status polls are HTTP only;
    # the embedded mode runs no PostgreSQL statements).
    STMTS=$((s1 - s0)); TXNS=$((x1 - x0))
    [ "$mode" = embedded ] && STMTS=0 && TXNS=0
    echo "$run $mode $(python3 -c "print($t1 - $t0)") $STMTS $COMMIT_MS $TXNS $ENCODE_MS $PUBLISH_MS" | tee -a "$RESULTS"
    rm -rf "$DATA"
  done
done

python3 - "$RESULTS" "$ROWS" "$NFILES" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
n, files = int(sys.argv[2]), int(sys.argv[3])
t = {m: statistics.median(float(r[2]) for r in rows if r[1] == m) for m in ("embedded", "shared")}
st = statistics.median(int(r[3]) for r in rows if r[1] == "shared")
tx = statistics.median(int(r[5]) for r in rows if r[1] == "shared")
med = lambda i, m: statistics.median(float(r[i]) for r in rows if r[1] == m)
cm = {m: med(4, m) for m in ("embedded", "shared")}
en = {m: med(6, m) for m in ("embedded", "shared")}
pu = {m: med(7, m) for m in ("embedded", "shared")}
print(f"{n} rows in {files} files, 8 visitor groups, one node, median of {len(rows)//2} runs")
print("| | median time (s) | rows/s | wall per file (ms) | encode / publish / commit per file (ms, medians) |")
print("|---|---|---|---|---|")
for m, label in (("embedded", "embedded (SQLite + local disk)"), ("shared", "PostgreSQL + S3 (moto)")):
    print(f"| {label} | {t[m]:.2f} | {n / t[m]:,.0f} | {1000 * t[m] / files:.0f} | {en[m]:.0f} / {pu[m]:.0f} / {cm[m]:.0f} |")
print(f"time ratio shared/embedded: {t['shared'] / t['embedded']:.2f}")
print(f"PostgreSQL round trips per file: {st / files:.1f} statements in {tx / files:.1f} transactions "
      f"({st} statements for {files} files: lease claims, renewals, heartbeats and idle polls included)")
PY
