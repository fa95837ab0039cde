#!/bin/sh
# In the guest: vfe-ublk serves the first NVMe's namespace 4 as /dev/ublkbN (two queues, two
# workers), once per completion mode. Data written through the block device is checked by
# programs no one here wrote: fio with --verify=crc32c when it is staged (else dd and cmp), and,
# in adaptive mode, mkfs.ext4, a tree of files, e2fsck and a remount when e2fsprogs is staged.
# Each time SIGINT must remove the device and make vfe-ublk exit 0. Then SIGKILL with I/O under
# way: without --recovery that I/O fails and the block device goes (nothing hangs, and
# `vfe-ublk --remove` removes what is left); with --recovery a new vfe-ublk takes the device over
# and a mounted filesystem goes on without an error. Skips (and says so) on a kernel without ublk
# (Debian's 6.1, in type1 mode).
set -u
fail() {
  echo "ublk_check: FAIL: $*"
  [ -f /tmp/ublk.log ] && sed 's/^/ublk_check: vfe-ublk said: /' /tmp/ublk.log
  # Leave nothing behind that could hang or fool the checks that run after this one.
  touch /tmp/stop
  # shellcheck disable=SC2086 # a list of pids
  [ -n "${writers:-}" ] && kill -KILL $writers 2>/dev/null
  [ -n "${pid:-}" ] && kill -KILL "$pid" 2>/dev/null
  umount -l /mnt/ublk 2>/dev/null
  [ -n "${unbound:-}" ] && devbind.sh bind "$unbound" >/dev/null 2>&1
  exit 1
}
writers=""  # background writers, killed by fail()
nsid=4  # the namespace served: 4 (64 MiB), or 3, whose requests the host can hold

