#!/usr/bin/env bash
# One ctest per IOMMU mode: boots the guest with the integration tests and the example polling
# driver, keeping the NVMe disk images, then checks on the host that the images hold exactly what
# the guest's data-integrity test wrote (the emulated controllers really wrote it).
#
# usage: tests/vm/run_suite.sh MODE VM_TESTS NVME_POLL DISK_CHECK
# Exit: as tests/vm/run.sh (0 pass, 1 a test or the disk check failed, 2 the rig failed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
(($# == 4)) || { sed -n '6p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }
mode=$1 vm_tests=$2 nvme_poll=$3 disk_check=$4

disks=$(mktemp -d /tmp/vfe-disks.XXXXXX)
trap 'rm -rf "$disks"' EXIT
rc=0
"$here/run.sh" --mode "$mode" --disk-dir "$disks" --with "$nvme_poll" \
  "$vm_tests" "$here/guest/nvme_poll_check.sh" || rc=$?
((rc == 0)) || exit "$rc"
"$disk_check" "$disks/nvme0.img" 0 "$disks/nvme1.img" 1 || exit 1
