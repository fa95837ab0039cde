#!/bin/sh
# In the guest, run by /init as root: runs vfe_vm_tests again as an unprivileged user (uid and gid
# 1000, "vfe", no other group, no capability) given only what docs/USING.md's "Running without root"
# lists: each bound device's VFIO node and a memlock limit. No hugetlbfs access is needed: DMA
# memory comes from hugetlb memfds (the kernel's own mount). Tests that need root themselves skip,
# saying what for. Its exit status is the tests' verdict. No-IOMMU mode is refused: opening a
# no-IOMMU group needs CAP_SYS_RAWIO (and reading physical addresses, CAP_SYS_ADMIN).
set -e
uid=1000
# Every DMA mapping pins its memory, counted against RLIMIT_MEMLOCK (type1: per process, iommufd:
# per user). The suite pins at most 12 MiB at once (six 2 MiB hugepages, as VmLck and VmPin showed;
# type1 passes with 16 MiB); 64 MiB, the rig's whole hugepage pool, leaves room to grow.
memlock_kib=$((64 * 1024))

case $VFE_VM_MODE in
  type1|iommufd) ;;
  noiommu)
    echo "nonroot_check: NOT RUN: no-IOMMU mode cannot run without root (opening a no-IOMMU" \
         "group needs CAP_SYS_RAWIO); run this check in type1 or iommufd mode"
    exit 0 ;;
  *) echo "nonroot_check: VFE_VM_MODE is '$VFE_VM_MODE' (run me through tests/vm/run.sh)" >&2; exit 1 ;;
esac

grep -q "^vfe:" /etc/passwd 2>/dev/null || {
  grep -q "^root:" /etc/passwd 2>/dev/null || echo "root:x:0:0:root:/root:/bin/sh" >>/etc/passwd
  echo "vfe:x:$uid:$uid:vfe:/tmp:/bin/sh" >>/etc/passwd
  echo "vfe:x:$uid:" >>/etc/group
}

# The nodes of the devices the rig bound, as the rig worked them out (VFE_VM_VFIO_PATHS): type1's
# group nodes (its container /dev/vfio/vfio is 0666 already), or iommufd's device cdevs and
# /dev/iommu.
nodes=$(echo "$VFE_VM_VFIO_PATHS" | tr ' ' '\n' | sed -n 's/^[^=]*=//p')
[ -n "$nodes" ] || { echo "nonroot_check: VFE_VM_VFIO_PATHS names no device node (rig error)" >&2; exit 1; }
[ "$VFE_VM_MODE" = iommufd ] && nodes="/dev/iommu $nodes"
for n in $nodes; do
  chown "$uid:$uid" "$n"
  chmod 0600 "$n"
  echo "nonroot_check: $(ls -l "$n")"
done

ulimit -l "$memlock_kib"  # soft and hard: the user cannot raise it again
echo "nonroot_check: running vfe_vm_tests as uid $uid, RLIMIT_MEMLOCK $(ulimit -S -l)/$(ulimit -H -l) KiB (soft/hard)"
# su -p keeps the environment (VFE_VM_MODE, VFE_VM_DEVICES, VFE_VM_VFIO_PATHS, ...); the user
# has no supplementary group and root's capabilities are gone once the uid is not 0.
exec su -p -s /bin/sh vfe -c "exec /opt/vfe/bin/vfe_vm_tests"
