#!/usr/bin/env bash
# Runs every test of vfio-engine, from nothing: installs what is missing, builds, then
#   1. the unit tests (label "unit") in the release build, under ASan+UBSan (preset dev) and
#      under TSan (preset tsan);
#   2. the fuzzers (preset fuzz, clang + libFuzzer): each on its checked-in seeds and
#      regressions, a minute in all (tests/fuzz/README.md);
#   3. the VM tests (label "vm"): the real kernel's VFIO in a QEMU guest, in type1, iommufd and
#      noiommu modes, plus the rig's self-test.
# Prints "N passed, N failed" over all of them, then how long each stage took; exits non-zero
# if anything failed. Made for Debian 12; root is needed only to install missing packages.
#
# usage: scripts/test.sh [--unit-only]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/stages.sh
source scripts/stages.sh

unit_only=0
case ${1:-} in
  "") ;;
  --unit-only) unit_only=1 ;;
  -h|--help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
  *) echo "test.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
esac

# The verdict is repeated after the stage table, so that it stays the last line a reader sees.
verdict=""
trap 'stage_report test.sh; [[ -z $verdict ]] || echo "$verdict"' EXIT
((EUID == 0)) || echo "test.sh: not root: fine when every package is installed (setup-deps says if not)"
stage_begin "packages (setup-deps.sh)"
scripts/setup-deps.sh
configure_args=()
if ((!unit_only)); then
  # Build or fetch both guest kernels before any test runs, so ctest's time limits measure the
  # tests and a broken kernel build is reported as that. The small kernel's uapi headers also
  # check vfio/uapi_own.hpp (ctest uapi_matches_kernel_headers).
  stage_begin "kernel: small 6.12 (build-kernel.sh)"
  kernel_dir=$(tests/vm/build-kernel.sh)
  stage_begin "kernel: Debian's (fetch-debian-kernel.sh)"
  tests/vm/fetch-debian-kernel.sh >/dev/null
  configure_args+=("-DVFE_KERNEL_HEADERS=$kernel_dir/include")
fi

passed=0 failed=0 status=0
run_ctest() {  # run_ctest PRESET [ctest args...]
  local preset=$1 log; shift
  log=$(mktemp)
  stage_begin "ctest --preset $preset $*"
  ctest --preset "$preset" "$@" 2>&1 | tee "$log" || status=1
  # "100% tests passed, 0 tests failed out of 55"
  local line; line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1)
  rm -f "$log"
  if [[ -z $line ]]; then echo "test.sh: ctest --preset $preset ran no test"; status=1; return; fi
  local f t; f=$(awk '{print $4}' <<<"$line"); t=$(awk '{print $NF}' <<<"$line")
  passed=$((passed + t - f)); failed=$((failed + f))
}

for preset in release dev tsan fuzz; do
  stage_begin "build: $preset"
  cmake --preset "$preset" "${configure_args[@]}" >/dev/null
  cmake --build --preset "$preset"
done

run_ctest release -L unit
run_ctest dev
run_ctest tsan
run_ctest fuzz
((unit_only)) || run_ctest release -L vm
stage_end

verdict="test.sh: $passed passed, $failed failed"
echo "$verdict"
((status == 0 && failed == 0))
