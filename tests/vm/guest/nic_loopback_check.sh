#!/bin/sh
# In the guest: runs examples/nic_loopback from the rig's first e1000e to its second (they share a
# QEMU hub), polling and then with interrupts. Its exit status is the verdict.
set -e
nics=$(echo "$VFE_VM_DEVICES" | tr ' ' '\n' | sed -n 's/^e1000e=//p')
a=$(echo "$nics" | sed -n 1p)
b=$(echo "$nics" | sed -n 2p)
[ -n "$a" ] && [ -n "$b" ] || { echo "nic_loopback_check: VFE_VM_DEVICES has fewer than two e1000e" >&2; exit 1; }
nic_loopback "$a" "$b" --frames 10000 --size 60-1514 --completion polling
nic_loopback "$a" "$b" --frames 10000 --size 60-1514 --completion interrupt
