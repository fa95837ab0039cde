#!/usr/bin/env bash
# One ctest per IOMMU mode: boots the guest with, in this order, the integration tests, the
# example polling driver, the example NIC driver, vfe-nvme's reports, vfe-ublk under fio or dd (where the guest
# kernel has ublk: iommufd and no-IOMMU), the integration tests again as an unprivileged
# user (type1 and iommufd: no-IOMMU needs CAP_SYS_RAWIO), the 60-second soak (iommufd only, to
# keep CI short), vfio-bench's tests with fio (when given), and the hot-unplug test (last: it
# removes an NVMe). It keeps the NVMe disk images and then checks on the host that they hold
# exactly what the guest's data-integrity test wrote (the emulated controllers really wrote it),
# and what ublk_check.sh wrote through vfe-ublk's block device.
#
# usage: tests/vm/run_suite.sh MODE VM_TESTS NVME_POLL NIC_LOOPBACK DISK_CHECK VFE_UBLK VFE_NVME [BENCH_TESTS VFIO_BENCH]
# Exit: as tests/vm/run.sh (0 pass, 1 a test or the disk check failed, 2 the rig failed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
(($# == 7 || $# == 9)) || { sed -n '10p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }
mode=$1 vm_tests=$2 nvme_poll=$3 nic_loopback=$4 disk_check=$5 vfe_ublk=$6 vfe_nvme=$7
# vfe_disk_check goes in too: ublk_check.sh writes its pattern through vfe-ublk's block device.
with=(--with "$nvme_poll" --with "$nic_loopback" --with "$vfe_ublk" --with "$disk_check" --with "$vfe_nvme")
for tool in mkfs.ext4 e2fsck; do  # an ext4 filesystem on vfe-ublk's device (guest/ublk_check.sh)
  path=$(PATH=$PATH:/usr/sbin:/sbin command -v "$tool") || { echo "run_suite: $tool is missing; run scripts/setup-deps.sh" >&2; exit 2; }
  with+=(--with "$path")
done
binaries=("$vm_tests" "$here/guest/nvme_poll_check.sh" "$here/guest/nvme_tool_check.sh" "$here/guest/nic_loopback_check.sh"
          "$here/guest/ublk_check.sh")
[[ $mode == noiommu ]] || binaries+=("$here/guest/nonroot_check.sh")
[[ $mode != iommufd ]] || binaries+=("$here/guest/soak_check.sh")
if (($# == 9)); then
  with+=(--with "$9")
  # fio and its 80 MB of libraries do not fit in the no-IOMMU guest's 256 MiB; there the fio
  # comparison is skipped (and says so).
  if [[ $mode != noiommu ]]; then
    fio=$(command -v fio) || { echo "run_suite: fio is missing; run scripts/setup-deps.sh" >&2; exit 2; }
    with+=(--with "$fio")
  fi
  binaries+=("$8")  # it hands an NVMe to the kernel driver for fio and back
fi
binaries+=("$here/guest/hotunplug_check.sh")  # last: the node-1 NVMe is gone afterwards

disks=$(mktemp -d /tmp/vfe-disks.XXXXXX)
trap 'rm -rf "$disks"' EXIT
rc=0
"$here/run.sh" --mode "$mode" --disk-dir "$disks" "${with[@]}" "${binaries[@]}" || rc=$?
((rc == 0)) || exit "$rc"
"$disk_check" "$disks/nvme0.img" 0 "$disks/nvme1.img" 1 || exit 1
# What ublk_check.sh wrote through vfe-ublk (not in type1: Debian's 6.1 kernel has no ublk).
[[ $mode == type1 ]] || "$disk_check" "$disks/nvme0-ublk.img" ublk || exit 1
