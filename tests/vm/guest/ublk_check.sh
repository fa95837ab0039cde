#!/bin/sh
# In the guest: vfe-ublk serves the first NVMe's namespace 4 as /dev/ublkbN (two queues, two
# workers), once per completion mode. Data written through the block device is checked by
# programs no one here wrote: fio with --verify=crc32c when it is staged (else dd and cmp), and,
# in adaptive mode, mkfs.ext4, a tree of files, e2fsck and a remount when e2fsprogs is staged.
# Each time SIGINT must remove the device and make vfe-ublk exit 0. Skips (and says so) on a
# kernel without ublk (Debian's 6.1, in type1 mode).
set -u
fail() { echo "ublk_check: FAIL: $*"; [ -n "${pid:-}" ] && kill -KILL "$pid" 2>/dev/null; exit 1; }

# Starts vfe-ublk in completion mode $1; sets pid and dev once the block device is there.
serve() {
  vfe-ublk "$bdf" --nsid 4 --queues 2 --depth 32 --completion "$1" >/tmp/ublk.out &
  pid=$!
  dev=""
  i=0
  while [ $i -lt 300 ]; do  # up to 30 s: the first line vfe-ublk prints is the device
    dev=$(head -n 1 /tmp/ublk.out 2>/dev/null)
    [ -n "$dev" ] && [ -b "$dev" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "vfe-ublk ($1) exited before the device appeared"
    usleep 100000
    i=$((i + 1))
  done
  fail "no block device after 30 s ($1)"
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
  if [ "$mode" = adaptive ] && command -v mkfs.ext4 >/dev/null && grep -qw ext4 /proc/filesystems; then
    verify_filesystem
  fi
  stop_server
done
echo "ublk_check: PASS"