# Starts vfe-ublk in completion mode $1, with the options after it; sets pid and dev once the
# block device is there.
serve() {
  m=$1
  shift
  rm -f /tmp/ublk.out /tmp/ublk.log  # the last server's lines must not be taken for this one's
  vfe-ublk "$bdf" --nsid "$nsid" --queues 2 --depth 32 --completion "$m" "$@" >/tmp/ublk.out 2>/tmp/ublk.log &
  pid=$!
  dev=""
  i=0
  while [ $i -lt 300 ]; do  # up to 30 s: the first line vfe-ublk prints is the device
    dev=$(head -n 1 /tmp/ublk.out 2>/dev/null)
    [ -n "$dev" ] && [ -b "$dev" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "vfe-ublk ($m $*) exited before the device appeared"
    usleep 100000
    i=$((i + 1))
  done
  fail "no block device after 30 s ($m $*)"
}

# Waits up to $1 tenths of a second for the shell command $2 to succeed.
wait_until() {
  i=0
  until eval "$2"; do
    [ $i -lt "$1" ] || return 1
    usleep 100000
    i=$((i + 1))
  done
}

# SIGINT: within 40 s the device must go and vfe-ublk exit 0.
stop_server() {
  kill -INT "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    [ $i -lt 400 ] || fail "vfe-ublk still runs 40 s after SIGINT"
    usleep 100000
    i=$((i + 1))
  done
  wait "$pid" || fail "vfe-ublk exited with $? after SIGINT"
  pid=""
  cat /tmp/ublk.log
  [ ! -e "$dev" ] || fail "$dev is still there after vfe-ublk exited"
}

verify_data() {
  if command -v fio >/dev/null; then
    # Two jobs on disjoint halves of the first 32 MiB: random 4 KiB writes at depth 32, each
    # block then read back and checked against its crc32c.
    fio --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=32 --size=16M --verify=crc32c \
        --verify_fatal=1 --do_verify=1 --filename="$dev" --group_reporting --minimal \
        --name=ublk-low --offset=0 --name=ublk-high --offset=16M >/tmp/fio.out 2>&1 ||
      { cat /tmp/fio.out; fail "fio --verify ($1)"; }
    echo "ublk_check: $1: fio wrote and verified 32 MiB of random 4 KiB blocks (crc32c)"
  else
    dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null
    dd if=/tmp/pattern of="$dev" bs=1M seek=4 conv=fsync 2>/dev/null || fail "dd to $dev ($1)"
    echo 3 >/proc/sys/vm/drop_caches  # read back from the device, not the page cache
    dd if="$dev" of=/tmp/back bs=1M skip=4 count=8 2>/dev/null || fail "dd from $dev ($1)"
    cmp /tmp/pattern /tmp/back || fail "8 MiB read back differ from what was written ($1)"
    echo "ublk_check: $1: 8 MiB written and read back equal (dd, cmp)"
  fi
}

# Discard maps to Dataset Management deallocate: the device offers it, and blkdiscard of the
# middle 512 KiB of a 1 MiB written region reads back as zeroes (QEMU's namespace says deallocated
# blocks do; tests/vm/run.sh gives it discard=unmap) while the rest is untouched.
discard_check() {
  [ "$(cat "/sys/block/${dev#/dev/}/queue/discard_max_bytes")" -gt 0 ] || fail "$dev offers no discard"
  dd if=/dev/urandom of=/tmp/d bs=64k count=16 2>/dev/null
  dd if=/tmp/d of="$dev" bs=64k seek=576 oflag=direct 2>/dev/null || fail "dd to $dev"  # at 36 MiB
  blkdiscard -o $((36 * 1048576 + 262144)) -l 524288 "$dev" || fail "blkdiscard on $dev"
  dd if="$dev" of=/tmp/back bs=64k skip=576 count=16 iflag=direct 2>/dev/null || fail "dd from $dev"
  for part in 0:4 12:4; do  # 64 KiB blocks: before and after the discarded range
    dd if=/tmp/d bs=64k skip="${part%:*}" count="${part#*:}" 2>/dev/null >/tmp/d.part
    dd if=/tmp/back bs=64k skip="${part%:*}" count="${part#*:}" 2>/dev/null | cmp -s - /tmp/d.part ||
      fail "blocks around the discarded range changed"
  done
  [ "$(dd if=/tmp/back bs=64k skip=4 count=8 2>/dev/null | tr -d '\000' | wc -c)" = 0 ] ||
    fail "the discarded 512 KiB do not read as zeroes"
  echo "ublk_check: discard: 512 KiB deallocated read back as zeroes, the blocks around unchanged"
}

# A filesystem on it: a tree of files with known contents, unmounted, checked by e2fsck, mounted
# again and compared.
verify_filesystem() {
  mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4"
  mkdir -p /mnt/ublk && mount -t ext4 "$dev" /mnt/ublk || fail "mount"
  mkdir -p /mnt/ublk/a/b
  n=0
  while [ $n -lt 24 ]; do
    dd if=/dev/urandom of="/mnt/ublk/a/f$n" bs=4k count=$((n * 13 + 1)) 2>/dev/null || fail "writing f$n"
    n=$((n + 1))
  done
  cp /mnt/ublk/a/f23 /mnt/ublk/a/b/copy || fail "cp"
  (cd /mnt/ublk && md5sum a/f* a/b/copy >/tmp/ublk.md5)
  umount /mnt/ublk || fail "umount"
  e2fsck -fn "$dev" >/tmp/e2fsck.out 2>&1 || { cat /tmp/e2fsck.out; fail "e2fsck -fn found a problem"; }
  mount -t ext4 -o ro "$dev" /mnt/ublk || fail "mount again"
  (cd /mnt/ublk && md5sum -c /tmp/ublk.md5 >/dev/null) || fail "files differ after a remount"
  umount /mnt/ublk || fail "umount"
  echo "ublk_check: ext4: $(wc -l </tmp/ublk.md5) files written, e2fsck clean, all equal after a remount"
}

# SIGKILL without --recovery while direct writes are under way: the writes fail, the block device
# goes, nothing hangs; /dev/ublkcN stays until `vfe-ublk --remove N`.
kill_check() {
  serve adaptive
  id=${dev#/dev/ublkb}
  # Wrong uses of --remove and --recovery are refused with the reason, and change nothing.
  refused() {  # $1: what stderr must say; the rest: vfe-ublk's arguments
    want=$1
    shift
    vfe-ublk "$@" >/dev/null 2>/tmp/ublk.err && fail "vfe-ublk $* succeeded"
    grep -q "$want" /tmp/ublk.err || { cat /tmp/ublk.err; fail "vfe-ublk $*: no \"$want\""; }
  }
  refused "served by process $pid" --remove "$id"
  refused "there is no ublk device 77" --remove 77
  [ -b "$dev" ] || fail "$dev went away after a refused --remove"
  # dd would create a regular file at the path once the device is gone: test it before each pass.
  (while [ -b "$dev" ] && dd if=/dev/zero of="$dev" bs=64k count=64 oflag=direct 2>/dev/null; do :; done) &
  writer=$!
  writers=$writer
  sleep 1
  kill -0 "$writer" 2>/dev/null || fail "the writer stopped before vfe-ublk was killed"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null
  pid=""
  wait_until 300 '! kill -0 "$writer" 2>/dev/null' || fail "writes to $dev still hang 30 s after vfe-ublk was killed"
  writers=""
  wait_until 300 '[ ! -b "$dev" ]' || fail "$dev is still there 30 s after vfe-ublk was killed"
  [ -b "$dev" ] || rm -f "$dev"  # a file a last dd may have made in the race
  [ -e "/dev/ublkc$id" ] || fail "/dev/ublkc$id went away without --remove"
  refused "was made without recovery" "$bdf" --nsid 4 --queues 2 --depth 32 --recovery --id "$id"
  [ -e "/dev/ublkc$id" ] || fail "a refused takeover removed /dev/ublkc$id"
  vfe-ublk --remove "$id" || fail "vfe-ublk --remove $id"
  wait_until 50 '[ ! -e "/dev/ublkc$id" ]' || fail "/dev/ublkc$id is still there after --remove"
  echo "ublk_check: SIGKILL: the writes under way failed, $dev went, --remove removed ublk device $id"
}

# Writers on the mounted ext4 until /tmp/stop appears: one makes files of 16 KiB (each fsync'd),
# three loop direct 256 KiB writes over files of /tmp/pattern, so that some request is nearly
# always with vfe-ublk. Sets writers.
start_writers() {
  rm -f /tmp/stop
  dd if=/dev/urandom of=/tmp/pattern bs=256k count=8 2>/dev/null
  (n=0; while [ ! -e /tmp/stop ] && [ $n -lt 1000 ]; do
     dd if=/dev/urandom of="/mnt/ublk/r$n" bs=4k count=4 conv=fsync 2>/dev/null || exit 1
     n=$((n + 1))
   done) &
  writers=$!
  for f in big0 big1 big2; do
    (while [ ! -e /tmp/stop ]; do
       dd if=/tmp/pattern of="/mnt/ublk/$f" bs=256k oflag=direct conv=notrunc 2>/dev/null || exit 1
     done) &
    writers="$writers $!"
  done
}

# Stops the writers; each must end within 60 s, and without an error.
stop_writers() {
  touch /tmp/stop
  for w in $writers; do
    wait_until 600 "! kill -0 $w 2>/dev/null" || fail "a writer still runs 60 s after it was told to stop"
    wait "$w" || fail "a write failed while vfe-ublk was replaced"
  done
  writers=""
}

# SIGKILL with --recovery while a mounted ext4 is being written: a new vfe-ublk takes the device
# over, no writer sees an error, the kernel logs none, and every file is intact after an
# unmount, e2fsck and a remount.
recovery_check() {
  serve adaptive --recovery --id 0
  mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4"
  mkdir -p /mnt/ublk && mount -t ext4 "$dev" /mnt/ublk || fail "mount"
  dmesg -c >/dev/null  # from here on, the kernel log holds only this check's lines
  start_writers
  # The kill comes once a direct writer is past its first pass (and the other has some files).
  wait_until 300 '[ -f /mnt/ublk/big0 ] && [ "$(wc -c </mnt/ublk/big0)" = 2097152 ]' ||
    fail "the direct writer wrote nothing"
  usleep 200000
  before=$(ls /mnt/ublk | grep -c '^r')
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null
  [ -b "$dev" ] || fail "$dev went away although vfe-ublk ran with --recovery"
  serve adaptive --recovery --id 0
  grep -q "took over /dev/ublkb0" /tmp/ublk.log || fail "the new vfe-ublk did not take /dev/ublkb0 over"
  sleep 1
  stop_writers
  # The kernel logs a failed request even when no write(2) or fsync(2) reports it.
  ! dmesg | grep -q -e 'I/O error, dev ublkb' -e 'EXT4-fs error' ||
    { dmesg | tail -n 20; fail "I/O errors on $dev while vfe-ublk was replaced"; }
  after=$(ls /mnt/ublk | grep -c '^r')
  [ "$before" -gt 0 ] && [ "$after" -gt "$before" ] && [ "$after" -lt 1000 ] ||
    fail "the writer did not straddle the takeover ($before files before the kill, $after after)"
  compare_files "after the takeover"
  stop_server
  echo "ublk_check: --recovery: killed with $before files written, taken over, $after files intact"
}

# Every file on /mnt/ublk against what was written, after an unmount, e2fsck and a remount.
compare_files() {
  (cd /mnt/ublk && md5sum r* >/tmp/ublk.md5 && for f in big0 big1 big2; do
                     md5sum </tmp/pattern | sed "s/-\$/$f/"; done >>/tmp/ublk.md5)
  umount /mnt/ublk || fail "umount"
  e2fsck -fn "$dev" >/tmp/e2fsck.out 2>&1 || { cat /tmp/e2fsck.out; fail "e2fsck -fn $1"; }
  mount -t ext4 -o ro "$dev" /mnt/ublk || fail "mount again"
  (cd /mnt/ublk && md5sum -c /tmp/ublk.md5 >/dev/null) || fail "files differ $1 and a remount"
  umount /mnt/ublk || fail "umount"
}

# A stalled command under the block device: the host holds namespace 3's requests for 7 s, so
# vfe-ublk (--io-timeout 2000) aborts it after 2 s and resets the controller 2 s later, then
# sends what was in flight again. The block device waits through it: no request fails, and the
# data reads back equal.
stall_check() {
  nsid=3
  serve adaptive --io-timeout 2000
  nsid=4
  dmesg -c >/dev/null  # from here on, the kernel log holds only this check's lines
  dd if=/dev/urandom of=/tmp/pattern bs=256k count=8 2>/dev/null
  echo "VFE-STALL 7000"  # tests/vm/run.sh: the host pauses namespace 3's NBD server
  sleep 1
  start=$(date +%s)
  dd if=/tmp/pattern of="$dev" bs=256k oflag=direct conv=fsync 2>/dev/null || fail "a write failed in the stall"
  took=$(($(date +%s) - start))
  dd if="$dev" of=/tmp/back bs=256k count=8 iflag=direct 2>/dev/null || fail "a read after the stall failed"
  cmp /tmp/pattern /tmp/back || fail "2 MiB read back after the stall differ from what was written"
  ! dmesg | grep -q 'I/O error, dev ublkb' || { dmesg | tail -n 20; fail "I/O errors on $dev in the stall"; }
  stop_server
  grep -q 'controller resets: [1-9]' /tmp/ublk.log || fail "the controller was not reset: the stall tested nothing"
  echo "ublk_check: stall: a write waited ${took} s through an Abort and a controller reset; 2 MiB read back equal"
}

# The same load on the same namespace of the same controller, side by side: fio 4 KiB random
# reads at depth 32 on /dev/ublkb0 (vfe-ublk, adaptive), then on the kernel's nvme driver (the
# controller handed over for it, and back). Under TCG the ratio means something, the rates not.
compare_check() {
  command -v fio >/dev/null || { echo "ublk_check: compare: SKIP (no fio in this guest)"; return 0; }
  load="--ioengine=io_uring --rw=randread --bs=4k --iodepth=32 --direct=1 --time_based --runtime=3 --size=32M"
  serve adaptive
  # shellcheck disable=SC2086 # $load is a list of options
  ours=$(fio --name=ublk --filename="$dev" $load --minimal | cut -d';' -f8) || fail "fio on $dev"
  stop_server
  devbind.sh unbind "$bdf" >/dev/null || fail "handing $bdf to the kernel's nvme driver"
  unbound=$bdf
  disk=""
  i=0
  while [ -z "$disk" ] && [ $i -lt 200 ]; do  # the kernel names disks in the order it finds them
    for n in /sys/block/nvme*; do
      [ "$(cat "$n/nsid" 2>/dev/null)" = "$nsid" ] && [ -b "/dev/${n##*/}" ] && disk=/dev/${n##*/}
    done
    usleep 50000
    i=$((i + 1))
  done
  [ -n "$disk" ] || fail "the kernel's nvme driver shows no namespace $nsid"
  # shellcheck disable=SC2086
  theirs=$(fio --name=kernel --filename="$disk" $load --minimal | cut -d';' -f8) || fail "fio on $disk"
  devbind.sh bind "$bdf" >/dev/null || fail "giving $bdf back to vfio-pci"
  unbound=""
  [ "${ours:-0}" -gt 0 ] && [ "${theirs:-0}" -gt 0 ] || fail "fio reported no reads ($ours, $theirs)"
  echo "ublk_check: compare: fio randread 4k qd32 3 s, namespace $nsid: vfe-ublk $ours IOPS," \
       "the kernel's nvme driver ($disk) $theirs IOPS, ratio $(awk "BEGIN { printf \"%.2f\", $ours / $theirs }")"
}

# Last: the pattern of kUblkRegion (tests/vm/nvme_pattern.hpp: 8 MiB at 40 MiB) written through
# the block device by dd, then read back through this library's driver (UblkReadback in
# vfe_vm_tests); after the guest is off, run_suite.sh finds it in the disk image.
pattern_check() {
  if ! command -v vfe_disk_check >/dev/null || ! command -v vfe_vm_tests >/dev/null; then
    echo "ublk_check: pattern: SKIP (vfe_disk_check and vfe_vm_tests are not staged)"
    return 0
  fi
  serve poll
  vfe_disk_check --ublk-pattern | dd of="$dev" bs=1M seek=40 iflag=fullblock oflag=direct conv=fsync 2>/dev/null ||
    fail "writing the pattern to $dev"
  stop_server
  VFE_UBLK_READBACK=1 vfe_vm_tests --gtest_filter='UblkReadback.*' >/tmp/readback.out 2>&1 ||
    { cat /tmp/readback.out; fail "reading the pattern back through the driver"; }
  grep 'ublk readback:' /tmp/readback.out || { cat /tmp/readback.out; fail "UblkReadback did not run"; }
}

if [ ! -e /dev/ublk-control ]; then
  # Only Debian's 6.1 kernel (type1 mode) is built without ublk; the small kernel must have it.
  [ "${VFE_VM_MODE:-}" = type1 ] || fail "this kernel has no ublk (CONFIG_BLK_DEV_UBLK), and in mode ${VFE_VM_MODE:-?} it must"
  echo "ublk_check: SKIP: this kernel has no ublk (CONFIG_BLK_DEV_UBLK)"
  exit 0
fi
bdf=$(echo "$VFE_VM_DEVICES" | tr ' ' '\n' | sed -n 's/^nvme=//p' | head -n 1)
[ -n "$bdf" ] || fail "no NVMe in VFE_VM_DEVICES"
for mode in poll irq adaptive; do
  serve "$mode"
  echo "ublk_check: $mode: $dev is $(cat "/sys/block/${dev#/dev/}/size") sectors"
  verify_data "$mode"
  [ "$mode" = adaptive ] && discard_check
  if [ "$mode" = adaptive ] && command -v mkfs.ext4 >/dev/null && grep -qw ext4 /proc/filesystems; then
    verify_filesystem
  fi
  stop_server
done
stall_check
kill_check
if command -v mkfs.ext4 >/dev/null && grep -qw ext4 /proc/filesystems; then
  recovery_check
fi
compare_check
pattern_check
echo "ublk_check: PASS"
