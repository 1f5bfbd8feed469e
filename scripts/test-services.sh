#!/usr/bin/env bash
# Starts the services the scale-out tests run against, each a throwaway
# instance on a loopback port, and prints the environment that points the
# tests at them:
#
#   eval "$(scripts/test-services.sh start)"    # exports BDIA_TEST_* and SVC_DIR
#   scripts/test-services.sh stop "$SVC_DIR"
#
# - PostgreSQL (Debian's package): a fresh cluster in a temp dir, trust
#   auth, run as the postgres user -> BDIA_TEST_POSTGRES_URL
# - An S3-compatible server (PyPI moto[s3], in memory) with an empty bucket
#   -> BDIA_TEST_S3_ENDPOINT, BDIA_TEST_S3_BUCKET and the AWS_* variables
#   its clients read.
# Installing them is test.sh's job (it calls this script). PG_EXTRA_OPTS
# adds server options (benchmarks: `-c log_statement=all`); the server log
# is $SVC_DIR/pg/log.
set -euo pipefail

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local dir pgbin pgport s3port
  dir=$(mktemp -d /tmp/bdia-svc.XXXXXX)
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  pgport=$(free_port)
  mkdir -p "$dir/pg"
  chown postgres:postgres "$dir/pg"
  chmod 755 "$dir"
  runuser -u postgres -- "$pgbin/initdb" -D "$dir/pg/data" -U bdia --auth=trust -E UTF8 >/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w \
    -o "-p $pgport -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 ${PG_EXTRA_OPTS:-}" start >/dev/null
  s3port=$(free_port)
  nohup moto_server -H 127.0.0.1 -p "$s3port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$s3port/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf -X PUT "http://127.0.0.1:$s3port/bdia-test" >/dev/null
  cat <<ENV
export SVC_DIR=$dir
export BDIA_TEST_POSTGRES_URL=postgres://bdia@127.0.0.1:$pgport/postgres
export BDIA_TEST_S3_ENDPOINT=http://127.0.0.1:$s3port
export BDIA_TEST_S3_BUCKET=bdia-test
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3port
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
ENV
}

stop() {
  local dir=$1 pgbin
  [ -d "$dir" ] || return 0
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/pg/data" -m immediate stop >/dev/null 2>&1 || true
  [ -f "$dir/moto.pid" ] && kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:?SVC_DIR}" ;;
  *) echo "usage: $0 start | stop SVC_DIR" >&2; exit 2 ;;
esac
