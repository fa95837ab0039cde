#!/bin/sh
# In the guest (scripts/demo.sh): a short vfio-bench nvme run on the first NVMe, random 4 KiB
# reads at queue depth 32 in the scratch band. Under TCG the rate shows the tool works, no more.
bdf=$(echo "$VFE_VM_DEVICES" | tr ' ' '\n' | sed -n 's/^nvme=//p' | head -n 1)
[ -n "$bdf" ] || { echo "bench_demo: no NVMe in VFE_VM_DEVICES" >&2; exit 1; }
exec vfio-bench --no-progress --time 3 nvme "$bdf" --rw randread --bs 4k --qd 32 --offset 40M --size 16M
