#!/usr/bin/env bash
# Host test of scripts/devbind.sh on a fake sysfs tree (VFE_SYSFS_ROOT): listing, the viability
# and IOMMU warnings, and its usage errors. Binding itself is exercised for real by every VM boot.
set -uo pipefail
devbind=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/devbind.sh
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
export VFE_SYSFS_ROOT=$root
pass=0 fail=0
expect() {  # expect NAME WANT_RC GOT_RC OUTPUT PATTERN
  if [[ $3 == "$2" ]] && grep -qE -- "$5" <<<"$4"; then pass=$((pass + 1)); echo "ok: $1"
  else fail=$((fail + 1)); echo "FAIL: $1: wanted exit $2 and /$5/, got $3: $4"; fi
}

mkdir -p "$root"/bus/pci/{devices,drivers/vfio-pci,drivers/ixgbe} "$root/kernel/iommu_groups/7/devices"
add() {  # add BDF DRIVER GROUP
  local d=$root/devices/pci0000:00/$1
  mkdir -p "$d"
  ln -s "$d" "$root/bus/pci/devices/$1"
  echo 0x8086 >"$d/vendor"; echo 0x10fb >"$d/device"; echo 0x020000 >"$d/class"; echo 0 >"$d/numa_node"
  [[ $2 == - ]] || ln -s "$root/bus/pci/drivers/$2" "$d/driver"
  if [[ $3 != - ]]; then
    ln -s "$root/kernel/iommu_groups/$3" "$d/iommu_group"
    ln -s "$d" "$root/kernel/iommu_groups/$3/devices/$1"
  fi
}
add 0000:00:04.0 vfio-pci 7
add 0000:00:04.1 ixgbe 7
add 0000:00:05.0 - -

out=$("$devbind" list 2>&1); rc=$?
expect "list shows every function" 0 $rc "$out" "0000:00:04.1 +8086:10fb 0200 +ixgbe +7 +0"
out=$("$devbind" list --vfio 2>&1); rc=$?
expect "list --vfio shows vfio-pci's only" 0 $rc "$out" "^0000:00:04.0 .*vfio-pci"
grep -q ixgbe <<<"$out" && { fail=$((fail + 1)); echo "FAIL: list --vfio shows ixgbe"; }
out=$("$devbind" check 00:04.0 2>&1); rc=$?
expect "non-viable group named" 0 $rc "$out" "IOMMU group 7 is not viable: 0000:00:04.1 is bound to ixgbe; bind it to vfio-pci too"
out=$("$devbind" check 0000:00:05.0 2>&1); rc=$?
expect "no IOMMU group" 0 $rc "$out" "0000:00:05.0 has no IOMMU group: boot with the IOMMU on"
out=$("$devbind" check 00:05 2>&1); rc=$?
expect "malformed address" 1 $rc "$out" "'00:05' is not a PCI address; expected DDDD:BB:DD.F"
out=$("$devbind" bind 0000:00:1f.0 2>&1); rc=$?
expect "missing function" 1 $rc "$out" "0000:00:1f.0: no such PCI function"
out=$("$devbind" bind 2>&1); rc=$?
expect "bind without address" 2 $rc "$out" "bind needs at least one PCI address"
out=$("$devbind" frobnicate 2>&1); rc=$?
expect "unknown command" 2 $rc "$out" "unknown command 'frobnicate'"

echo "$pass passed, $fail failed"
((fail == 0))
