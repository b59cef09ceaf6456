#!/usr/bin/env bash
# Runs each fuzz target until RUNS executions or SECONDS, whichever comes first (RUNS -1:
# SECONDS only), and prints a table of executions per target.
# usage: run-fuzzers.sh BIN_DIR WORK_DIR SECONDS RUNS TARGET...
# Each target starts from its committed seeds (Fuzz/Corpus/<target>, read only) plus what
# earlier runs found (WORK_DIR/corpus/<target>, where new inputs go). A crash, leak or
# timeout leaves its input in WORK_DIR/artifacts and fails the run; turn it into a
# regression test (see Fuzz/README.md).
set -uo pipefail
bin=$1 work=$2 seconds=$3 runs=$4
shift 4
seeds="$(cd "$(dirname "$0")/.." && pwd)/Corpus"
mkdir -p "$work/artifacts" "$work/logs"
failed=()
rows=()
for target in "$@"; do
  mkdir -p "$work/corpus/$target"
  log="$work/logs/$target.log"
  start=$(date +%s)
  # -timeout: one input taking longer is a hang. -rss_limit_mb: ASan shadow memory included.
  # -detect_leaks=0: LeakSanitizer's per-input check sees the Swift runtime's caches as
  # leaks; the H2 target checks releases itself and ASan still checks at exit.
  SWIFT_BACKTRACE=enable=no "$bin/$target" -max_total_time="$seconds" -runs="$runs" -timeout=20 -rss_limit_mb=4096 -detect_leaks=0 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/$target-" \
    "$work/corpus/$target" "$seeds/$target" >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(ls "$work/corpus/$target" | wc -l)
  status=ok
  if [ $rc -ne 0 ]; then
    status="FAILED (rc $rc, see $log)"
    failed+=("$target")
  fi
  rows+=("$(printf '%-26s %12s %10s %8s %6ss  %s' "$target" "${execs:-?}" "${rate:-?}" "$corpus" "$took" "$status")")
  echo "${rows[-1]}"
done
echo
printf '%-26s %12s %10s %8s %7s  %s\n' target executions exec/s corpus time status
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: ${failed[*]} failed; inputs in $work/artifacts" >&2
  for target in "${failed[@]}"; do grep -m5 -E 'ERROR|Fatal error|==[0-9]+==' "$work/logs/$target.log" >&2; done
  exit 1
fi
