#!/usr/bin/env bash
# Single-hit benchmark: sustained hits per second on one `bdia serve` with
# 64 concurrent keep-alive clients (wrk), p50/p99 latency and the server's
# peak RSS, next to `GET /healthz` on the same server in the same run (the
# baseline: the cost of the HTTP stack alone). Runs alternate
# healthz / single hits, RUNS times each, SECONDS_RUN seconds per run.
# Processing stays on, so the gathered files are processed while hits
# arrive. Afterwards every accepted hit must be in the lake exactly once:
# the accepted count (bdia_single_hits_total{outcome="accepted"}) is
# compared with the report's page views and with the lake's distinct pages
# (each request carries a unique page name).
#
#   bash bench/single_hits.sh                (RUNS=3 SECONDS_RUN=20 CLIENTS=64)
#   BDIA_BIN=path/to/release/bdia bash bench/single_hits.sh
#
# Needs wrk (Debian package; installed when missing) and python3 with
# duckdb (./test.sh installs it) for the distinct-page count.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECONDS_RUN=${SECONDS_RUN:-20}
CLIENTS=${CLIENTS:-64}
THREADS=${THREADS:-2}
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  $SUDO apt-get install -y -q --no-install-recommends wrk >/dev/null
fi
if [ -z "${BDIA_BIN:-}" ]; then
  cargo build --release -q -p bdia-cli
  BDIA_BIN="${CARGO_TARGET_DIR:-target}/release/bdia"
fi
BDIA=$(realpath "$BDIA_BIN")
DATA=$(mktemp -d "$WORK/single-hits-data.XXXXXX")
"$BDIA" admin --data-dir "$DATA" company create bench --rate-limit off >/dev/null
"$BDIA" admin --data-dir "$DATA" client create --company bench --client-id bench-etl >/dev/null
"$BDIA" admin --data-dir "$DATA" report-suite create bench.web --company bench >/dev/null
"$BDIA" admin --data-dir "$DATA" report-suite settings bench.web --accept-single-hits true >/dev/null
TOKEN=$("$BDIA" admin --data-dir "$DATA" token bench-etl)
PORT=${PORT:-$((20000 + RANDOM % 20000))}
METRICS_TOKEN=bench-metrics-token-0123456789
BDIA_SINGLE_HITS_PER_SECOND=100000000 BDIA_SINGLE_HITS_BURST=100000000 \
BDIA_METRICS_TOKEN=$METRICS_TOKEN \
  "$BDIA" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$WORK/single-hits-server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

# Each request a unique page (thread id, counter) and one of 1,000 visitors.
cat >"$WORK/single-hits.lua" <<'LUA'
-- Pages are unique over the whole benchmark: run number (RUN), thread
-- number, then a counter per thread.
local counter = 0
local run = os.getenv("RUN") or "0"
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  local path = string.format(
    "/b/ss/bench.web/2/s%d?vid=v%d&pageName=r%s-t%d-%d&g=https%%3A%%2F%%2Fshop.example%%2Fp%d&v1=campaign%d&events=event1",
    counter, (counter * 7 + tid) % 1000, run, tid, counter, counter % 500, counter % 20)
  return wrk.format("GET", path, { ["User-Agent"] = "Mozilla/5.0 (bench)" })
end
LUA

summary() { # name, wrk output file -> "rps p50 p99 non2xx"
  python3 - "$2" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def ms(label):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % label, t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
print(f"{rps:.0f} {ms('50'):.2f} {ms('99'):.2f} {int(non.group(1)) if non else 0}")
PY
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$RUNS"); do
  wrk -t"$THREADS" -c"$CLIENTS" -d"${SECONDS_RUN}s" --latency "http://127.0.0.1:$PORT/healthz" >"$WORK/wrk-healthz-$run.txt"
  echo "healthz run $run: $(summary healthz "$WORK/wrk-healthz-$run.txt")"
  RUN=$run wrk -t"$THREADS" -c"$CLIENTS" -d"${SECONDS_RUN}s" --latency -s "$WORK/single-hits.lua" "http://127.0.0.1:$PORT/" >"$WORK/wrk-hits-$run.txt"
  echo "single-hit run $run: $(summary hits "$WORK/wrk-hits-$run.txt")"
done
RSS=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)
echo "server peak RSS: $((RSS / 1024)) MiB"

ACCEPTED=$(curl -s -H "Authorization: Bearer $METRICS_TOKEN" "http://127.0.0.1:$PORT/metrics" \
  | awk '/^bdia_single_hits_total\{outcome="accepted"\}/ {print $2}')
echo "accepted hits: $ACCEPTED; waiting for them to be processed"
DAY=$(date -u +%F)
for _ in $(seq 1 600); do
  PV=$(curl -s -H "Authorization: Bearer $TOKEN" -H "x-api-key: bench-etl" \
    "http://127.0.0.1:$PORT/api/v1/report-suites/bench.web/report?metrics=pageviews&dimension=day&from=$DAY&to=$DAY" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"].get("pageviews", 0))')
  [ "$PV" -ge "${ACCEPTED%.*}" ] && break
  sleep 2
done
echo "page views in the report: $PV"
DISTINCT=$(python3 - "$DATA/lake" <<'PY'
import duckdb, glob, sys
from deltalake import DeltaTable
total = distinct = 0
for t in glob.glob(sys.argv[1] + "/hits/company=*"):
    tbl = DeltaTable(t).to_pyarrow_table(columns=["page_name"])
    r = duckdb.sql("select count(*), count(distinct page_name) from tbl").fetchall()[0]
    total += r[0]; distinct += r[1]
print(f"{total} {distinct}")
PY
)
echo "lake rows, distinct pages: $DISTINCT"
set -- $DISTINCT
if [ "${ACCEPTED%.*}" = "$PV" ] && [ "$1" = "$PV" ] && [ "$2" = "$PV" ]; then
  echo "exactly once: OK"
else
  echo "exactly once: MISMATCH (accepted $ACCEPTED, report $PV, lake $1, distinct $2)"; exit 1
fi
