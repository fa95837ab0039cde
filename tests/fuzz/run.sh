#!/usr/bin/env bash
# Runs each libFuzzer target of tests/fuzz for a bounded time: 60 s over all of them by default,
# start-up included (each gets an equal share of what is left, at least 3 s). Builds nothing
# (cmake --build --preset fuzz does).
# Each fuzzer works on a temporary copy of its seed corpus (corpus/<target>, so it never grows)
# and replays regressions/<target>, the inputs it once failed on. Prints one line per target
# (name, executions, result); on a failure the input is kept in BUILD_DIR/fuzz-artifacts/<target>
# and the script exits 1 (2: bad usage or a fuzzer not built).
#
# usage: tests/fuzz/run.sh BUILD_DIR [--time SECONDS] [TARGET...]
#   --time SECONDS  per-target time instead (long runs by hand: --time 3600 nvme_identify)
#   TARGET          pci_caps, bdf, ... (the <target>_fuzz.cpp names); default: all
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { sed -n '10,12s/^# \{0,1\}//p' "$0"; }

build="" time="" targets=()
while (($#)); do
  case $1 in
    --time) time=${2:?--time needs seconds}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "run.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) if [[ -z $build ]]; then build=$1; else targets+=("$1"); fi; shift ;;
  esac
done
[[ -n $build ]] || { usage >&2; exit 2; }
if ((${#targets[@]} == 0)); then
  for src in "$here"/*_fuzz.cpp; do
    name=$(basename "$src"); targets+=("${name%_fuzz.cpp}")
  done
fi
if [[ -n $time && ! $time =~ ^[1-9][0-9]*$ ]]; then
  echo "run.sh: --time takes whole seconds, not '$time'" >&2; exit 2
fi

for t in "${targets[@]}"; do
  [[ -x $build/tests/fuzz/${t}_fuzz ]] || {
    echo "run.sh: $build/tests/fuzz/${t}_fuzz is missing;" \
         "build it with cmake --preset fuzz && cmake --build --preset fuzz" >&2
    exit 2
  }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
status=0 budget=58 left=${#targets[@]}
for t in "${targets[@]}"; do
  seconds=$time
  if [[ -z $time ]]; then
    # libFuzzer stops up to a second past -max_total_time and takes about one more to start and
    # finish: 2 s per target go to that, and $SECONDS lags by up to 1 s (hence 58, not 60).
    seconds=$(((budget - SECONDS - 2 * left) / left))
    ((seconds >= 3)) || seconds=3
  fi
  left=$((left - 1))
  artifacts=$build/fuzz-artifacts/$t
  rm -rf "$artifacts"; mkdir -p "$artifacts" "$work/$t"
  [[ -d $here/corpus/$t ]] && cp -R "$here/corpus/$t/." "$work/$t/"
  regressions=()
  [[ -d $here/regressions/$t ]] && regressions=("$here/regressions/$t")
  log=$work/$t.log
  result=ok
  # The first directory takes what the fuzzer adds; the others are only read.
  "$build/tests/fuzz/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$work/$t" "${regressions[@]}" \
    >"$log" 2>&1 || result=FAILED
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  [[ -n $execs ]] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -n1 | tr -d '#' || true)
  printf '%-14s %10s execs  %s\n' "$t" "${execs:-?}" "$result"
  if [[ $result != ok ]]; then
    status=1
    cp "$log" "$artifacts/log"
    grep -E 'ERROR|SUMMARY|fuzz property violated|runtime error' "$log" | head -n5 | sed 's/^/    /' || true
    for f in "$artifacts"/*; do
      [[ $f == */log ]] || echo "    input: $f (save it in tests/fuzz/regressions/$t)"
    done
    echo "    full log: $artifacts/log"
  fi
done
exit "$status"
