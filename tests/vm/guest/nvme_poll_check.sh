#!/bin/sh
# In the guest: runs examples/nvme_poll against the rig's first NVMe, inside the scratch band the
# integrity test leaves alone (LBA 81920 = 40 MiB on). Its exit status is the verdict.
bdf=$(echo "$VFE_VM_DEVICES" | tr ' ' '\n' | sed -n 's/^nvme=//p' | head -n 1)
[ -n "$bdf" ] || { echo "nvme_poll_check: no NVMe in VFE_VM_DEVICES" >&2; exit 1; }
exec nvme_poll "$bdf" --lba 81920 --ios "${NVME_POLL_IOS:-512}" --blocks 8 --depth 32
