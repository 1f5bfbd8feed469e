#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (CI runs it after the tests):
#
#   fuzz/run.sh [SECONDS]     (default 60 s per target)
#
# Targets: validate (arbitrary bytes through the whole engine), header (the
# header analysis), query (the queryString decoder). Each starts from its
# seeds and from fuzz/corpus/<target> (kept between local runs, not in
# git). A crash, a failed assertion, an input slower than 10 s or a run
# over 2 GiB fails the script; the input is saved under fuzz/artifacts/.
#
# Needs cargo-fuzz (installed here, pinned, when missing) and a toolchain
# that accepts -Z flags: on a stable toolchain RUSTC_BOOTSTRAP=1 does.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
CARGO_FUZZ_VERSION=0.13.1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION (crates.io)"
  cargo install -q cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1
# Build products outside the clone, reused between runs when present.
export CARGO_TARGET_DIR="${BDIA_FUZZ_TARGET_DIR:-$HOME/.cache/bdia-fuzz-target}"
declare -A seeds=([validate]=seeds [header]=seeds-header [query]=seeds-query)
for target in validate header query; do
  echo "== fuzz $target for ${secs} s"
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  if ! cargo fuzz run "$target" "corpus/$target" "${seeds[$target]}" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -80 "$log"
    echo "fuzz target $target failed (input saved under fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+ +DONE" "$log" || tail -5 "$log"
  rm -f "$log"
done
