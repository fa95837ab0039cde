#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is missing, builds vfio-engine, boots
# the test guest (two NUMA nodes, two NVMe, edu, two e1000e, an emulated IOMMU), opens each device
# through VFIO (vfe-probe: address, IDs, NUMA node, IOMMU group, VFIO node), then runs the example
# polling driver (examples/nvme_poll) on the guest's first NVMe: identify, write, read, verify,
# and a short vfio-bench nvme run there, and the example NIC driver (examples/nic_loopback):
# 10,000 frames from the first e1000e to the second. Runs in each IOMMU mode in turn unless one is
# named.
# Ends with vfio-bench loopback on this machine: the engine's own cost per I/O next to io_uring.
#
# Made for Debian 12; root is needed only to install missing packages. Prints how long each stage
# took at the end.
#
# usage: scripts/demo.sh [--mode type1|iommufd|noiommu]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/stages.sh
source scripts/stages.sh

modes=(type1 iommufd noiommu)
case ${1:-} in
  "") ;;
  --mode) [[ ${2:-} =~ ^(type1|iommufd|noiommu)$ ]] || { echo "demo.sh: --mode takes type1, iommufd or noiommu" >&2; exit 2; }
          modes=("$2") ;;
  -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
  *) echo "demo.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
esac

trap 'stage_report demo.sh' EXIT
((EUID == 0)) || echo "demo.sh: not root: fine when every package is installed (setup-deps says if not)"
stage_begin "packages (setup-deps.sh)"
scripts/setup-deps.sh
stage_begin "build: release (vfe-probe nvme_poll nic_loopback vfio-bench)"
cmake --preset release >/dev/null
cmake --build --preset release --target vfe-probe nvme_poll nic_loopback vfio-bench
# The guest kernels first (cached after the first run), so their time shows as its own stage.
stage_begin "kernels for ${modes[*]} (fetch-debian-kernel.sh, build-kernel.sh)"
[[ " ${modes[*]} " != *" type1 "* ]] || tests/vm/fetch-debian-kernel.sh >/dev/null
[[ " ${modes[*]} " != *" iommufd "* && " ${modes[*]} " != *" noiommu "* ]] || tests/vm/build-kernel.sh >/dev/null
for mode in "${modes[@]}"; do
  echo
  stage_begin "$mode: vfe-probe, nvme_poll, vfio-bench nvme and nic_loopback, inside the guest"
  tests/vm/run.sh --mode "$mode" --with build/release/examples/nvme_poll --with build/release/bench/vfio-bench \
    --with build/release/examples/nic_loopback build/release/examples/vfe-probe tests/vm/guest/nvme_poll_check.sh \
    tests/vm/guest/bench_demo.sh tests/vm/guest/nic_loopback_check.sh
done
echo
stage_begin "vfio-bench loopback on this machine (the engine's cost per I/O; see bench/README.md)"
build/release/bench/vfio-bench --no-progress --time 3 loopback
stage_end
