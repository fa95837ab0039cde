#!/usr/bin/env bash
# The VM rig: runs test binaries against the real kernel's VFIO in a QEMU guest.
#
# usage: tests/vm/run.sh --mode type1|iommufd|noiommu [--timeout SECONDS] [--disk-dir DIR]
#                        [--with PROGRAM]... BINARY [BINARY...]
#
# Boots a q35 guest under TCG with two NUMA nodes, an emulated Intel IOMMU (not in noiommu mode),
# two NVMe controllers (the second behind a pxb-pcie expander on node 1; the first has a second,
# 1 MiB namespace whose block 1000 fails every read, through QEMU's blkdebug, and a third, 4 MiB
# namespace served by nbdkit whose requests the host can hold), one edu and two e1000e
# on one hub; binds them to vfio-pci inside the guest; runs each binary there with VFE_VM_MODE and
# VFE_VM_DEVICES ("nvme=0000:00:02.0 edu=...") and VFE_VM_DISK_BYTES (each NVMe image's size); and
# prints the serial log and "N passed, N failed". --with stages a program (and its libraries) in the
# guest's PATH without running it, for a BINARY that is a script calling it. --disk-dir keeps the
# NVMe images (nvme0.img, nvme1.img) there, for checks on the host after the guest is off.
# Hot-unplug: a guest line "VFE-HOTUNPLUG <id>" makes the host send "device_del <id>" to QEMU's
# monitor socket; only the node-1 NVMe (id nvme1, behind a hot-plug capable root port) is allowed.
# Stalls: a guest line "VFE-STALL <ms>" makes the host pause namespace 3's NBD server (nbdkit's
# pause filter: requests that arrive from then on are held) and resume it <ms> later. The hold
# is outside QEMU on purpose: QEMU's own controller reset waits for the held requests with the
# machine locked, so nothing inside QEMU (its monitor included) could release them.
# Modes: type1 boots Debian's own kernel, with vfio_iommu_type1's dma_entry_limit lowered from
# 65535 to 64 (so every type1 test shows that mappings are coalesced); iommufd and noiommu boot
# the small 6.12 kernel that build-kernel.sh makes from tests/vm/kernel.fragment (it has IOMMUFD,
# the VFIO cdev and no-IOMMU).
#
# Exit: 0 every test passed, 1 a test failed, 2 the rig failed (bad arguments, no kernel, boot
# timeout, panic, no verdict).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rig_error() { echo "vm: error: $*" >&2; exit 2; }
usage() { sed -n '3,5s/^# //p' "${BASH_SOURCE[0]}"; }

mode="" timeout_s=600 disk_dir="" binaries=() extras=()
while (($#)); do
  case $1 in
    --mode) mode=${2:-}; shift 2 || rig_error "--mode needs a value: type1, iommufd or noiommu" ;;
    --mode=*) mode=${1#*=}; shift ;;
    --timeout) timeout_s=${2:-}; shift 2 || rig_error "--timeout needs a number of seconds" ;;
    --disk-dir) disk_dir=${2:-}; shift 2 || rig_error "--disk-dir needs a folder" ;;
    --with) extras+=("${2:-}"); shift 2 || rig_error "--with needs a program" ;;
    -h|--help) usage; exit 0 ;;
    -*) rig_error "unknown option '$1' (see --help)" ;;
    *) binaries+=("$1"); shift ;;
  esac
done
case $mode in
  type1|iommufd|noiommu) ;;
  "") rig_error "--mode is required: type1, iommufd or noiommu" ;;
  *) rig_error "unknown mode '$mode': use type1, iommufd or noiommu" ;;
