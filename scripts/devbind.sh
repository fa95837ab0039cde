#!/bin/sh
# devbind.sh: bind PCI functions to vfio-pci for a vfio-engine driver, give them back to their
# kernel drivers, and list what is where. POSIX sh, so it runs in the test guest's busybox too
# (the VM rig binds its devices with it).
#
# usage: scripts/devbind.sh list [--vfio]     every function (or only vfio-pci's): address, IDs,
#                                             class, driver, IOMMU group, NUMA node
#        scripts/devbind.sh bind BDF...       bind to vfio-pci; warns about a group that is not
#                                             viable and a low RLIMIT_MEMLOCK
#        scripts/devbind.sh unbind BDF...     unbind from vfio-pci and let the kernel reprobe
#        scripts/devbind.sh check BDF...      only the warnings, changes nothing
# BDF is DDDD:BB:DD.F or BB:DD.F. Binding and unbinding need root. Exit: 0 done (warnings are
# not failures), 1 an operation failed, 2 bad usage. VFE_SYSFS_ROOT moves /sys (for tests).
set -u
sys=${VFE_SYSFS_ROOT:-/sys}
pci=$sys/bus/pci

die() { echo "devbind: $*" >&2; exit 1; }
warn() { echo "devbind: warning: $*" >&2; }
usage() { sed -n '5,13s/^# \{0,1\}//p' "$0"; }

# Canonical "0000:81:00.0" from either form; empty when malformed.
canon() {
  case $1 in
    [0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F].[0-7]) echo "0000:$1" | tr 'A-F' 'a-f' ;;
    *[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F].[0-7])
      case ${1%:*:*} in *[!0-9a-fA-F]*) ;; *) echo "$1" | tr 'A-F' 'a-f' ;; esac ;;
  esac
}
device_dir() {
  b=$(canon "$1")
  [ -n "$b" ] || die "'$1' is not a PCI address; expected DDDD:BB:DD.F or BB:DD.F, e.g. 0000:81:00.0"
  [ -d "$pci/devices/$b" ] || die "$b: no such PCI function (\`$0 list\` shows the ones there are)"
  echo "$pci/devices/$b"
}
link_name() { l=$(readlink "$1" 2>/dev/null) && echo "${l##*/}"; }
attr() { cat "$1" 2>/dev/null; }

check() {  # check DEVICE_DIR: warnings only
  d=$1; b=${d##*/}
  group=$(link_name "$d/iommu_group")
  if [ -z "$group" ]; then
    if [ "$(attr "$sys/module/vfio/parameters/enable_unsafe_noiommu_mode")" = Y ]; then
      warn "$b has no IOMMU group: it will be usable only in no-IOMMU mode (no isolation)"
    else
      warn "$b has no IOMMU group: boot with the IOMMU on (intel_iommu=on or amd_iommu=on)"
    fi
  else
    for m in "$sys/kernel/iommu_groups/$group/devices"/*; do
      [ -e "$m" ] || continue
      drv=$(link_name "$m/driver")
      case $drv in
        ""|vfio-pci|pcieport) ;;
        *) warn "IOMMU group $group is not viable: ${m##*/} is bound to $drv; bind it to vfio-pci too (\`$0 bind ${m##*/}\`) or unbind it" ;;
      esac
    done
  fi
  limit=$(ulimit -l 2>/dev/null || echo unlimited)
  if [ "$(id -u)" != 0 ] && [ "$limit" != unlimited ] && [ "$limit" -lt 1048576 ]; then
    warn "RLIMIT_MEMLOCK is ${limit} KiB: a driver pins all its DMA memory against it; raise it to at least the DMA memory you use (e.g. 'ulimit -l 1048576' for 1 GiB, or memlock in /etc/security/limits.conf)"
  fi
}

bind_one() {
  d=$(device_dir "$1") || exit 1
  b=${d##*/}
  [ -d "$pci/drivers/vfio-pci" ] || modprobe vfio-pci 2>/dev/null
  [ -d "$pci/drivers/vfio-pci" ] || die "the vfio-pci driver is not loaded and modprobe vfio-pci failed"
  if [ "$(link_name "$d/driver")" != vfio-pci ]; then
    echo vfio-pci >"$d/driver_override" || die "$b: cannot write driver_override (are you root?)"
    if [ -e "$d/driver" ]; then
      echo "$b" >"$d/driver/unbind" || die "$b: cannot unbind from $(link_name "$d/driver")"
    fi
    echo "$b" >"$pci/drivers_probe" 2>/dev/null
    drv=$(link_name "$d/driver")
    [ "$drv" = vfio-pci ] || die "$b did not bind to vfio-pci (driver now: ${drv:-none}; see dmesg)"
  fi
  echo "devbind: $b bound to vfio-pci (IOMMU group $(link_name "$d/iommu_group" || echo none), NUMA node $(attr "$d/numa_node"))"
  check "$d"
}

unbind_one() {
  d=$(device_dir "$1") || exit 1
  b=${d##*/}
  if [ "$(link_name "$d/driver")" = vfio-pci ]; then
    echo "$b" >"$d/driver/unbind" || die "$b: cannot unbind from vfio-pci (are you root?)"
  fi
  [ -e "$d/driver_override" ] && echo >"$d/driver_override"
  echo "$b" >"$pci/drivers_probe" 2>/dev/null
  echo "devbind: $b released (driver now: $(link_name "$d/driver" || echo none))"
}

list() {
  printf '%-13s %-9s %-6s %-10s %-5s %s\n' BDF ID CLASS DRIVER GROUP NUMA
  for d in "$pci/devices"/*; do
    [ -e "$d" ] || continue
    drv=$(link_name "$d/driver"); [ -n "$drv" ] || drv=-
    [ "${1:-}" = --vfio ] && [ "$drv" != vfio-pci ] && continue
    id="$(attr "$d/vendor" | sed 's/^0x//'):$(attr "$d/device" | sed 's/^0x//')"
    class=$(attr "$d/class" | sed 's/^0x//' | cut -c1-4)
    group=$(link_name "$d/iommu_group"); [ -n "$group" ] || group=-
    printf '%-13s %-9s %-6s %-10s %-5s %s\n' "${d##*/}" "$id" "$class" "$drv" "$group" "$(attr "$d/numa_node")"
  done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  list) list "$@" ;;
  bind|unbind|check)
    [ $# -gt 0 ] || { echo "devbind: $cmd needs at least one PCI address" >&2; exit 2; }
    for a in "$@"; do
      case $cmd in
        bind) bind_one "$a" || exit 1 ;;
        unbind) unbind_one "$a" || exit 1 ;;
        check) d=$(device_dir "$a") || exit 1; check "$d" ;;
      esac
    done ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) echo "devbind: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
esac
