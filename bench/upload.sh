#!/usr/bin/env bash
# Benchmark of uploads to `bdia serve`, next to `bdia validate` of the same
# file in the same run (the machines are noisy: only ratios are meaningful).
#
#   bash bench/upload.sh [ROWS]        (default 1,000,000 rows; RUNS=5)
#
# Measures:
#   1. wall time of one upload with curl vs `bdia validate` (hyperfine,
#      alternating), same file;
#   2. the server's peak RSS (VmHWM) over all of it;
#   3. uploads per second of a small file from 8 concurrent curl clients,
#      next to GET /healthz per second with the same concurrency.
# The server runs with processing off: this measures the upload path only
# (bench/process.sh measures processing), and processing the uploaded files
# in the background would take CPU and memory from the uploads measured.
# Needs hyperfine and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
RUNS=${RUNS:-5}
SMALL=${SMALL:-400}
WORK=${BENCH_DIR:-target/bench}
mkdir -p "$WORK"
command -v hyperfine >/dev/null || { echo "hyperfine is needed: apt-get install hyperfine" >&2; exit 2; }

# BDIA_BIN: a release binary already built (skips the build).
if [ -z "${BDIA_BIN:-}" ]; then
  cargo build --release -q -p bdia-cli
  BDIA_BIN="${CARGO_TARGET_DIR:-target}/release/bdia"
fi
BDIA=$(realpath "$BDIA_BIN")
FILE="$WORK/upload-$ROWS.csv.gz"
if [ ! -f "$FILE" ]; then
  "$BDIA" generate --rows "$ROWS" --visitors 50000 --suites acme.prod,acme.dev \
    --invalid-rate 0.01 --seed 7 -o "$FILE"
fi
SMALL_FILE="$WORK/upload-small.csv.gz"
"$BDIA" generate --rows 100 --visitors 10 --suites acme.prod --seed 3 -o "$SMALL_FILE"

DATA=$(mktemp -d "$WORK/upload-data.XXXXXX")
PORT=${PORT:-$((20000 + RANDOM % 20000))}
BASE="http://127.0.0.1:$PORT"
BDIA_RATE_LIMIT_ENABLED=false BDIA_PROCESSING_ENABLED=false \
  "$BDIA" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
  >"$WORK/upload-server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
  curl -sf "$BASE/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
CLIENT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_id"])' "$DATA/credentials.json")
TOKEN=$("$BDIA" admin --data-dir "$DATA" token "$CLIENT")
H=(-H "Authorization: Bearer $TOKEN" -H "x-api-key: $CLIENT")

# 1. One large upload vs offline validation of the same file.
cat >"$WORK/upload-one.sh" <<SH
#!/usr/bin/env bash
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H "x-api-key: $CLIENT" \
  -H "x-adobe-vgid: bench" -F "file=@$FILE" "$BASE/aa/collect/v1/events"
SH
chmod +x "$WORK/upload-one.sh"
hyperfine --warmup 1 --runs "$RUNS" -N -i --export-json "$WORK/upload.json" \
  -n "bdia validate" "$BDIA validate --quiet $FILE" \
  -n "curl upload" "bash $WORK/upload-one.sh" >/dev/null
# Check the answer once, for the record.
curl -s "${H[@]}" -H "x-adobe-vgid: bench" -F "file=@$FILE" "$BASE/aa/collect/v1/events" \
  | python3 -c 'import json,sys; v=json.load(sys.stdin); print("upload answer:", v["status_code"], v["rows"], "rows,", v["invalid_rows"], "invalid")'
HWM_KB=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)

# 3. Small uploads from 8 concurrent clients, vs /healthz at the same concurrency.
seq "$SMALL" >"$WORK/upload-seq.txt"
t0=$(date +%s.%N)
xargs -P 8 -I{} curl -sf -o /dev/null "${H[@]}" -H "x-adobe-vgid: g{}" \
  -F "file=@$SMALL_FILE" "$BASE/aa/collect/v1/events" <"$WORK/upload-seq.txt"
t1=$(date +%s.%N)
xargs -P 8 -I{} curl -sf -o /dev/null "$BASE/healthz" <"$WORK/upload-seq.txt"
t2=$(date +%s.%N)

python3 - "$WORK/upload.json" "$ROWS" "$(stat -c %s "$FILE")" "$HWM_KB" "$SMALL" "$t0" "$t1" "$t2" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
rows, gz, hwm_kb, small = map(int, sys.argv[2:6])
t0, t1, t2 = map(float, sys.argv[6:9])
v, u = res["bdia validate"], res["curl upload"]
print(f"file: {rows} rows, {gz/1e6:.1f} MB gzip")
print("| command | mean (s) | ± σ | rows/s |")
print("|---|---|---|---|")
for name, r in (("bdia validate", v), ("curl upload", u)):
    print(f"| `{name}` | {r['mean']:.3f} | {r['stddev']:.3f} | {rows/r['mean']:,.0f} |")
print(f"\nratio upload / validate (wall time): {u['mean']/v['mean']:.2f}")
print(f"server peak RSS (VmHWM): {hwm_kb/1024:.1f} MiB")
up, hz = small/(t1-t0), small/(t2-t1)
print(f"small uploads (100 rows), 8 concurrent clients: {up:.0f} uploads/s")
print(f"GET /healthz, 8 concurrent clients (curl per request): {hz:.0f} requests/s")
print(f"ratio small uploads / healthz requests: {up/hz:.2f}")
PY
