#!/usr/bin/env bash
# Self-test of the VM rig's verdicts (ctest vm_selftest):
#  - a guest test that fails makes run.sh exit 1 and report "1 passed, 1 failed";
#  - a bad mode and a missing binary are one-line errors with exit 2, before anything boots.
# usage: tests/vm/selftest/check.sh DELIBERATE_FAILURE_BINARY
set -uo pipefail
run=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/run.sh
failures=0
expect() {  # expect NAME WANT_RC GOT_RC OUTPUT PATTERN
  if [[ $3 == "$2" ]] && grep -q -- "$5" <<<"$4"; then
    echo "ok: $1 (exit $3)"
  else
    echo "FAIL: $1: wanted exit $2 and /$5/, got exit $3:"; echo "$4" | tail -n 20
    failures=$((failures + 1))
  fi
}

out=$("$run" --mode bogus /bin/true 2>&1); rc=$?
expect "unknown mode" 2 $rc "$out" "^vm: error: unknown mode 'bogus'"
[[ $(wc -l <<<"$out") == 1 ]] || { echo "FAIL: unknown mode printed more than one line"; failures=$((failures + 1)); }
out=$("$run" --mode type1 /nonexistent/vfe_test 2>&1); rc=$?
expect "missing binary" 2 $rc "$out" "^vm: error: program '/nonexistent/vfe_test' does not exist"
[[ $(wc -l <<<"$out") == 1 ]] || { echo "FAIL: missing binary printed more than one line"; failures=$((failures + 1)); }
out=$("$run" --mode type1 "$1" 2>&1); rc=$?
expect "failing guest test" 1 $rc "$out" "^1 passed, 1 failed$"

echo "$((5 - failures)) passed, $failures failed"
((failures == 0))