esac
[[ $timeout_s =~ ^[0-9]+$ ]] || rig_error "--timeout '$timeout_s' is not a number of seconds"
((${#binaries[@]})) || rig_error "no test binary given (see --help)"
for b in "${binaries[@]}" "${extras[@]}"; do
  [[ -f $b && -x $b ]] || rig_error "program '$b' does not exist or is not executable"
done
for tool in qemu-system-x86_64 busybox cpio gzip gcc socat pkill nbdkit; do
  command -v "$tool" >/dev/null || rig_error "$tool is missing; run scripts/setup-deps.sh"
done

work=$(mktemp -d /tmp/vfe-vm.XXXXXX)
watcher="" nbd_server=""
# The watcher's pipeline (tail, grep, the loop) goes first, then the subshell holding it.
trap '[[ -z $watcher ]] || { pkill -P "$watcher" 2>/dev/null; kill "$watcher" 2>/dev/null; } || true
      [[ -z $nbd_server ]] || kill "$nbd_server" 2>/dev/null || true
      rm -rf "$work"' EXIT
stage=$work/initramfs

# --- Kernel --------------------------------------------------------------------------------------
if [[ $mode == type1 ]]; then
  kdir=$("$here/fetch-debian-kernel.sh") || rig_error "could not fetch Debian's kernel"
  kernel=$kdir/vmlinuz
  mkdir -p "$stage/lib/modules"
  cp "$kdir"/modules/*.ko "$kdir/modules.load" "$stage/lib/modules/"
else
  kdir=$("$here/build-kernel.sh") || rig_error "could not build the 6.12 test kernel"
  kernel=$kdir/bzImage
fi

# --- Initramfs: busybox, the init, the exit helper, the binaries with their libraries ------------
mkdir -p "$stage"/{bin,etc,opt/vfe/bin,proc,sys,dev,tmp}
cp "$(command -v busybox)" "$stage/bin/busybox"
cp "$here/guest/init" "$stage/init"
cp "$here/../../scripts/devbind.sh" "$stage/bin/devbind.sh"
gcc -static -O2 -o "$stage/bin/vm_exit" "$here/guest/vm_exit.c" || rig_error "cannot build vm_exit"
# Copies a host file (or symlink chain) to the same path in the initramfs.
stage_file() {
  local f=$1
  while :; do
    mkdir -p "$stage$(dirname "$f")"
    cp -P "$f" "$stage$f" 2>/dev/null || true
    [[ -L $f ]] || break
    local t; t=$(readlink "$f"); [[ $t == /* ]] || t=$(dirname "$f")/$t
    f=$t
  done
}
: >"$stage/opt/vfe/tests"
for b in "${binaries[@]}" "${extras[@]}"; do
  # Without debug info (a third of the size): the guest's memory holds the initramfs.
  strip --strip-debug -o "$stage/opt/vfe/bin/$(basename "$b")" "$b" 2>/dev/null || cp "$b" "$stage/opt/vfe/bin/"
  # Every shared library the program loads, and the dynamic loader itself.
  while read -r lib; do stage_file "$lib"; done < <(ldd "$b" 2>/dev/null | grep -o '/[^ ]*' | sort -u)
done
for b in "${binaries[@]}"; do
  basename "$b" >>"$stage/opt/vfe/tests"
done
disk_bytes=$((64 << 20))
cat >"$stage/etc/vm.conf" <<CONF
VM_MODE=$mode
VM_DISK_BYTES=$disk_bytes
VM_MODULE_ARGS="$([[ $mode == noiommu ]] && echo enable_unsafe_noiommu_mode=1)"
VM_TYPE1_ARGS="dma_entry_limit=64"
CONF
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# --- Machine -------------------------------------------------------------------------------------
if [[ -n $disk_dir ]]; then mkdir -p "$disk_dir"; else disk_dir=$work; fi
for i in 0 1; do
  [[ -f $disk_dir/nvme$i.img ]] || truncate -s "$disk_bytes" "$disk_dir/nvme$i.img"
done
# Controller 0's namespace 2 (tests/vm/nvme_pattern.hpp kFaulty*): a media error on one block.
# QEMU's blkdebug driver fails every read that touches sector 1000 with EIO; writes succeed.
truncate -s 1M "$disk_dir/nvme0-faulty.img"
cat >"$work/blkdebug.conf" <<'BLKDEBUG'
[inject-error]
event = "read_aio"
iotype = "read"
errno = "5"
sector = "1000"
once = "off"
BLKDEBUG
# The images of namespaces that are written take discards (discard=unmap): QEMU's controller says
# a deallocated block reads as zeroes (DLFEAT 1), but with QEMU's default (discard=ignore) a
# Dataset Management deallocate leaves the data where it was.
# Controller 0's namespace 3 (kStall*): an NBD export the host can pause (see the top).
truncate -s 4M "$disk_dir/nvme0-stall.img"
# Namespace 4 of the first NVMe: what vfe-ublk serves (tests/vm/guest/ublk_check.sh).
[[ -f $disk_dir/nvme0-ublk.img ]] || truncate -s 64M "$disk_dir/nvme0-ublk.img"
# Namespaces 5 to 8 of the first NVMe, formatted with metadata and protection information
# (tests/vm/nvme_pi_test.cpp): 512-byte blocks, with 8 bytes of metadata inline (extended LBAs,
# type 1), 8 in a separate buffer (type 2), and 16 in a separate buffer whose first 8 are the
# protection information (type 3); and 16 bytes with type 1 in NVMe 2.0's 64-bit guard format,
# which the driver knows to refuse PRACT and PRCHK on. QEMU keeps the metadata at the end of each
# image.
for f in pi1 pi2 pi3 pi64; do rm -f "$disk_dir/nvme0-$f.img"; truncate -s 4M "$disk_dir/nvme0-$f.img"; done
nbdkit -f --exit-with-parent -U "$work/nbd.sock" --filter=pause file "$disk_dir/nvme0-stall.img" \
  pause-control="$work/pause.sock" 2>"$work/nbdkit.err" &
nbd_server=$!
disown "$nbd_server"  # the EXIT trap stops it; no "Terminated" from the shell then
for _ in $(seq 100); do [[ -S $work/nbd.sock && -S $work/pause.sock ]] && break; sleep 0.1; done
[[ -S $work/nbd.sock ]] || { cat "$work/nbdkit.err" >&2; rig_error "nbdkit did not start"; }
append="console=ttyS0 panic=-1 loglevel=4 rdinit=/init"
# Without an IOMMU a device sees physical addresses, and edu drives only 28 address bits: the
# no-IOMMU guest gets 256 MiB in all, so every page it has lies below 256 MiB.
node_mem=512M
[[ $mode == noiommu ]] && node_mem=128M
qemu_args=(-machine q35 -accel tcg -cpu max -smp 2 -m $((2 * ${node_mem%M}))M -nodefaults
  -display none -no-reboot -serial stdio -kernel "$kernel" -initrd "$work/initrd.gz"
  -object memory-backend-ram,id=mem0,size=$node_mem -numa node,nodeid=0,cpus=0,memdev=mem0
  -object memory-backend-ram,id=mem1,size=$node_mem -numa node,nodeid=1,cpus=1,memdev=mem1
  -device pxb-pcie,id=pxb1,bus_nr=0x80,numa_node=1,bus=pcie.0
  -device pcie-root-port,id=rp1,bus=pxb1,chassis=1,slot=1
  -drive "file=$disk_dir/nvme0.img,if=none,id=nvm0,format=raw,discard=unmap"
  -device nvme,serial=vfe-nvme-0,drive=nvm0,bus=pcie.0,id=nvme0
  -drive "if=none,id=nvm0f,driver=raw,file.driver=blkdebug,file.config=$work/blkdebug.conf,file.image.driver=file,file.image.filename=$disk_dir/nvme0-faulty.img"
  -device nvme-ns,drive=nvm0f,bus=nvme0,nsid=2
  -drive "if=none,id=nvm0s,driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$work/nbd.sock"
  -device nvme-ns,drive=nvm0s,bus=nvme0,nsid=3
  -drive "file=$disk_dir/nvme0-ublk.img,if=none,id=nvm0u,format=raw,discard=unmap"
  -device nvme-ns,drive=nvm0u,bus=nvme0,nsid=4
  -drive "file=$disk_dir/nvme0-pi1.img,if=none,id=nvm0p1,format=raw"
  -device nvme-ns,drive=nvm0p1,bus=nvme0,nsid=5,ms=8,mset=1,pi=1
  -drive "file=$disk_dir/nvme0-pi2.img,if=none,id=nvm0p2,format=raw"
  -device nvme-ns,drive=nvm0p2,bus=nvme0,nsid=6,ms=8,pi=2
  -drive "file=$disk_dir/nvme0-pi3.img,if=none,id=nvm0p3,format=raw"
  -device nvme-ns,drive=nvm0p3,bus=nvme0,nsid=7,ms=16,pi=3,pil=1
  -drive "file=$disk_dir/nvme0-pi64.img,if=none,id=nvm0p4,format=raw"
  -device nvme-ns,drive=nvm0p4,bus=nvme0,nsid=8,ms=16,pi=1,pif=2
  -drive "file=$disk_dir/nvme1.img,if=none,id=nvm1,format=raw,discard=unmap"
  -device nvme,serial=vfe-nvme-1,drive=nvm1,bus=rp1,id=nvme1,mdts=10
  -device edu,bus=pcie.0
  -netdev hubport,hubid=0,id=hp0 -device e1000e,netdev=hp0,bus=pcie.0,mac=52:54:00:12:34:01
  -netdev hubport,hubid=0,id=hp1 -device e1000e,netdev=hp1,bus=pcie.0,mac=52:54:00:12:34:02
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
  -monitor "unix:$work/monitor.sock,server=on,wait=off")
if [[ $mode == noiommu ]]; then
  append+=" vfio.enable_unsafe_noiommu_mode=1"
else
  qemu_args+=(-device intel-iommu,intremap=on)
  append+=" intel_iommu=on"
fi

echo "vm: booting $mode guest ($(basename "$kernel"), timeout ${timeout_s}s): ${binaries[*]##*/}"
log=$work/serial.log
: >"$log"
# The guest asks for hot-unplugs and stalls on its console; the host answers through the monitor
# socket and nbdkit's pause socket, one request at a time.
pause_ctl() { printf '%s' "$1" | socat -t 30 - "UNIX-CONNECT:$work/pause.sock" 2>/dev/null; }
(
  set +e  # a failed request is reported; the watcher keeps going
  tail -n +1 -F --pid=$$ "$log" 2>/dev/null |
    grep -a --line-buffered -o -E 'VFE-(HOTUNPLUG [a-z0-9]*|STALL [0-9]+)' |
    while read -r what arg; do
      case $what:$arg in
        VFE-HOTUNPLUG:nvme1) echo "vm: host: device_del $arg" >&3
               echo "device_del $arg" | socat -t 2 - "UNIX-CONNECT:$work/monitor.sock" >/dev/null ||
                 echo "vm: host: device_del $arg: the monitor socket did not take it" >&3 ;;
        VFE-HOTUNPLUG:*) echo "vm: host: refusing to unplug '$arg' (only nvme1 may be unplugged)" >&3 ;;
        VFE-STALL:*)
          # 'P' comes back once the requests already in nbdkit are done; later ones are held.
          [[ $(pause_ctl p) == P ]] || echo "vm: host: nbdkit did not pause" >&3
          echo "vm: host: namespace 3 held for ${arg} ms" >&3
          sleep "$(printf '%d.%03d' $((arg / 1000)) $((arg % 1000)))"
          [[ $(pause_ctl r) == R ]] || echo "vm: host: nbdkit did not resume" >&3 ;;
      esac
    done
) 3>&2 2>/dev/null &  # its own lines on fd 3; not the shell's "Terminated" when the EXIT trap stops a hold
watcher=$!
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" -append "$append" \
  </dev/null 2>"$work/qemu.err" | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# isa-debug-exit makes QEMU exit with (verdict << 1) | 1; anything else is no verdict.
counts=$(grep -a -o '[0-9]* passed, [0-9]* failed' "$log" | tail -n1 || true)
case $rc in
  1) echo "${counts:-0 passed, 0 failed}"; exit 0 ;;
  3) echo "${counts:-0 passed, 1 failed}"; exit 1 ;;
  124|137) cat "$work/qemu.err" >&2; rig_error "the guest did not finish within ${timeout_s}s" ;;
  *)
    cat "$work/qemu.err" >&2
    grep -aq 'Kernel panic' "$log" && rig_error "the guest kernel panicked (log above)"
    rig_error "the guest ended without a verdict (qemu exit $rc; log above)" ;;
esac
